"""The dataset contract and the prepared slice cache.

A dataset plugin (``sslbench.datasets.<name>``) knows its class names and how to turn raw data into a
prepared cache; everything after that is shared:

    <cache>/<name>/meta.json                 classes, cases (id, patient, split, shape, spacing), source
    <cache>/<name>/volumes/<case>.image.npy  float32 (D, H, W), normalised, native resolution
    <cache>/<name>/volumes/<case>.label.npy  uint8   (D, H, W)
    <cache>/<name>/slices-v<R>-<S>/{image,label,case}.npy
                                             every training slice resized to S x S, built on first
                                             use, memory-mapped (N, S, S); R = RESIZE_VERSION

Preparation writes into a temporary folder that is renamed into place at the end, so a crash or a
bad input file never leaves a half-written cache. The ``train`` case order is the dataset's list order
(the one ``paper`` splits take the first labeled cases from).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .atomic import write_json
from .errors import DataError
from .registry import Registry
from .resize import resize_slices

CACHE_FORMAT = 1
# bumped whenever the slice resize changes (2: scipy zoom(order=0) mapping), so stale slices rebuild
RESIZE_VERSION = 2


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


class CacheWriter:
    """Collects validated volumes into a temporary cache folder."""

    def __init__(self, spec: DatasetSpec, folder: Path, name: str | None = None) -> None:
        self.spec = spec
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
        if image.shape != label.shape:
            raise DataError(f"{where}: image shape {image.shape} != label shape {label.shape}")
        if image.ndim != 3:
            raise DataError(f"{where}: expected a 3-D volume (D, H, W), got shape {image.shape}")
        if not np.isfinite(image).all():
            raise DataError(f"{where}: image contains NaN or Inf")
        n = len(self.classes)
        if label.size and (label.min() < 0 or label.max() >= n):
            raise DataError(f"{where}: label values {sorted(np.unique(label).tolist())} outside 0..{n - 1}")
        if any(c.id == case_id for c in self.cases):
            raise DataError(f"{where}: duplicate case id '{case_id}'")
        if split not in ("train", "val", "test"):
            raise DataError(f"{where}: unknown split '{split}'")
        np.save(self.folder / "volumes" / f"{case_id}.image.npy", image.astype(np.float32, copy=False))
        np.save(self.folder / "volumes" / f"{case_id}.label.npy", label.astype(np.uint8, copy=False))
        sp = tuple(float(s) for s in spacing) if spacing is not None else None
        self.cases.append(CaseInfo(case_id, patient or case_id, split, tuple(image.shape), sp, geometry))

    def finish(self) -> None:
        for split in ("train", "val", "test"):
            if split not in self.missing and not any(c.split == split for c in self.cases):
                raise DataError(f"{self.spec.name}: the prepared dataset has no '{split}' cases")
        write_json(self.folder / "meta.json", {
            "format": CACHE_FORMAT, "name": self.folder_name, "kind": self.spec.name, "classes": list(self.classes),
            "interpolation": self.spec.interpolation, "source": self.source, "missing": self.missing,
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
        self.meta = meta
        self.name: str = meta["name"]
        self.classes: tuple[str, ...] = tuple(meta["classes"])
        self.interpolation: str = meta.get("interpolation", "nearest")
        self.cases = [CaseInfo(c["id"], c["patient"], c["split"], tuple(c["shape"]),
                               tuple(c["spacing"]) if c["spacing"] is not None else None, c.get("geometry"))
                      for c in meta["cases"]]

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
        vol = self.folder / "volumes"
        return (np.load(vol / f"{case_id}.image.npy", mmap_mode="r"),
                np.load(vol / f"{case_id}.label.npy", mmap_mode="r"))

    def train_slices(self, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All training slices at ``size`` x ``size``: images (N,S,S) f32, labels (N,S,S) u8 and the
        index of each slice's case in ``split_cases('train')``. Built once, memory-mapped."""
        folder = self.folder / f"slices-v{RESIZE_VERSION}-{size}"
        if not (folder / "case.npy").exists():
            self._build_slices(size, folder)
            stale = self.folder / f"slices-{size}"  # built by an older resize; ours to remove
            if stale.is_dir() and (stale / "case.npy").exists():
                shutil.rmtree(stale, ignore_errors=True)
        return tuple(np.load(folder / f"{n}.npy", mmap_mode="r") for n in ("image", "label", "case"))  # type: ignore[return-value]

    def _build_slices(self, size: int, folder: Path) -> None:
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=self.folder))
        try:
            images, labels, owner = [], [], []
            for i, case in enumerate(self.split_cases("train")):
                img, lab = self.volume(case.id)
                images.append(resize_slices(np.asarray(img), size, self.interpolation))
                labels.append(resize_slices(np.asarray(lab), size, "nearest").astype(np.uint8))
                owner.append(np.full(img.shape[0], i, dtype=np.int32))
            np.save(tmp / "image.npy", np.concatenate(images).astype(np.float32))
            np.save(tmp / "label.npy", np.concatenate(labels))
            np.save(tmp / "case.npy", np.concatenate(owner))
            try:
                os.replace(tmp, folder)
            except OSError:  # another process finished first: keep theirs
                if not (folder / "case.npy").exists():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def dataset_folder(name: str, cache_root: Path | None = None) -> Path:
    return (cache_root or default_cache_root()) / name


def prepared_names(cache_root: Path | None = None) -> list[str]:
    """Datasets prepared in the cache, including user datasets prepared under their own name."""
    root = cache_root or default_cache_root()
    return sorted(p.parent.name for p in root.glob("*/meta.json")) if root.exists() else []


def check_dataset_name(name: str, cache_root: Path | None = None) -> None:
    """A registered dataset or one prepared under its own name (``bench prepare NAME --format ...``)."""
    if name in DATASETS or (dataset_folder(name, cache_root) / "meta.json").exists():
        return
    DATASETS.entry(name)  # raises the "unknown dataset" error listing the known names


def prepare(name: str, raw: Path | None = None, cache_root: Path | None = None,
            force: bool = False, kind: str | None = None) -> PreparedDataset:
    """Prepare dataset ``name`` into the cache (idempotent, atomic) and open it.

    ``kind`` names the reader when it differs from ``name`` (a user's nnU-Net-format dataset is
    prepared with ``kind="nnunet"`` under its own name)."""
    folder = dataset_folder(name, cache_root)
    if (folder / "meta.json").exists() and not force and raw is None:
        return PreparedDataset(folder)
    spec = DATASETS.get(kind or name)()
    if (folder / "meta.json").exists() and not force:
        return PreparedDataset(folder)
    if raw is None and not spec.embedded:
        raise DataError(f"dataset '{name}' is not prepared; run: bench prepare {name} --raw PATH")
    if raw is not None and not raw.exists():
        raise DataError(f"{raw}: no such folder")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=folder.parent))
    try:
        writer = CacheWriter(spec, tmp / "ds", name)
        spec.build(raw, writer)
        writer.finish()
        if folder.exists():
            shutil.rmtree(folder)
        try:
            os.replace(tmp / "ds", folder)
        except OSError:
            if not (folder / "meta.json").exists():
                raise
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
    from .config import configs_dir

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
