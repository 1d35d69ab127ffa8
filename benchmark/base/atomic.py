"""Atomic writes: results and caches are never left half written (temp file + rename).

Temporary files are made by ``mkstemp`` (mode 0600) and folders by ``mkdtemp`` (0700); both are given
the mode an ordinary ``open``/``mkdir`` would have under the process's umask before they are renamed
into place, so a shared results folder or cache stays readable by the group as usual."""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def file_mode() -> int:
    """What ``open(path, "w")`` would create under the current umask (0644 by default)."""
    return 0o666 & ~_umask()


def folder_mode() -> int:
    """What ``mkdir`` would create under the current umask (0755 by default)."""
    return 0o777 & ~_umask()


def make_temp_folder(parent: Path, prefix: str) -> Path:
    """A fresh hidden folder in ``parent`` (``.<prefix>+XXXX``; ``+`` is in no dataset name, so the
    orphans of one name never match another's) with the umask's folder mode."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{prefix}+", dir=parent))
    os.chmod(tmp, folder_mode())
    return tmp


def remove_orphans(folder: Path, pattern: str) -> list[Path]:
    """Remove what an interrupted writer left in ``folder`` (``pattern``, e.g. ``.*.tmp``). Call it
    only while holding the lock that every writer of that folder takes, so nothing in use is removed."""
    import shutil

    removed = []
    for path in folder.glob(pattern) if folder.is_dir() else []:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the destination folder; rename it onto `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, file_mode())
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=json_default) + "\n")


def json_default(obj: Any) -> Any:
    """numpy scalars and paths as JSON values (``json.dumps(..., default=json_default)``)."""
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
