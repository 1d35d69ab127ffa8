"""ACDC (Bernard et al., IEEE TMI 2018): cine-MR short-axis volumes, classes RV, Myo, LV.

Reads two layouts. The challenge's own (``patientNNN/patientNNN_frameXX[_gt].nii.gz`` and
``Info.cfg``): the ED and ES frames of SSL4MIS's 70/10/20 patients (configs/splits/acdc), named
``patientNNN_frame01`` (ED) and ``_frame02`` (ES) as SSL4MIS names them, per-volume min-max, spacing
from the headers (distances in mm). And the SSL4MIS preprocessed layout (``train_slices.list``, ``val.list``, ``test.list``,
``data/slices/<volume>_slice_<k>.h5`` for training, ``data/<volume>.h5`` for evaluation; images
already min-max normalised, no voxel spacing, so distances are in voxels). Training slices are
stacked back into volumes in slice order; the order of ``train_slices.list`` (patient099, 038, 050,
...) is kept, so ``paper`` splits take SSL4MIS's / MONA's first patients. A missing ``test.list`` is
recorded, and evaluating on ``test`` then fails with a message naming it (``--eval-split val``).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from sslbench.base.errors import DataError
from sslbench.data import CacheWriter, DatasetSpec, register_dataset
from sslbench.splits import paper_list
from sslbench.datasets._nifti_cases import add_nifti_cases
from sslbench.io.readers import check_image, manifest, read_h5, read_list, regular_input, voxel_limit

SLICE_ID = re.compile(r"^(?P<volume>.+)_slice_(?P<index>\d+)$")


def check_volume_size(where: Path, volume_id: str, shape: tuple[int, ...]) -> None:
    """Refuse a volume stacked from slice files that would exceed the voxel limit (``--max-voxels``
    bounds the volume a case becomes, not each file it is read from), before it is stacked."""
    voxels = int(np.prod(shape, dtype=object))
    limit = voxel_limit()
    if voxels > limit:
        raise DataError(f"{where}: volume {volume_id!r} stacks to {' x '.join(map(str, shape))} = {voxels:,} voxels, "
                        f"more than the limit of {limit:,} (raise it with bench prepare --max-voxels)")


def _patient(volume_id: str) -> str:
    return volume_id.split("_")[0]


def build_ssl4mis(raw: Path, writer: CacheWriter) -> None:
    read: list[Path] = [raw / "train_slices.list"]
    volumes: dict[str, list[tuple[int, str]]] = {}
    for sid in read_list(raw / "train_slices.list"):
        m = SLICE_ID.match(sid)
        if not m:
            raise DataError(f"{raw / 'train_slices.list'}: '{sid}' is not <volume>_slice_<k>")
        slices = volumes.setdefault(m["volume"], [])
        if any(index == int(m["index"]) for index, _ in slices):  # "_slice_1" and "_slice_01": one slice twice
            raise DataError(f"{raw / 'train_slices.list'}: '{sid}' names a slice already listed "
                            f"({next(s for i, s in slices if i == int(m['index']))})")
        slices.append((int(m["index"]), sid))
    for vid, slices in volumes.items():
        images, labels = [], []
        for _, sid in sorted(slices):
            path = raw / "data" / "slices" / f"{sid}.h5"
            image, label = read_h5(path)
            if image.ndim != 2 or image.shape != label.shape:
                raise DataError(f"{path}: expected 2-D image and label of one shape, got {image.shape} and {label.shape}")
            if images and image.shape != images[0].shape:
                raise DataError(f"{path}: slice shape {image.shape} differs from the volume's {images[0].shape}")
            if not images:  # --max-voxels bounds the volume the slices become, checked before it is stacked
                check_volume_size(raw / "data" / "slices" / f"{vid}_slice_*.h5", vid, (len(slices), *image.shape))
            images.append(image)
            labels.append(label)
            read.append(path)
        volume = np.stack(images).astype(np.float32)
        check_image(volume, str(raw / "data" / "slices" / f"{vid}_slice_*.h5"))
        writer.add(vid, volume, np.stack(labels), "train", None, _patient(vid), origin=str(read[-1]))
    for split in ("val", "test"):
        list_path = raw / f"{split}.list"
        if split == "test" and not (list_path.exists() or list_path.is_symlink()):
            writer.missing["test"] = f"{list_path} was not found when the dataset was prepared"
            continue
        read.append(list_path)
        for vid in read_list(list_path):
            path = raw / "data" / f"{vid}.h5"
            image, label = read_h5(path)
            if image.ndim != 3:
                raise DataError(f"{path}: expected a 3-D volume, got shape {image.shape}")
            check_image(image, str(path))
            writer.add(vid, image.astype(np.float32), label, split, None, _patient(vid), origin=str(path))
            read.append(path)
    writer.source = {"layout": "ssl4mis", "root": raw.name, "files": manifest(raw, read)}


def read_info(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise DataError(f"{path}: not found (each ACDC patient folder has an Info.cfg with its ED and ES frames)")
    regular_input(path)
    info = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable ({type(exc).__name__}: {str(exc)[:200]})") from None
    for line in lines:
        if ":" in line:
            key, value = line.split(":", 1)
            info[key.strip()] = value.strip()
    for key in ("ED", "ES"):
        value = info.get(key, "")
        if not (value.isascii() and value.isdecimal() and len(value) <= 4):
            raise DataError(f"{path}: no integer '{key}' frame")
    return info


def build_challenge(raw: Path, writer: CacheWriter) -> None:
    """The challenge's own layout: patientNNN/patientNNN_frameXX.nii.gz (+ _gt), Info.cfg."""
    folders = {p.name: p for p in sorted(raw.rglob("patient[0-9][0-9][0-9]")) if p.is_dir()}
    if not folders:
        raise DataError(f"{raw}: no ACDC patient folders (patientNNN/)")
    lists = {split: paper_list("acdc", split) or [] for split in ("train", "val", "test")}
    rows: list[tuple[str, Path, Path, str]] = []
    for split in ("train", "val", "test"):
        for patient in lists[split]:
            folder = folders.get(patient)
            if folder is None:
                continue
            info = read_info(folder / "Info.cfg")
            for tag, phase in (("01", "ED"), ("02", "ES")):   # SSL4MIS ids: frame01 = ED, frame02 = ES
                stem = f"{patient}_frame{int(info[phase]):02d}"
                image = folder / f"{stem}.nii.gz"
                if not image.is_file():
                    image = folder / f"{stem}.nii"
                rows.append((f"{patient}_frame{tag}", image, image.with_name(stem + "_gt" + "".join(image.suffixes)),
                             split))
    for split in ("train", "val", "test"):
        if not any(r[3] == split for r in rows):
            writer.missing[split] = f"none of the patients of configs/splits/acdc/{split}.txt under {raw}"
    if not rows:
        raise DataError(f"{raw}: none of ACDC's 100 training patients found")
    read = add_nifti_cases(writer, raw, rows, {0: 0, 1: 1, 2: 2, 3: 3}, _patient)
    writer.source = {"layout": "challenge", "root": raw.name, "files": manifest(raw, read),
                     "skipped": sorted(set(folders) - {p for ids in lists.values() for p in ids})}


@register_dataset("acdc")
class ACDC(DatasetSpec):
    classes = ("background", "RV", "Myo", "LV")
    description = "ACDC cine-MR (SSL4MIS h5 layout): bench prepare acdc --raw PATH"

    def check_raw(self, raw: Path) -> None:
        """The SSL4MIS layout's ``train_slices.list``, or the challenge's ``patientNNN/`` folders at
        most two levels down (``training/patient001``)."""
        if (raw / "train_slices.list").is_file() or any(raw.glob("patient[0-9][0-9][0-9]")) \
                or any(raw.glob("*/patient[0-9][0-9][0-9]")):
            return
        raise DataError(f"{raw}: not an ACDC folder (expected train_slices.list of the SSL4MIS layout "
                        "or the challenge's patientNNN/ folders)")

    def build(self, raw: Path | None, writer: CacheWriter) -> None:
        assert raw is not None
        if not raw.is_dir():
            raise DataError(f"{raw}: not a folder")
        self.check_raw(raw)
        if (raw / "train_slices.list").is_file():
            build_ssl4mis(raw, writer)
        else:
            build_challenge(raw, writer)
