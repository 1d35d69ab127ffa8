"""The dataset contract: what a dataset plugin implements and the writer it fills.

A dataset plugin (``sslbench.datasets.<name>``) sets its class names and turns raw data into a
prepared cache through ``CacheWriter``; ``check_meta`` is the check of ``meta.json`` that the writer
runs before writing and the reader after reading, so neither holds a cache the other would refuse.
Reading the cache back is ``sslbench.cache``'s, choosing the labeled cases ``sslbench.splits``'s.
A prepared cache (format ``CACHE_FORMAT``):

    <cache>/<name>/meta.json                 classes, cases (id, patient, split, shape, spacing,
                                             crop box, fill value, image dtype), source
    <cache>/<name>/volumes/<case>.image.slabs  float16 crop of the normalised volume at native
                                             resolution, zlib-compressed slabs (sslbench.io.slabs)
    <cache>/<name>/volumes/<case>.label.slabs  uint8 crop, the same box
    <cache>/<name>/slices-v<R>-<S>/{image,label,case}.npy
                                             every training slice resized to S x S (images float16),
                                             built on first use, memory-mapped (N, S, S)

Volumes are stored cropped to the box outside which the image holds one value (the "fill": air
clipped to the CT window, the zero background of a skull-stripped MR) and the label is background,
as nnU-Net crops to the nonzero region; the reader pastes the crop back, so what every reader sees
is the full volume, the label voxel for voxel. Images are kept as float16 (a normalised intensity
to within 2^-11 of its value: 0.2 HU in LiTS's 450 HU window) and both are deflated slab by slab.
The ``train`` case order is the dataset's list order (the one ``paper`` splits take the first
labeled cases from).
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from sslbench.base.atomic import json_default, write_json
from sslbench.base.errors import DataError
from sslbench.base.fields import FieldError, choice, integer, mapping, name, number, text
from sslbench.base.names import check_case_id
from sslbench.base.registry import Registry
from sslbench.io.slabs import write_slabs

__all__ = ["CACHE_FORMAT", "DATASETS", "CacheWriter", "CaseInfo", "DatasetSpec", "check_meta", "content_box",
           "default_cache_root", "register_dataset"]

# 2: volumes cropped, float16 images in deflated slabs (1, float32 .npy, is refused: rebuild with --force)
CACHE_FORMAT = 2
SLAB = 32  # slices handled at once when checking, cropping and converting a volume (bounds the peak)


def default_cache_root() -> Path:
    """``$SSLBENCH_CACHE``, else ``$XDG_CACHE_HOME/sslbench``, else ``~/.cache/sslbench``."""
    if os.environ.get("SSLBENCH_CACHE"):
        return Path(os.environ["SSLBENCH_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sslbench"


@dataclass
class CaseInfo:
    id: str
    patient: str
    split: str  # "train", "val" or "test"
    shape: tuple[int, ...]
    spacing: tuple[float, ...] | None  # mm per axis (D, H, W), None when unknown
    geometry: dict[str, Any] | None = None  # NIfTI sources: affine, axes, source file (prediction export)
    crop: tuple[tuple[int, int], ...] = ()  # the stored box, (start, stop) per axis
    fill: float = 0.0                   # the image's value outside the box
    image_dtype: str = "float16"        # how the image is stored


class DatasetSpec:
    """Base of dataset plugins. Subclasses set ``name``, ``classes`` and implement ``build``."""

    name: ClassVar[str] = ""
    classes: ClassVar[tuple[str, ...]] = ()
    embedded: ClassVar[bool] = False  # True: generated, needs no raw data
    description: ClassVar[str] = ""
    interpolation: ClassVar[str] = "nearest"  # image resize to the training size (SSL4MIS: order 0)

    def check_raw(self, raw: Path) -> None:
        """A cheap look at the raw folder's index (``dataset.json``, a split list) before anything
        walks the folder: a wrong ``--raw`` is one line at once, not a walk of the whole disk."""

    def build(self, raw: Path | None, writer: CacheWriter) -> None:
        raise NotImplementedError


DATASETS: Registry[type[DatasetSpec]] = Registry("dataset", "sslbench.datasets", "sslbench.datasets")


def register_dataset(name: str) -> Callable[[type[DatasetSpec]], type[DatasetSpec]]:
    def deco(cls: type[DatasetSpec]) -> type[DatasetSpec]:
        cls.name = name
        return DATASETS.register(name)(cls)

    return deco


def content_box(image: np.ndarray, label: np.ndarray) -> tuple[tuple[slice, ...], float]:
    """The smallest box outside which ``image`` equals its minimum (the fill) and ``label`` is 0, and
    that fill; computed a slab of slices at a time (no volume-sized mask)."""
    fill = float(image.min())
    hits = [np.zeros(n, bool) for n in image.shape]
    for z in range(0, image.shape[0], SLAB):
        mask = (image[z:z + SLAB] != fill) | (label[z:z + SLAB] != 0)
        hits[0][z:z + SLAB] = mask.any(axis=(1, 2))
        hits[1] |= mask.any(axis=(0, 2))
        hits[2] |= mask.any(axis=(0, 1))
    if not hits[0].any():  # one value everywhere and no label: keep one voxel's worth of box
        return tuple(slice(0, min(1, n)) for n in image.shape), fill
    box = []
    for h in hits:
        idx = np.flatnonzero(h)
        box.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return tuple(box), fill


class CacheWriter:
    """Collects validated volumes into a temporary cache folder."""

    def __init__(self, spec: DatasetSpec, folder: Path, name: str | None = None,
                 strict_geometry: bool = False) -> None:
        self.spec = spec
        self.strict_geometry = strict_geometry  # a label's affine that differs from its image's is an error
        self.geometry_fixed: list[str] = []    # cases whose label took the image's geometry (a warning each)
        self.source_fingerprint: str | None = None
        self.folder_name = name or spec.name
        self.folder = folder
        (folder / "volumes").mkdir(parents=True)
        self.cases: list[CaseInfo] = []
        self.source: dict[str, object] = {}
        self.missing: dict[str, str] = {}  # split -> why it is absent (e.g. "test.list not found in ...")
        self.classes: tuple[str, ...] = tuple(spec.classes)  # readers of generic formats set their own

    def add(self, case_id: str, image: np.ndarray, label: np.ndarray, split: str,
            spacing: Sequence[float] | None, patient: str | None = None, origin: str = "",
            geometry: dict[str, Any] | None = None) -> None:
        where = origin or case_id
        check_case_id(case_id, where)
        if image.shape != label.shape:
            raise DataError(f"{where}: image shape {image.shape} != label shape {label.shape}")
        if image.ndim != 3:
            raise DataError(f"{where}: expected a 3-D volume (D, H, W), got shape {image.shape}")
        if image.size == 0:
            raise DataError(f"{where}: empty volume (shape {image.shape})")
        if spacing is not None and (len(spacing) != 3 or not all(np.isfinite(s) and 1e-6 <= s <= 1e6 for s in spacing)):
            raise DataError(f"{where}: spacing {tuple(spacing)} is not three sizes in (0, 1e6] mm")
        if not all(np.isfinite(image[z:z + SLAB]).all() for z in range(0, image.shape[0], SLAB)):
            raise DataError(f"{where}: image contains NaN or Inf")
        n = len(self.classes)
        if label.size and (label.min() < 0 or label.max() >= n):
            raise DataError(f"{where}: label values {sorted(np.unique(label).tolist())} outside 0..{n - 1}")
        if any(c.id == case_id for c in self.cases):
            raise DataError(f"{where}: duplicate case id '{case_id}'")
        if split not in ("train", "val", "test"):
            raise DataError(f"{where}: unknown split '{split}'")
        box, fill = content_box(image, label)
        big = max(abs(fill), abs(float(image.max()))) > float(np.finfo(np.float16).max) / 2
        dtype = np.float32 if big else np.float16  # a z-scored outlier beyond float16's range stays float32
        write_slabs(self.folder / "volumes" / f"{case_id}.image.slabs", image[box], dtype, SLAB)
        write_slabs(self.folder / "volumes" / f"{case_id}.label.slabs", label[box], np.uint8, SLAB)
        sp = tuple(float(s) for s in spacing) if spacing is not None else None
        crop = tuple((b.start, b.stop) for b in box)
        self.cases.append(CaseInfo(case_id, patient or case_id, split, tuple(image.shape), sp, geometry,
                                   crop, fill, np.dtype(dtype).name))

    def finish(self) -> None:
        for split in ("train", "val", "test"):
            if split not in self.missing and not any(c.split == split for c in self.cases):
                raise DataError(f"{self.spec.name}: the prepared dataset has no '{split}' cases")
        meta = {
            "format": CACHE_FORMAT, "name": self.folder_name, "kind": self.spec.name, "classes": list(self.classes),
            "interpolation": self.spec.interpolation, "source": self.source, "missing": self.missing,
            "source_fingerprint": self.source_fingerprint, "geometry_fixed": self.geometry_fixed,
            "cases": [c.__dict__ for c in self.cases],
        }
        try:  # the reader's own check, before anything is written: never a cache it would refuse
            check_meta(json.loads(json.dumps(meta, default=json_default)), str(self.folder / "meta.json"))
        except FieldError as exc:
            raise DataError(f"{self.spec.name}: the prepared dataset would not be readable ({exc})") from None
        write_json(self.folder / "meta.json", meta)


MAX_VOXELS = 2 ** 31  # one volume, float32: 8 GiB; a meta.json that claims more is lying


def _case(raw: object, i: int, where: str) -> CaseInfo:
    """One case of ``meta.json``, every field checked (a lying shape would allocate petabytes)."""
    c = mapping(raw, f"cases[{i}]")
    shape = c.get("shape")
    if not (isinstance(shape, list) and len(shape) == 3):
        raise FieldError(f"cases[{i}].shape: expected three sizes, got {str(shape)[:60]}")
    shape = [integer(n, f"cases[{i}].shape", 1, MAX_VOXELS) for n in shape]
    if int(np.prod(shape)) > MAX_VOXELS:
        raise FieldError(f"cases[{i}].shape: {shape} is more than {MAX_VOXELS} voxels")
    spacing = c.get("spacing")
    if spacing is not None:
        if not (isinstance(spacing, list) and len(spacing) == 3):
            raise FieldError(f"cases[{i}].spacing: expected three sizes or null, got {str(spacing)[:60]}")
        spacing = tuple(number(v, f"cases[{i}].spacing", 1e-6, 1e6) for v in spacing)
    crop = c.get("crop")
    if not (isinstance(crop, list) and len(crop) == 3 and all(isinstance(b, list) and len(b) == 2 for b in crop)):
        raise FieldError(f"cases[{i}].crop: expected three (start, stop) pairs")
    box = []
    for axis, (a, b) in enumerate(crop):
        a = integer(a, f"cases[{i}].crop", 0, shape[axis])
        box.append((a, integer(b, f"cases[{i}].crop", a, shape[axis])))
    geometry = c.get("geometry")
    return CaseInfo(check_case_id(c.get("id"), where), text(c.get("patient"), f"cases[{i}].patient", 200),
                    choice(c.get("split"), f"cases[{i}].split", ("train", "val", "test")), tuple(shape), spacing,
                    _geometry(geometry, f"cases[{i}].geometry", shape) if geometry is not None else None, tuple(box),
                    number(c.get("fill"), f"cases[{i}].fill"),
                    choice(c.get("image_dtype"), f"cases[{i}].image_dtype", ("float16", "float32")))


def _geometry(raw: object, field: str, shape: list[int]) -> dict[str, object]:
    """A NIfTI source's geometry (predictions are written back in it): a finite 4 x 4 affine, the
    source's shape (the volume's, axes permuted), the axes a permutation of 0, 1, 2, positive spacing."""
    g = dict(mapping(raw, field))
    affine = g.get("affine")
    if not (isinstance(affine, list) and len(affine) == 4 and all(isinstance(r, list) and len(r) == 4 for r in affine)):
        raise FieldError(f"{field}.affine: expected a 4 x 4 matrix")
    for row in affine:
        for v in row:
            number(v, f"{field}.affine")
    axes = g.get("axes")
    if not (isinstance(axes, list) and sorted(a for a in axes if isinstance(a, int) and not isinstance(a, bool)) == [0, 1, 2]):
        raise FieldError(f"{field}.axes: expected a permutation of 0, 1, 2")
    source = g.get("shape")
    if not (isinstance(source, list) and len(source) == 3 and sorted(source) == sorted(shape)):
        raise FieldError(f"{field}.shape: expected the volume's sizes in the source's order, got {str(source)[:60]}")
    spacing = g.get("spacing")
    if not (isinstance(spacing, list) and len(spacing) == 3):
        raise FieldError(f"{field}.spacing: expected three sizes")
    for v in spacing:
        number(v, f"{field}.spacing", 1e-6, 1e6)
    if g.get("image") is not None:
        text(g["image"], f"{field}.image", 1000)
    return g


def check_meta(meta: object, where: str) -> tuple[str, tuple[str, ...], str, list[CaseInfo]]:
    """A prepared dataset's ``meta.json`` (a ``FieldError`` names the first bad field): its name,
    classes, interpolation and cases. The cache writer runs the same check before it writes one."""
    meta = mapping(meta, "meta.json")
    ds_name = name(meta.get("name"), "name")
    classes = meta.get("classes")
    if not (isinstance(classes, list) and 2 <= len(classes) <= 255 and len(set(map(str, classes))) == len(classes)
            and all(isinstance(c, str) and c for c in classes)):
        raise FieldError(f"classes: expected 2-255 distinct names, got {str(classes)[:60]}")
    for c in classes:
        text(c, "classes", 200)
    name(meta.get("kind", ds_name), "kind")
    interpolation = choice(meta.get("interpolation", "nearest"), "interpolation", ("nearest", "bilinear", "bicubic"))
    raw_cases = meta.get("cases")
    if not isinstance(raw_cases, list):
        raise FieldError("cases: expected a list")
    cases = [_case(c, i, where) for i, c in enumerate(raw_cases)]
    seen: set[str] = set()
    for case in cases:
        if case.id in seen:
            raise FieldError(f"cases: duplicate case id {case.id!r}")
        seen.add(case.id)
    return ds_name, tuple(classes), interpolation, cases
