"""Preparing a dataset into the cache: once per name, atomically, under a lock, and only ever over
a folder this project wrote.

Preparation writes into a temporary folder that is renamed into place at the end, so a crash or a
bad input file never leaves a half-written cache; what a killed preparation left is removed under
the lock at the next start.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from sslbench.base.atomic import folder_mode, make_temp_folder, remove_orphans
from sslbench.base.errors import DataError
from sslbench.base.locks import FolderLock
from sslbench.base.names import NAME, check_name
from sslbench.cache.reader import PreparedDataset, regular_cache_file
from sslbench.data import DATASETS, CacheWriter, default_cache_root

# every cache format this project has written: a folder holding one of them is ours to replace
OUR_FORMATS = (1, 2)


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
        meta = json.loads(regular_cache_file(folder / "meta.json").read_text(encoding="utf-8"))
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
    if raw is not None and not raw.is_dir():
        raise DataError(f"{raw}: no such folder")
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
        tmp = make_temp_folder(folder.parent, name)
        try:
            writer = CacheWriter(spec, tmp / "ds", name, strict_geometry=strict_geometry)
            spec.build(raw, writer)
            writer.source_fingerprint = fingerprint
            writer.finish()
            os.chmod(tmp / "ds", folder_mode())
            if folder.exists():
                os.replace(folder, tmp / "old")  # ours (checked above); removed with tmp below
            os.replace(tmp / "ds", folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return PreparedDataset(folder)
