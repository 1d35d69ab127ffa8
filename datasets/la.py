"""LA: the 2018 Left Atrium segmentation challenge as UA-MT released it (``github:yulequan/UA-MT``),
the 3-D benchmark of UA-MT, BCP and most semi-supervised papers since.

``--raw`` is the release's ``data`` folder: ``train.list`` (80 cases) and ``test.list`` (20), one case
id per line, and ``2018LA_Seg_Training Set/<case>/mri_norm2.h5`` holding ``image`` (float, z-scored
per volume by the release's ``la_heart_processing.py``, cropped around the atrium) and ``label``
(0 / 1). Volumes are kept whole. The release stores them as (W, H, D) with the through-plane axis
last; here they are (D, H, W) like every prepared volume (slices on the first axis), so its
112 x 112 x 80 crop is ``train.patch_size = [80, 112, 112]``. The h5 files state no voxel spacing, so
distances are in voxels, the unit LA papers report (medpy without ``voxelspacing``; the challenge's
volumes are 0.625 mm isotropic).

Split: the release's 80 training cases in ``train.list`` order (``paper`` splits label the first
ones, as ``labeled_idxs = range(16)`` does) and its 20 test cases. The release has no validation
cases: it evaluates its last iteration (``iter_6000.pth``), so runs on ``la`` select the last weights
(``configs/datasets/la.toml``); selecting on test volumes, as some later releases do, is not offered.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from sslbench.base.errors import DataError
from sslbench.data import CacheWriter, DatasetSpec, register_dataset
from sslbench.io.readers import check_image, manifest, read_h5, read_list

VOLUMES = "2018LA_Seg_Training Set"
LISTS = {"train": "train.list", "test": "test.list"}


@register_dataset("la")
class LeftAtrium(DatasetSpec):
    classes = ("background", "left atrium")
    description = "2018 Left Atrium (UA-MT's h5 release, 3-D): bench prepare la --raw <UA-MT>/data"

    def check_raw(self, raw: Path) -> None:
        for split, list_name in LISTS.items():
            read_list(raw / list_name)
        if not (raw / VOLUMES).is_dir():
            raise DataError(f"{raw / VOLUMES}: not found (UA-MT's data folder holds the volumes there)")

    def build(self, raw: Path | None, writer: CacheWriter) -> None:
        assert raw is not None
        read = [raw / name for name in LISTS.values()]
        seen: dict[str, str] = {}
        for split, list_name in LISTS.items():
            for case in read_list(raw / list_name):
                if case in seen:
                    raise DataError(f"{raw / list_name}: case {case} is also in {LISTS[seen[case]]}")
                seen[case] = split
                path = raw / VOLUMES / case / "mri_norm2.h5"
                image, label = read_h5(path)
                add_case(writer, case, image, label, split, str(path))
                read.append(path)
        writer.missing["val"] = ("UA-MT's LA split has no validation cases (its release evaluates the last "
                                 "iteration): select the last weights")
        writer.source = {"layout": "ua-mt-la", "root": raw.name, "files": manifest(raw, read)}


def add_case(writer: CacheWriter, case: str, image: np.ndarray, label: np.ndarray, split: str, where: str) -> None:
    """One release volume (W, H, D) into the cache as (D, H, W); a non-binary label is an error."""
    if image.ndim != 3 or image.shape != label.shape:
        raise DataError(f"{where}: expected a 3-D image and label of one shape, got {image.shape} and {label.shape}")
    with np.errstate(over="ignore", invalid="ignore"):  # a value beyond float32 becomes inf: refused next
        image = np.asarray(image, np.float32)
    check_image(image, where)
    values = np.unique(label)
    if not set(values.tolist()) <= {0, 1}:
        raise DataError(f"{where}: label values {values.tolist()[:6]} are not 0 / 1")
    writer.add(case, np.ascontiguousarray(image.transpose(2, 1, 0)),
               np.ascontiguousarray(label.astype(np.uint8).transpose(2, 1, 0)), split, None, origin=where)
