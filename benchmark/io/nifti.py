"""NIfTI volumes in and out: reorientation, slice axis, spacing, and predictions saved back in the
source geometry so they open in 3D Slicer or ITK-SNAP over the original image.

Reading: the image is reoriented to the closest canonical (RAS+) orientation with nibabel, the slice
axis is the axis of coarsest spacing, and the array is transposed to (D, H, W) with the spacing
permuted the same way (nibabel's zooms are in array-axis order, so they must follow the transpose).
Writing inverts both steps and reuses the source affine and header.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sslbench.base.atomic import file_mode
from sslbench.base.errors import DataError
from sslbench.io.readers import check_size


@dataclass
class Geometry:
    """How a (D, H, W) array maps back onto its source NIfTI file."""

    affine: np.ndarray
    shape: tuple[int, ...]           # source array shape
    axes: tuple[int, int, int]       # canonical axes placed at (D, H, W)
    spacing: tuple[float, float, float]


def _nib():
    import nibabel as nib

    return nib


def open_image(path: Path):  # -> nibabel image (header only, checked; no voxel read yet)
    """The NIfTI image object with its header checked against the voxel limit and the file size."""
    nib = _nib()
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        img = nib.load(str(path))
    except Exception as exc:
        raise DataError(f"{path}: unreadable NIfTI file ({exc or type(exc).__name__})") from exc
    check_header(path, img)
    return img


def to_dhw(img: object, path: Path, dtype: type | None = np.float32, source: object | None = None,
           ) -> tuple[np.ndarray, Geometry]:
    """(D, H, W) array of ``img`` reoriented to RAS and sliced along its coarsest axis.

    ``dtype=None`` keeps the stored type when the header applies no scaling (labels: int16 stays
    int16, never a float64 copy); float types are computed in that type. ``source`` is the image whose
    affine the returned geometry names (``img`` itself unless a label borrows its image's grid)."""
    nib = _nib()
    try:
        canon = nib.as_closest_canonical(img)
        proxy = canon.dataobj
        slope, inter = canon.header.get_slope_inter()
        unscaled = slope in (None, 1.0) and inter in (None, 0.0) and hasattr(proxy, "get_unscaled")
        if dtype is None:
            data = np.asarray(proxy.get_unscaled()) if unscaled else np.asarray(proxy)
        else:
            data = canon.get_fdata(dtype=dtype) if np.dtype(dtype).kind == "f" else np.asarray(proxy).astype(dtype)
    except MemoryError as exc:
        raise DataError(f"{path}: too large to read into memory ({img.shape})") from exc  # type: ignore[attr-defined]
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: unreadable NIfTI file ({exc or type(exc).__name__})") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(f"{path}: expected a 3-D volume, got shape {data.shape}")
    zooms = tuple(float(z) for z in canon.header.get_zooms()[:3])
    slice_axis = int(np.argmax(zooms))
    axes = (slice_axis, *[a for a in range(3) if a != slice_axis])
    array = np.transpose(data, axes)  # a view: copying to C order would double the peak (np.save streams it)
    owner = source if source is not None else img
    return array, Geometry(owner.affine, tuple(owner.shape[:3]), axes, tuple(zooms[a] for a in axes))  # type: ignore[attr-defined]


def load_volume(path: Path, dtype: type | None = np.float32) -> tuple[np.ndarray, Geometry]:
    """(D, H, W) array and its geometry; errors name the file."""
    return to_dhw(open_image(path), path, dtype)


def check_header(path: Path, img: object) -> None:
    """The header's shape against the voxel limit and the file's size, before any voxel is read."""
    header = img.header  # type: ignore[attr-defined]
    try:
        offset = int(header.get_data_offset())
        itemsize = header.get_data_dtype().itemsize
    except Exception as exc:  # noqa: BLE001 - a broken header
        raise DataError(f"{path}: unreadable NIfTI header ({exc or type(exc).__name__})") from exc
    size = path.stat().st_size
    compressed = path.name.endswith(".gz")
    check_size(path, tuple(img.shape), itemsize, size if compressed else max(size - offset, 0), compressed)  # type: ignore[attr-defined]


def same_geometry(a: Geometry, b: Geometry, atol: float = 1e-3) -> bool:
    return a.shape == b.shape and np.allclose(a.affine, b.affine, atol=atol)


def save_volume(array: np.ndarray, geometry: Geometry, path: Path, source: Path | None = None) -> None:
    """Write a (D, H, W) array (a prediction) back in the source orientation and affine."""
    nib = _nib()
    from nibabel import orientations as ornt

    canonical = np.transpose(array, np.argsort(geometry.axes))
    source_ornt = ornt.io_orientation(geometry.affine)
    to_source = ornt.ornt_transform(ornt.axcodes2ornt(("R", "A", "S")), source_ornt)
    data = ornt.apply_orientation(canonical, to_source)
    if tuple(data.shape) != tuple(geometry.shape):
        raise DataError(f"{path}: prediction shape {data.shape} does not match the source {geometry.shape}")
    header = nib.load(str(source)).header.copy() if source is not None else None
    img = nib.Nifti1Image(np.ascontiguousarray(data).astype(np.uint8), geometry.affine, header)
    img.set_data_dtype(np.uint8)
    img.header.set_slope_inter(1, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a fresh file (O_EXCL: never a planted link) that keeps the .nii(.gz) ending nibabel needs
    fd, name = tempfile.mkstemp(prefix=".tmp-", suffix="-" + path.name, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        nib.save(img, str(tmp))
        os.chmod(tmp, file_mode())  # mkstemp's 0600, else: a prediction is as readable as every other result
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def geometry_to_json(g: Geometry) -> dict[str, object]:
    return {"affine": np.asarray(g.affine).tolist(), "shape": list(g.shape), "axes": list(g.axes),
            "spacing": list(g.spacing)}


def geometry_from_json(d: dict[str, object]) -> Geometry:
    return Geometry(np.asarray(d["affine"]), tuple(d["shape"]), tuple(d["axes"]), tuple(d["spacing"]))  # type: ignore[arg-type]


def read_case(image_path: Path, label_path: Path, label_map: dict[int, int] | None = None,
              strict_geometry: bool = False, on_fixed: Callable[[str], None] | None = None,
              ) -> tuple[np.ndarray, np.ndarray, Geometry]:
    """Image, label (mapped to class indices) and geometry of one case, checked for consistency.

    As nnU-Net's dataset check: a label whose voxel grid (shape) or spacing differs from its image's
    is an error; one with the same grid and spacing but another affine (orientation or origin lost
    by the tool that wrote it) is read in the image's geometry, voxel for voxel, and reported through
    ``on_fixed`` (a warning naming the case), unless ``strict_geometry``."""
    img = open_image(image_path)
    lab = open_image(label_path)
    if tuple(img.shape[:3]) != tuple(lab.shape[:3]):
        raise DataError(f"{label_path}: label shape {tuple(lab.shape[:3])} != image shape "
                        f"{tuple(img.shape[:3])} ({image_path.name})")
    image, g_img = to_dhw(img, image_path)
    if not np.allclose(img.affine, lab.affine, atol=1e-3):
        zi, zl = (np.asarray(x.header.get_zooms()[:3], dtype=float) for x in (img, lab))
        if strict_geometry or not np.allclose(zi, zl, rtol=1e-3, atol=1e-4):
            what = "spacing" if not np.allclose(zi, zl, rtol=1e-3, atol=1e-4) else "affine"
            raise DataError(f"{label_path}: label {what} differs from the image's ({image_path.name})"
                            + ("" if what == "spacing" else "; without --strict-geometry the label "
                               "takes the image's geometry when shape and spacing agree"))
        lab = type(lab)(lab.dataobj, img.affine, lab.header)  # same voxels, the image's orientation
        if on_fixed is not None:
            on_fixed(f"{label_path}: label affine differs from the image's ({image_path.name}) with the same "
                     "shape and spacing; using the image's geometry (as nnU-Net)")
    label, _ = to_dhw(lab, label_path, dtype=None, source=img)
    if label.dtype.kind == "f":
        if not np.all(np.isfinite(label)) or np.any(label != np.round(label)):
            raise DataError(f"{label_path}: label values are not integers")
        label = label.astype(np.int32)
    elif label.dtype.kind not in "iub":
        raise DataError(f"{label_path}: label type {label.dtype} is not numeric")
    values = np.unique(label).astype(np.int64)
    if label_map is not None:
        unknown = [int(v) for v in values if int(v) not in label_map]
        if unknown:
            raise DataError(f"{label_path}: label values {unknown} not in the dataset's set {sorted(label_map)}")
        lut = np.zeros(int(values.max()) + 1, dtype=np.uint8)
        for raw_value, cls in label_map.items():
            if raw_value <= values.max():
                lut[raw_value] = cls
        label = lut[label]
    elif values.min() < 0 or values.max() > 255:
        raise DataError(f"{label_path}: label values {values.tolist()[:8]} outside 0..255")
    return image, label.astype(np.uint8, copy=False), g_img


def normalize(image: np.ndarray, where: str, clip: tuple[float, float] | None = None,
              percentiles: tuple[float, float] | None = None) -> np.ndarray:
    """Clip (fixed window such as CT HU, or percentiles for MR), then min-max to [0, 1], in place on
    a float32 array (no extra volume-sized copies)."""
    image = image if image.dtype == np.float32 else image.astype(np.float32)
    if not np.isfinite(image).all():
        raise DataError(f"{where}: image contains NaN or Inf")
    if clip is not None:
        np.clip(image, *clip, out=image)
    elif percentiles is not None:
        np.clip(image, *np.percentile(image, percentiles), out=image)
    lo, hi = float(image.min()), float(image.max())
    if hi <= lo:
        raise DataError(f"{where}: image is constant ({lo})")
    image -= lo
    image /= hi - lo
    return image
