"""Preparing a dataset into the cache: once per name, atomically, under a lock, and only ever over
a folder this project wrote.

Preparation writes into a temporary folder that is renamed into place at the end, so a crash or a
bad input file never leaves a half-written cache; what a killed preparation left is removed under
the lock at the next start. Replacing a prepared dataset is refused while a run uses it
(``sslbench.cache.use``), and a folder that holds anything besides what preparation writes (run
records of a results folder placed inside the cache) is never replaced. Each case id is checked to
leave room for every file name made from it, and each volume against ``--max-voxels``, before
anything is written; the prepared dataset's fingerprint (its ``meta.json`` and every volume's bytes)
is stored in its ``meta.json``.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sslbench.base.atomic import folder_mode, make_temp_folder, remove_orphans, write_json
from sslbench.base.errors import BenchError, DataError
from sslbench.base.locks import FolderLock
from sslbench.base.names import NAME, check_name
from sslbench.cache.reader import PreparedDataset, check_case_name_length, read_meta
from sslbench.cache.use import replacing
from sslbench.data import DATASETS, CacheWriter, default_cache_root
from sslbench.io.readers import voxel_limit

# every cache format this project has written: a folder holding one of them is ours to replace
OUR_FORMATS = (1, 2)
# what preparation and the slice cache write in a prepared dataset's folder (format 1 and 2): a folder
# holding anything else holds someone else's files (a results folder inside the cache) and is never replaced
OUR_ENTRIES = ("meta.json", "volumes", "slices-*", ".slices.lock", ".slices-*+*")


def dataset_folder(name: str, cache_root: Path | None = None) -> Path:
    """``<cache>/<name>``; the name is checked first, so it can never point outside the cache."""
    return (cache_root or default_cache_root()) / check_name(name)


def prepared_names(cache_root: Path | None = None) -> list[str]:
    """Datasets prepared in the cache, including user datasets prepared under their own name."""
    root = cache_root or default_cache_root()
    return sorted(p.parent.name for p in root.glob("*/meta.json")
                  if NAME.fullmatch(p.parent.name)) if root.exists() else []


def check_dataset_name(name: str, cache_root: Path | None = None) -> None:
    """A registered dataset or one prepared under its own name (``bench prepare NAME --format ...``)."""
    check_name(name)
    if name in DATASETS or (dataset_folder(name, cache_root) / "meta.json").exists():
        return
    DATASETS.entry(name)  # raises the "unknown dataset" error listing the known names


def check_separate(results: Path, cache: Path | None) -> None:
    """Refuse a results folder inside the cache, the cache inside a results folder, or one folder for
    both (compared as resolved paths): run folders would then live inside prepared datasets, and
    preparing one again would take its runs with it."""
    r = Path(os.path.realpath(results))
    c = Path(os.path.realpath(cache or default_cache_root()))
    if r == c or c in r.parents or r in c.parents:
        how = "are the same folder" if r == c else "is inside the cache" if c in r.parents else "holds the cache"
        raise BenchError(f"--results {results} {how} (--cache {cache or c}); keep run records and prepared data in "
                         "separate folders, neither inside the other")


class CheckedWriter(CacheWriter):
    """The cache writer with the checks that depend on how the tool uses a case, made before the case
    is written: its id leaves room for every file name made from it, its volume is within the voxel
    limit (``--max-voxels``: the volume a case becomes, whatever files it was read from)."""

    def add(self, case_id: str, image: np.ndarray, label: np.ndarray, split: str,
            spacing: Sequence[float] | None, patient: str | None = None, origin: str = "",
            geometry: dict[str, Any] | None = None) -> None:
        where = origin or str(case_id)
        if isinstance(case_id, str):
            check_case_name_length(case_id, where)
        limit = voxel_limit()
        if int(np.prod(image.shape, dtype=object)) > limit:
            raise DataError(f"{where}: case {case_id!r} is a volume of {' x '.join(map(str, image.shape))} = "
                            f"{image.size:,} voxels, more than the limit of {limit:,} (raise it with bench prepare "
                            "--max-voxels)")
        super().add(case_id, image, label, split, spacing, patient, origin, geometry)


def foreign_entries(folder: Path) -> list[str]:
    """What ``folder`` (a prepared dataset) holds besides the entries preparation writes."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    return [n for n in names if not any(fnmatch.fnmatchcase(n, pattern) for pattern in OUR_ENTRIES)]


def _check_replaceable(folder: Path) -> None:
    """Refuse to replace a prepared dataset that holds files preparation did not write."""
    other = foreign_entries(folder)
    if other:
        raise DataError(f"{folder}: holds {', '.join(other[:3])}{' ...' if len(other) > 3 else ''} besides the "
                        "prepared data (run records? a results folder inside the cache); not replacing it: move "
                        "them away first")


