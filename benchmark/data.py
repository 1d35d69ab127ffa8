"""The dataset contract and the prepared slice cache.

A dataset plugin (``sslbench.datasets.<name>``) knows its class names and how to turn raw data into a
prepared cache; everything after that is shared:

    <cache>/<name>/meta.json                 classes, cases (id, patient, split, shape, spacing,
                                             crop box, fill value, image dtype), source
    <cache>/<name>/volumes/<case>.image.slabs  float16 crop of the normalised volume at native
                                             resolution, zlib-compressed slabs (sslbench.io.slabs)
    <cache>/<name>/volumes/<case>.label.slabs  uint8 crop, the same box
    <cache>/<name>/slices-v<R>-<S>/{image,label,case}.npy
                                             every training slice resized to S x S (images float16),
                                             built on first use, memory-mapped (N, S, S); R = RESIZE_VERSION

Volumes are stored cropped to the box outside which the image holds one value (the "fill": air
clipped to the CT window, the zero background of a skull-stripped MR) and the label is background,
as nnU-Net crops to the nonzero region; ``volume`` pastes the crop back, so what every reader sees
is the full volume, the label voxel for voxel. Images are kept as float16 (a normalised intensity
to within 2^-11 of its value: 0.2 HU in LiTS's 450 HU window) and both are deflated slab by slab.
Caches written before (float32 .npy, uncropped) are read as they are.

Preparation writes into a temporary folder that is renamed into place at the end, so a crash or a
bad input file never leaves a half-written cache. The ``train`` case order is the dataset's list order
(the one ``paper`` splits take the first labeled cases from).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from sslbench.base.atomic import folder_mode, make_temp_folder, remove_orphans, write_json
from sslbench.base.errors import DataError
from sslbench.base.locks import FolderLock
from sslbench.base.names import NAME, check_case_id, check_name
from sslbench.base.registry import Registry
from sslbench.io.resize import resize_slices
from sslbench.io.slabs import read_slabs, write_slabs

CACHE_FORMAT = 1
# bumped whenever the slice cache changes (2: scipy zoom(order=0) mapping; 3: float16 images), so
# stale slices rebuild
RESIZE_VERSION = 3
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
    crop: tuple[tuple[int, int], ...] | None = None  # stored box (start, stop) per axis; None: the whole volume
    fill: float = 0.0                   # the image's value outside the box
    image_dtype: str = "float32"        # how the image is stored


class DatasetSpec:
    """Base of dataset plugins. Subclasses set ``name``, ``classes`` and implement ``build``."""

    name: ClassVar[str] = ""
    classes: ClassVar[tuple[str, ...]] = ()
    embedded: ClassVar[bool] = False  # True: generated, needs no raw data
    description: ClassVar[str] = ""
    interpolation: ClassVar[str] = "nearest"  # image resize to the training size (SSL4MIS: order 0)

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
        write_json(self.folder / "meta.json", {
            "format": CACHE_FORMAT, "name": self.folder_name, "kind": self.spec.name, "classes": list(self.classes),
            "interpolation": self.spec.interpolation, "source": self.source, "missing": self.missing,
            "source_fingerprint": self.source_fingerprint, "geometry_fixed": self.geometry_fixed,
            "cases": [c.__dict__ for c in self.cases],
        })


class PreparedDataset:
    """A prepared cache, read-only."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        try:
            meta = json.loads((folder / "meta.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"{folder / 'meta.json'}: unreadable prepared dataset ({exc})") from exc
        try:
            self.meta = meta
            self.name: str = meta["name"]
            self.classes: tuple[str, ...] = tuple(meta["classes"])
            self.interpolation: str = meta.get("interpolation", "nearest")
            self.cases = [CaseInfo(check_case_id(c["id"], str(folder / "meta.json")), c["patient"], c["split"],
                                   tuple(c["shape"]), tuple(c["spacing"]) if c["spacing"] is not None else None,
                                   c.get("geometry"),
                                   tuple((int(a), int(b)) for a, b in c["crop"]) if c.get("crop") else None,
                                   float(c.get("fill", 0.0)), str(c.get("image_dtype", "float32")))
                          for c in meta["cases"]]
            self._by_id = {c.id: c for c in self.cases}
        except (KeyError, TypeError, AttributeError) as exc:
            raise DataError(f"{folder / 'meta.json'}: not a prepared dataset's meta.json ({exc!r}); "
                            "prepare it again with --force") from exc

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def split_cases(self, split: str) -> list[CaseInfo]:
        return [c for c in self.cases if c.split == split]

    def eval_cases(self, split: str) -> list[CaseInfo]:
        """The cases of an evaluation split; a clear error when the raw data had none."""
        cases = self.split_cases(split)
        if not cases:
            why = self.meta.get("missing", {}).get(split, "it has no cases")
            hint = " (use --eval-split val)" if split == "test" else ""
            raise DataError(f"{self.name}: no '{split}' volumes: {why}{hint}")
        return cases

    def volume(self, case_id: str) -> tuple[np.ndarray, np.ndarray]:
        """The full (D, H, W) image (float32) and label (uint8) of a case: the stored crop pasted into
        the fill value (memory maps of the files for an uncropped float32 cache of an older version)."""
        vol = self.folder / "volumes"
        case = self._by_id.get(case_id)
        if case is None or case.crop is None:
            return (np.load(vol / f"{case_id}.image.npy", mmap_mode="r"),
                    np.load(vol / f"{case_id}.label.npy", mmap_mode="r"))
        box = tuple(slice(a, b) for a, b in case.crop)
        image = np.full(case.shape, case.fill, np.float32)
        label = np.zeros(case.shape, np.uint8)
        try:
            read_slabs(vol / f"{case_id}.image.slabs", image[box])
            read_slabs(vol / f"{case_id}.label.slabs", label[box])
        except (OSError, ValueError, struct.error, zlib.error) as exc:
            raise DataError(f"{vol / case_id}.*.slabs: unreadable prepared volume ({exc}); prepare the dataset "
                            "again with --force") from exc
        return image, label

    def train_slices(self, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All training slices at ``size`` x ``size``: images (N,S,S) f16, labels (N,S,S) u8 and the
        index of each slice's case in ``split_cases('train')``. Built once, memory-mapped."""
        folder = self.folder / f"slices-v{RESIZE_VERSION}-{size}"
        if not (folder / "case.npy").exists() or any(self.folder.glob(".slices-*+*")):
            with FolderLock(self.folder / ".slices.lock"):
                remove_orphans(self.folder, ".slices-*+*")  # left by a killed build
                if not (folder / "case.npy").exists():
                    self._build_slices(size, folder)
                # built by an older version of the slice cache: ours to remove
                for stale in [self.folder / f"slices-{size}",
                              *(self.folder / f"slices-v{v}-{size}" for v in range(2, RESIZE_VERSION))]:
                    if stale.is_dir() and (stale / "case.npy").exists():
                        shutil.rmtree(stale, ignore_errors=True)
        return tuple(np.load(folder / f"{n}.npy", mmap_mode="r") for n in ("image", "label", "case"))  # type: ignore[return-value]

    def _build_slices(self, size: int, folder: Path) -> None:
        """Resize every training slice into preallocated memory maps (one volume in memory at a time,
        never a list of the whole cache), then move the folder into place."""
        from numpy.lib.format import open_memmap

        cases = self.split_cases("train")
        total = sum(int(c.shape[0]) for c in cases)
        tmp = make_temp_folder(self.folder, folder.name)
        try:
            images = open_memmap(tmp / "image.npy", "w+", np.float16, (total, size, size))
            labels = open_memmap(tmp / "label.npy", "w+", np.uint8, (total, size, size))
            owner = open_memmap(tmp / "case.npy", "w+", np.int32, (total,))
            at = 0
            for i, case in enumerate(cases):
                img, lab = self.volume(case.id)
                n = img.shape[0]
                images[at:at + n] = resize_slices(np.asarray(img), size, self.interpolation)
                labels[at:at + n] = resize_slices(np.asarray(lab), size, "nearest")
                owner[at:at + n] = i
                at += n
            for array in (images, labels, owner):
                array.flush()
            del images, labels, owner
            os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


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


def source_fingerprint(raw: Path) -> str:
    """What a raw folder holds, cheaply: every file's relative path and size (no reading). Two
    different datasets differ here; the same data copied elsewhere does not."""
    import hashlib

    h = hashlib.sha256()
    for path in sorted(p for p in raw.rglob("*") if p.is_file()):
        h.update(f"{path.relative_to(raw).as_posix()}\0{path.stat().st_size}\n".encode())
    return h.hexdigest()[:16]


def _owned(folder: Path) -> dict[str, Any] | None:
    """Our ``meta.json`` in ``folder`` (a prepared dataset we may replace), else None."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == CACHE_FORMAT and "cases" in meta else None


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


def labeled_count(ratio: float, n_patients: int) -> int:
    """Number of labeled patients for a label ratio in percent: round(ratio * N / 100), at least 1.

    Halves round up (so 1.5 -> 2, as MONA's MMWHS 10 % list). ``ratio >= 100`` means every patient.
    """
    if ratio <= 0:
        raise DataError(f"label ratio must be positive, got {ratio}")
    if ratio >= 100:
        return n_patients
    return max(1, min(n_patients, math.floor(ratio * n_patients / 100 + 0.5)))


def paper_list(kind: str, name: str) -> list[str] | None:
    """A shipped fixed list (``configs/splits/<kind>/<name>.txt``), or None."""
    from sslbench.base.config import configs_dir

    path = configs_dir() / "splits" / kind / f"{name}.txt"
    if not path.is_file():
        return None
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def split_labeled(ds: PreparedDataset, ratio: float, seed: int, mode: str) -> tuple[list[str], list[str]]:
    """Labeled and unlabeled training case ids, chosen at the patient level.

    ``paper``: the shipped list ``configs/splits/<dataset>/labeled_<ratio>.txt`` when there is one,
    else the first patients in the dataset's list order (SSL4MIS's ACDC order).
    ``random``: a permutation of patients seeded by the run seed. It labels as many patients as the
    paper list of that ratio when there is one (ACDC 5 % = 3 patients, as SSL4MIS's ``labeled_num``,
    not round(5 % of 70) = 4), so random and paper splits of a ratio are comparable; otherwise
    ``labeled_count(ratio, N)``.
    """
    train = ds.split_cases("train")
    kind = ds.meta.get("kind", ds.name)
    fixed = paper_list(kind, f"labeled_{ratio:g}") if ratio < 100 else None
    chosen_patients: set[str] | None = None
    if fixed is not None:
        ids = {c.id for c in train}
        unknown = [c for c in fixed if c not in ids]
        if unknown:
            raise DataError(f"configs/splits/{kind}/labeled_{ratio:g}.txt: "
                            f"{unknown[0]} is not a training case of {ds.name}")
        chosen_patients = {c.patient for c in train if c.id in set(fixed)}
    patients = list(dict.fromkeys(c.patient for c in train))
    if mode == "random":
        n = len(chosen_patients) if chosen_patients is not None else labeled_count(ratio, len(patients))
        order = np.random.default_rng(seed).permutation(len(patients))
        chosen_patients = {patients[i] for i in order[:n]}
    elif chosen_patients is None:
        chosen_patients = set(patients[:labeled_count(ratio, len(patients))])
    return ([c.id for c in train if c.patient in chosen_patients],
            [c.id for c in train if c.patient not in chosen_patients])
