"""Every finished run under a results folder, as its checked record."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sslbench.base.errors import BenchError
from sslbench.base.fields import FieldError
from sslbench.base.records import check_record
from sslbench.base.run_files import RunFiles


def run_identity(record: dict[str, Any]) -> tuple[Any, ...]:
    """What makes a run one run: its dataset, schedule (profile and overrides), method, tag, ratio and
    seed, as its record states them; never the path it sits at."""
    return (record.get("dataset"), record.get("profile"), record.get("overrides_hash") or "", record.get("method"),
            record.get("variant") or "", float(record.get("ratio", 0)), int(record.get("seed", 0)))


@dataclass
class FinishedRuns:
    """The finished runs under a results folder, each once, and what was left out."""

    records: list[dict[str, Any]]                                 # each run once, sorted by folder
    copies: list[tuple[str, str]] = field(default_factory=list)   # (copy folder, the folder kept)
    read: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # every folder read: its record or None


def finished_runs(root: Path, warn: Callable[[str], None]) -> FinishedRuns:
    """The one place that decides which folder of a run counts, for the tables and ``bench status``
    alike: the folder at the record's own place (its ``id``), else the one nearest the root; the
    others are copies. Each record is read once; an unreadable one is skipped with a warning."""
    found = []
    read: dict[str, dict[str, Any] | None] = {}
    for marker in sorted(root.rglob(RunFiles.DONE), key=lambda p: (len(p.relative_to(root).parts), str(p))):
        files = RunFiles(marker.parent)
        try:
            record = check_record(files.read(RunFiles.RECORD))
        except (BenchError, FieldError) as exc:
            name = files.path(RunFiles.RECORD)
            warn(f"skipping {exc}" if isinstance(exc, BenchError) else f"skipping {name}: damaged record ({exc})")
            read[str(marker.parent)] = None
            continue
        record["_dir"] = str(marker.parent)
        read[record["_dir"]] = record
        rel = marker.parent.relative_to(root)
        found.append(((rel.as_posix() != record.get("id"), len(rel.parts), str(marker.parent)), record))
    kept: dict[tuple[Any, ...], dict[str, Any]] = {}
    copies: list[tuple[str, str]] = []
    for _, record in sorted(found, key=lambda item: item[0]):
        key = run_identity(record)
        if key in kept:
            copies.append((record["_dir"], kept[key]["_dir"]))
        else:
            kept[key] = record
    return FinishedRuns(sorted(kept.values(), key=lambda r: r["_dir"]), copies, read)


def iter_records(root: Path, warn: Callable[[str], None] | None = None) -> Iterator[dict[str, Any]]:
    """Every completed run record under ``root``, each run once; an unreadable one is skipped with a
    warning (one damaged file must not hide every other result). A run is identified by its record,
    not its path: copies of a run folder (an archive under the results folder, a backup) are counted
    once, the copy at its own place kept, and the others named in a warning."""
    say = warn or (lambda message: logging.getLogger("sslbench").warning(message))
    found = finished_runs(root, say)
    if found.copies:
        say(f"{len(found.copies)} run folder(s) under {root} repeat a run found elsewhere and are counted once: "
            f"{copies_text(found.copies)}")
    yield from found.records


def copies_text(copies: list[tuple[str, str]], most: int = 3) -> str:
    """The first ``most`` (copy, kept) pairs as ``COPY (a copy of KEPT)``, then ``...`` for the rest."""
    shown = "; ".join(f"{copy} (a copy of {first})" for copy, first in copies[:most])
    return shown + (" ..." if len(copies) > most else "")