def fingerprint_folder(folder: Path) -> str:
    """The fingerprint of a prepared dataset as written: its ``meta.json`` and every volume file's
    bytes, in the order of its cases (so two preparations of the same data agree)."""
    digest = hashlib.sha256()
    text = (folder / "meta.json").read_bytes()
    digest.update(text)
    for case in json.loads(text)["cases"]:
        for part in ("image", "label"):
            name = f"{case['id']}.{part}.slabs"
            digest.update(name.encode("utf-8") + b"\0")
            with open(folder / "volumes" / name, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


def _stamp_fingerprint(folder: Path) -> None:
    """Store the fingerprint in the freshly written ``meta.json`` (before the folder is moved into place)."""
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    meta["fingerprint"] = fingerprint_folder(folder)
    write_json(folder / "meta.json", meta)


MAX_RAW_FILES = 500_000  # a raw dataset folder holds fewer; more means --raw names the wrong folder


def source_fingerprint(raw: Path) -> str:
    """What a raw folder holds, cheaply: every file's relative path and size (no reading; links to
    folders not followed, hidden entries skipped). Two different datasets differ here; the same data
    copied elsewhere does not. A folder with more than ``MAX_RAW_FILES`` files is refused."""
    import hashlib

    entries = []
    for top, dirs, files in os.walk(raw):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if name.startswith("."):
                continue
            path = Path(top) / name
            try:
                info = path.stat()
            except OSError:
                continue
            entries.append(f"{path.relative_to(raw).as_posix()}\0{info.st_size}\n")
            if len(entries) > MAX_RAW_FILES:
                raise DataError(f"{raw}: holds more than {MAX_RAW_FILES:,} files; --raw should name the dataset's "
                                "own folder")
    h = hashlib.sha256()
    for line in sorted(entries):
        h.update(line.encode())
    return h.hexdigest()[:16]


def _owned(folder: Path) -> dict[str, Any] | None:
    """Our ``meta.json`` in ``folder`` (a prepared dataset we may replace), else None."""
    try:
        meta = json.loads(read_meta(folder / "meta.json"))
    except (OSError, ValueError, RecursionError, DataError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") in OUR_FORMATS and "cases" in meta else None


def prepare(name: str, raw: Path | None = None, cache_root: Path | None = None,
            force: bool = False, kind: str | None = None, strict_geometry: bool = False) -> PreparedDataset:
    """Prepare dataset ``name`` into the cache (idempotent, atomic) and open it.

    ``kind`` names the reader when it differs from ``name`` (a user's nnU-Net-format dataset is
    prepared with ``kind="nnunet"`` under its own name). Only a folder holding our ``meta.json`` is
    ever replaced (with ``force``, or never when ``raw`` is the same data); preparing another raw
    folder over a prepared name needs ``force``. One process prepares a name at a time (a lock in the
    cache), and what a killed preparation left behind is removed under that lock."""
    folder = dataset_folder(name, cache_root)
    if any(folder.parent.glob(f".{name}+*")):  # a preparation killed before its end left these
        with FolderLock(folder.parent / f".{name}.lock"):
            remove_orphans(folder.parent, f".{name}+*")
    if kind is not None and kind != name and name in DATASETS:
        raise DataError(f"'{name}' is a built-in dataset; prepare your data under another name "
                        f"(bench prepare my-{name} --format {kind})")
    if raw is None and not force and (folder / "meta.json").exists():
        return PreparedDataset(folder)
    spec = DATASETS.get(kind or name)()
    if raw is None and not spec.embedded:
        if folder.exists() and _owned(folder) is None:
            raise DataError(f"{folder}: not a prepared dataset (no readable meta.json); prepare it again "
                            f"with bench prepare {name} --raw PATH --force")
        raise DataError(f"dataset '{name}' is not prepared; run: bench prepare {name} --raw PATH")
    if raw is not None:  # a FIFO, device or file is named as what it is, not as missing
        from sslbench.base.file_kinds import kind_of

        if (what := kind_of(raw)) != "a folder":
            raise DataError(f"{raw}: no such folder" if what == "missing" else f"{raw}: is {what}, not a folder")
    if raw is not None:
        spec.check_raw(raw)  # its index first: a wrong --raw is one line, before any walk
    root = folder.parent
    if root.exists() and not root.is_dir():
        raise DataError(f"{root}: the cache is not a folder")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FolderLock(folder.parent / f".{name}.lock"):
        remove_orphans(folder.parent, f".{name}+*")  # temp folders of a killed preparation
        meta = _owned(folder)
        if folder.exists() and meta is None:
            raise DataError(f"{folder}: exists and is not a prepared dataset (no meta.json of ours); "
                            "not touching it: move it away or use another --cache")
        fingerprint = source_fingerprint(raw) if raw is not None else None
        if meta is not None and not force:
            old = meta.get("source_fingerprint")
            if raw is None or old in (None, fingerprint):
                return PreparedDataset(folder)
            raise DataError(f"{folder}: already prepared from other raw data (fingerprint {old}, {raw} is "
                            f"{fingerprint}); add --force to replace it, or prepare under another name")
        if meta is not None:
            _check_replaceable(folder)  # before the build: a refusal costs nothing
        with replacing(folder):  # refused while a run uses it; a run starting now waits for the new data
            tmp = make_temp_folder(folder.parent, name)
            try:
                writer = CheckedWriter(spec, tmp / "ds", name, strict_geometry=strict_geometry)
                spec.build(raw, writer)
                writer.source_fingerprint = fingerprint
                writer.finish()
                _stamp_fingerprint(tmp / "ds")
                os.chmod(tmp / "ds", folder_mode())
                if folder.exists():
                    _check_replaceable(folder)  # again: nothing was added while it was built
                    os.replace(folder, tmp / "old")  # ours (checked above); removed with tmp below
                os.replace(tmp / "ds", folder)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return PreparedDataset(folder)
