"""Raw-file readers shared by the dataset plugins: every failure becomes a DataError naming the file."""
from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from sslbench.base.errors import DataError
from sslbench.base.file_kinds import kind_of
from sslbench.base.names import check_case_id

MAX_VOXELS = 2**31
# deflate cannot shrink data by more than ~1032:1, so a compressed file this much smaller than the
# voxels its header claims is truncated or forged (a "header bomb")
MAX_DEFLATE_RATIO = 1100


def voxel_limit() -> int:
    """Largest volume preparation reads: ``$SSLBENCH_MAX_VOXELS`` (``bench prepare --max-voxels``)
    or 2^31 voxels."""
    import os

    text = os.environ.get("SSLBENCH_MAX_VOXELS", "")
    try:
        return int(text) if text else MAX_VOXELS
    except ValueError:
        raise DataError(f"SSLBENCH_MAX_VOXELS={text!r} is not an integer") from None


def check_size(path: Path, shape: tuple[int, ...], itemsize: int, stored: int | None, compressed: bool) -> None:
    """Refuse, before allocating anything, a volume larger than the limit or one whose file is too
    small to hold the voxels its header claims (``stored``: bytes of voxel data on disk)."""
    voxels = int(np.prod([max(int(n), 0) for n in shape], dtype=object)) if shape else 1
    limit = voxel_limit()
    if voxels > limit:
        raise DataError(f"{path}: too large: the header claims {' x '.join(map(str, shape))} = {voxels:,} voxels, "
                        f"more than the limit of {limit:,} (raise it with bench prepare --max-voxels)")
    needed = voxels * itemsize
    if stored is not None:
        room = stored * MAX_DEFLATE_RATIO + (1 << 16) if compressed else stored
        if needed > room:
            raise DataError(f"{path}: truncated or corrupt: the header claims {' x '.join(map(str, shape))} "
                            f"voxels ({needed:,} bytes) but the file stores {stored:,} bytes")


def read_h5(path: Path, keys: tuple[str, ...] = ("image", "label")) -> tuple[np.ndarray, ...]:
    import h5py

    regular_input(path)
    try:
        with h5py.File(path, "r") as fh:
            missing = [k for k in keys if k not in fh]
            if missing:
                raise DataError(f"{path}: no dataset '{missing[0]}' (has: {', '.join(fh.keys()) or 'nothing'})")
            for k in keys:
                link = fh.get(k, getlink=True)
                if not isinstance(link, h5py.HardLink):  # an external or soft link reads another file or place
                    raise DataError(f"{path}: '{k}' is a {type(link).__name__}, not a dataset stored in this file")
                ds = fh[k]
                if not isinstance(ds, h5py.Dataset):
                    raise DataError(f"{path}: '{k}' is a group, not a dataset")
                if ds.external or ds.is_virtual:  # its bytes live in other files (any path on the machine)
                    raise DataError(f"{path}: '{k}' keeps its data outside this file "
                                    f"({'external storage' if ds.external else 'a virtual dataset'}); refused")
                if ds.dtype.kind not in "biuf":  # strings, compounds, references: not an image
                    raise DataError(f"{path}: '{k}' holds {ds.dtype} values, not numbers")
                if ds.ndim == 0 or 0 in ds.shape:
                    raise DataError(f"{path}: '{k}' is empty (shape {tuple(ds.shape)})")
                filtered = ds.compression is not None or bool(ds.chunks)
                check_size(Path(f"{path}:{k}"), tuple(ds.shape), ds.dtype.itemsize,
                           ds.id.get_storage_size(), filtered)
            return tuple(np.asarray(fh[k][()]) for k in keys)
    except DataError:
        raise
    except Exception as exc:  # h5py raises OSError and friends for corrupt files
        raise DataError(f"{path}: unreadable HDF5 file ({exc})") from exc


def regular_input(path: Path) -> None:
    """A raw input must be a regular file (a link to one is fine): never a FIFO, device, socket or folder."""
    import os
    import stat

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: unreadable ({exc.strerror})") from exc
    if not stat.S_ISREG(mode):  # named as what it is: "a FIFO", not a guess among four
        raise DataError(f"{path}: not a regular file ({kind_of(path)}); refused")


MAX_LIST_ITEMS = 500_000     # ids in one split list (a raw folder holds fewer files: MAX_RAW_FILES)
MAX_LIST_BYTES = 64 << 20    # bytes of one split list


def read_list(path: Path) -> list[str]:
    """A split list (one id per line; blank lines ignored); a missing list is an error naming it."""
    if not path.exists() and not path.is_symlink():
        raise DataError(f"{path}: split list not found")
    regular_input(path)
    if path.stat().st_size > MAX_LIST_BYTES:
        raise DataError(f"{path}: {path.stat().st_size:,} bytes; a split list is at most {MAX_LIST_BYTES:,}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable split list ({exc})") from exc
    items = [check_case_id(line.strip(), str(path)) for line in text.splitlines() if line.strip()]
    if not items:
        raise DataError(f"{path}: split list is empty")
    if len(items) > MAX_LIST_ITEMS:
        raise DataError(f"{path}: {len(items):,} ids; a split list names at most {MAX_LIST_ITEMS:,} cases")
    counts = Counter(items)  # linear: a list of 100 000 ids is checked at once, not in hours
    dupes = sorted(i for i, n in counts.items() if n > 1)
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
