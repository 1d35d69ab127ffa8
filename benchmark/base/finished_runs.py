"""Every finished run under a results folder, as its checked record."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
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


def iter_records(root: Path, warn: Callable[[str], None] | None = None) -> Iterator[dict[str, Any]]:
    """Every completed run record under ``root``, each run once; an unreadable one is skipped with a
    warning (one damaged file must not hide every other result). A run is identified by its record,
    not its path: copies of a run folder (an archive under the results folder, a backup) are counted
    once, the copy nearest the root (its own place) kept, and the others named in a warning."""
    say = warn or (lambda message: logging.getLogger("sslbench").warning(message))
    kept: dict[tuple[Any, ...], dict[str, Any]] = {}
    duplicates: list[tuple[str, str]] = []
    markers = sorted(root.rglob(RunFiles.DONE), key=lambda p: (len(p.relative_to(root).parts), str(p)))
    for marker in markers:
        files = RunFiles(marker.parent)
        try:
            record = check_record(files.read(RunFiles.RECORD))
        except BenchError as exc:
            say(f"skipping {exc}")
            continue
        except FieldError as exc:
            say(f"skipping {files.path(RunFiles.RECORD)}: damaged record ({exc})")
            continue
        record["_dir"] = str(marker.parent)
        key = run_identity(record)
        if key in kept:
            duplicates.append((record["_dir"], kept[key]["_dir"]))
            continue
        kept[key] = record
    if duplicates:
        shown = "; ".join(f"{copy} (a copy of {first})" for copy, first in duplicates[:3])
        say(f"{len(duplicates)} run folder(s) under {root} repeat a run found elsewhere and are counted once: "
            f"{shown}{' ...' if len(duplicates) > 3 else ''}")
    yield from sorted(kept.values(), key=lambda r: r["_dir"])