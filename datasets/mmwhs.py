"""MM-WHS (Zhuang, MedIA 2019), CT: seven cardiac structures.

Raw files as distributed: ``ct_train_10NN_image.nii.gz`` and ``ct_train_10NN_label.nii.gz``. Label
values 205, 420, 500, 550, 600, 820, 850 become Myo, LA, LV, RA, RV, AAo, PA (421, which occurs in
some label files, is read as LA). Intensities clipped to the 0.5-99.5 percentiles and min-max scaled;
slices along the coarsest axis; bicubic image resizing. Splits: MONA's test volumes
(1001, 1002, 1008, 1014, 1015), validation 1019 and 1020 held out (MONA has none), the rest train,
with MONA's labeled volumes first (configs/splits/mmwhs).
"""
from __future__ import annotations

import re

from sslbench.data import register_dataset
from sslbench.datasets._paired import PairedNiftiDataset

LABELS = {0: 0, 205: 1, 420: 2, 421: 2, 500: 3, 550: 4, 600: 5, 820: 6, 850: 7}


@register_dataset("mmwhs")
class MMWHS(PairedNiftiDataset):
    classes = ("background", "Myo", "LA", "LV", "RA", "RV", "AAo", "PA")
    description = "MM-WHS cardiac CT: bench prepare mmwhs --raw PATH (ct_train_10NN_image/label.nii.gz)"
    interpolation = "bicubic"
    image_pattern = re.compile(r"^ct_train_(\d+)_image\.nii(\.gz)?$")
    label_stem = "ct_train_{index}_label"
    case_id = staticmethod(lambda i: f"ct_train_{i}")
    label_map = LABELS
    norm = {"percentiles": (0.5, 99.5)}
    expected = "ct_train_10NN_image.nii.gz"
