"""Raw-file readers shared by the dataset plugins: every failure becomes a DataError naming the file."""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from sslbench.errors import DataError


def read_h5(path: Path, keys: tuple[str, ...] = ("image", "label")) -> tuple[np.ndarray, ...]:
    import h5py

    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with h5py.File(path, "r") as fh:
            missing = [k for k in keys if k not in fh]
            if missing:
                raise DataError(f"{path}: no dataset '{missing[0]}' (has: {', '.join(fh.keys()) or 'nothing'})")
            return tuple(np.asarray(fh[k][()]) for k in keys)
    except DataError:
        raise
    except Exception as exc:  # h5py raises OSError and friends for corrupt files
        raise DataError(f"{path}: unreadable HDF5 file ({exc})") from exc


def read_list(path: Path) -> list[str]:
    """A split list (one id per line; blank lines ignored); a missing list is an error naming it."""
    if not path.is_file():
        raise DataError(f"{path}: split list not found")
    items = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not items:
        raise DataError(f"{path}: split list is empty")
    dupes = sorted({i for i in items if items.count(i) > 1})
    if dupes:
        raise DataError(f"{path}: duplicate ids {', '.join(dupes[:3])}")
    return items


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def manifest(root: Path, files: Iterable[Path]) -> list[dict[str, object]]:
    """What preparation read: relative path, size and checksum of every input file."""
    return [{"path": str(f.relative_to(root)), "size": f.stat().st_size, "sha256": sha256(f)} for f in files]


def check_image(image: np.ndarray, where: str) -> None:
    if not np.isfinite(image).all():
        raise DataError(f"{where}: image contains NaN or Inf")
    if image.size and float(image.max()) == float(image.min()):
        raise DataError(f"{where}: image is constant ({float(image.min())})")
