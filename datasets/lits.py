"""LiTS (Bilic et al., MedIA 2023): abdominal CT, classes liver and tumor.

Raw files as distributed: ``volume-N.nii[.gz]`` and ``segmentation-N.nii[.gz]`` anywhere under the
raw folder (the challenge ships them in batches). HU are clipped to [-200, 250] and min-max scaled to
[0, 1]; axial slices; images resized bicubically (MONA's LiTS test uses order 3). ``volume-N`` becomes
``case{N+1:04d}`` (MONA's numbering): train case0001-0100, test case0101-0131, validation case0081-0090
(held out of training; MONA has none, see configs/splits/README.md). Volumes without tumour are normal.
"""
from __future__ import annotations

import re
from pathlib import Path

from sslbench.data import CacheWriter, DatasetSpec, register_dataset
from sslbench.errors import DataError

from .nifti import add_nifti_cases
from .readers import manifest
from .splits import note_missing, paper_rows

VOLUME = re.compile(r"^volume-(\d+)\.nii(\.gz)?$")


def find_pairs(raw: Path, image_pattern: re.Pattern[str], label_name: str) -> dict[int, tuple[Path, Path]]:
    """Index -> (image, label) for every image under ``raw`` whose name matches ``image_pattern``
    (group 1: the index). The label sits beside it, named ``label_name.format(index=...)`` with a
    ``.nii.gz`` or ``.nii`` ending (the first that exists; the image's ending when neither does)."""
    pairs: dict[int, tuple[Path, Path]] = {}
    for path in sorted(raw.rglob("*.nii*")):
        m = image_pattern.match(path.name)
        if not m:
            continue
        index = int(m.group(1))
        if index in pairs:
            raise DataError(f"{path}: duplicate case {index} (also {pairs[index][0]})")
        stem = label_name.format(index=m.group(1))
        candidates = [path.with_name(stem + ext) for ext in (".nii.gz", ".nii")]
        own_ending = ".nii.gz" if path.name.endswith(".nii.gz") else ".nii"
        label = next((c for c in candidates if c.is_file()), path.with_name(stem + own_ending))
        pairs[index] = (path, label)
    return pairs


@register_dataset("lits")
class LiTS(DatasetSpec):
    classes = ("background", "liver", "tumor")
    description = "LiTS abdominal CT: bench prepare lits --raw PATH (volume-N.nii / segmentation-N.nii)"
    interpolation = "bicubic"

    def build(self, raw: Path | None, writer: CacheWriter) -> None:
        assert raw is not None
        pairs = find_pairs(raw, VOLUME, "segmentation-{index}")
        if not pairs:
            raise DataError(f"{raw}: no LiTS volumes (volume-N.nii or volume-N.nii.gz)")
        rows = paper_rows("lits", {f"case{i + 1:04d}": p for i, p in pairs.items()})
        read = add_nifti_cases(writer, raw, rows, {0: 0, 1: 1, 2: 2}, clip=(-200.0, 250.0))
        writer.source = {"layout": "lits", "root": raw.name, "files": manifest(raw, read)}
        note_missing(writer, rows, "lits", raw)
