"""LiTS (Bilic et al., MedIA 2023): abdominal CT, classes liver and tumor.

Raw files as distributed: ``volume-N.nii[.gz]`` and ``segmentation-N.nii[.gz]`` anywhere under the
raw folder (the challenge ships them in batches). HU are clipped to [-200, 250] and min-max scaled to
[0, 1]; axial slices; images resized bicubically (MONA's LiTS test uses order 3). ``volume-N`` becomes
``case{N+1:04d}`` (MONA's numbering): train case0001-0100, test case0101-0131, validation case0081-0090
(held out of training; MONA has none, see configs/splits/README.md). Volumes without tumour are normal.
"""
from __future__ import annotations

import re

from sslbench.data import register_dataset
from sslbench.datasets._paired import PairedNiftiDataset


@register_dataset("lits")
class LiTS(PairedNiftiDataset):
    classes = ("background", "liver", "tumor")
    description = "LiTS abdominal CT: bench prepare lits --raw PATH (volume-N.nii / segmentation-N.nii)"
    interpolation = "bicubic"
    image_pattern = re.compile(r"^volume-(\d+)\.nii(\.gz)?$")
    label_stem = "segmentation-{index}"
    case_id = staticmethod(lambda i: f"case{i + 1:04d}")
    label_map = {0: 0, 1: 1, 2: 2}
    norm = {"clip": (-200.0, 250.0)}
    expected = "volume-N.nii or volume-N.nii.gz"
