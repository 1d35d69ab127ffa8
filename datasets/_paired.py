"""Challenge datasets distributed as image / label NIfTI pairs with MONA's fixed splits (LiTS,
MM-WHS): one reader, configured per dataset by file-name pattern, case naming, label map and
intensity normalisation."""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from sslbench.base.errors import DataError
from sslbench.data import CacheWriter, DatasetSpec
from sslbench.datasets._nifti_cases import add_nifti_cases
from sslbench.datasets._splits import note_missing, paper_rows
from sslbench.io.readers import manifest


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


class PairedNiftiDataset(DatasetSpec):
    """Subclasses set the image pattern (group 1 = index), the label file stem, how an index becomes a
    case id, the label map and the ``normalize`` arguments; splits come from configs/splits/<name>."""

    image_pattern: ClassVar[re.Pattern[str]]
    label_stem: ClassVar[str]                      # e.g. "segmentation-{index}"
    case_id: ClassVar[Callable[[int], str]]
    label_map: ClassVar[dict[int, int]]
    norm: ClassVar[dict[str, Any]] = {}
    expected: ClassVar[str] = ""                   # what the raw folder should hold, for the error

    def build(self, raw: Path | None, writer: CacheWriter) -> None:
        assert raw is not None
        pairs = find_pairs(raw, self.image_pattern, self.label_stem)
        if not pairs:
            raise DataError(f"{raw}: no {self.name} volumes ({self.expected})")
        rows = paper_rows(self.name, {type(self).case_id(i): p for i, p in pairs.items()})
        read = add_nifti_cases(writer, raw, rows, self.label_map, **self.norm)
        writer.source = {"layout": self.name, "root": raw.name, "files": manifest(raw, read)}
        note_missing(writer, rows, self.name, raw)
