"""Any dataset in nnU-Net's raw format (``dataset.json``, ``imagesTr/<case>_0000.nii.gz``,
``labelsTr/<case>.nii.gz``), prepared under the user's own name:

    bench prepare mydata --raw /data/Dataset042_Thing --format nnunet
    bench run --dataset mydata --methods mt,unet-l

Classes come from ``dataset.json`` ``labels`` (consecutive integers, background 0; one image
channel). Volumes are reoriented to RAS, sliced along their coarsest axis, clipped to the 0.5-99.5
percentiles and min-max normalised; spacing comes from the headers, so distances are in mm. Cases are
split 70/10/20 with a fixed seed unless ``splits.json`` ({"train": [...], "val": [...], "test":
[...]}) sits beside ``dataset.json``.
"""
from __future__ import annotations

import json
from pathlib import Path

from sslbench.base.errors import DataError
from sslbench.data import CacheWriter, DatasetSpec, register_dataset
from sslbench.datasets._nifti_cases import add_nifti_cases
from sslbench.datasets._splits import read_split_file, seeded_split
from sslbench.io.readers import manifest, regular_input

FILE_ENDINGS = (".nii.gz", ".nii")


def read_dataset_json(raw: Path) -> tuple[tuple[str, ...], str]:
    path = raw / "dataset.json"
    if not path.exists() and not path.is_symlink():
        raise DataError(f"{path}: not found (an nnU-Net raw dataset needs dataset.json)")
    regular_input(path)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except (OSError, ValueError, RecursionError) as exc:
        raise DataError(f"{path}: invalid JSON ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(meta, dict):
        raise DataError(f"{path}: expected a JSON object, got a {type(meta).__name__}")
    labels = meta.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise DataError(f"{path}: no 'labels' mapping")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in labels.values()):
        raise DataError(f"{path}: region-based labels are not supported (every label must be one integer)")
    if len(labels) > 255:
        raise DataError(f"{path}: {len(labels)} labels; at most 255 classes are supported (labels are stored as uint8)")
    by_value = sorted(labels.items(), key=lambda kv: kv[1])
    if [v for _, v in by_value] != list(range(len(by_value))):
        raise DataError(f"{path}: label values must be consecutive from 0, got {sorted(labels.values())}")
    channels = meta.get("channel_names", meta.get("modality", {"0": "image"}))
    if not isinstance(channels, dict):
        raise DataError(f"{path}: 'channel_names' must be a mapping such as {{\"0\": \"MRI\"}}, got {channels!r}")
    if len(channels) != 1:
        raise DataError(f"{path}: {len(channels)} input channels; only single-channel datasets are supported")
    ending = meta.get("file_ending", ".nii.gz")
    if ending not in FILE_ENDINGS:
        raise DataError(f"{path}: file_ending {ending!r} is not supported (use {' or '.join(FILE_ENDINGS)})")
    return tuple(str(name) for name, _ in by_value), ending


@register_dataset("nnunet")
class NNUNetFormat(DatasetSpec):
    description = "any nnU-Net raw dataset: bench prepare NAME --raw PATH --format nnunet"

    def check_raw(self, raw: Path) -> None:
        read_dataset_json(raw)

    def build(self, raw: Path | None, writer: CacheWriter) -> None:
        assert raw is not None
        classes, ending = read_dataset_json(raw)
        writer.classes = classes
        images_dir = raw / "imagesTr"
        images = sorted(images_dir.glob(f"*_0000{ending}")) if images_dir.is_dir() else []
        if not images:
            raise DataError(f"{images_dir}: no training images (*_0000{ending})")
        cases = {p.name[: -len(f"_0000{ending}")]: p for p in images}
        split_path = raw / "splits.json"
        given = split_path.exists() or split_path.is_symlink()  # a splits.json that is not a file is an error
        splits = read_split_file(split_path, list(cases)) if given else seeded_split(list(cases))
        read = [raw / "dataset.json"] + ([split_path] if given else [])
        pairs = [(cid, path, raw / "labelsTr" / f"{cid}{ending}", splits[cid]) for cid, path in cases.items()
                 if cid in splits]
        read += add_nifti_cases(writer, raw, pairs, {i: i for i in range(len(classes))}, percentiles=(0.5, 99.5))
        writer.source = {"layout": "nnunet", "root": raw.name, "files": manifest(raw, read)}
