"""The dataset plugins' shared step for NIfTI sources: read, check, normalise and add each case to the
cache writer (ACDC's challenge layout, LiTS, MM-WHS, nnU-Net format)."""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from sslbench.base.errors import DataError
from sslbench.data import CacheWriter
from sslbench.io.nifti import geometry_to_json, normalize, read_case


def add_nifti_cases(writer: CacheWriter, raw: Path, cases: list[tuple[str, Path, Path, str]],
                    label_map: dict[int, int], patient_of: Callable[[str], str] | None = None,
                    **norm: object) -> list[Path]:
    """Read, check, normalise and add (case id, image, label, split) NIfTI pairs; returns the files
    read (for the cache's manifest). ``patient_of`` maps a case to its patient (splits never separate
    a patient's volumes; default: one patient per case). ``norm`` goes to ``normalize``."""
    read: list[Path] = []
    for cid, image_path, label_path, split in cases:
        if not label_path.is_file():
            raise DataError(f"{image_path}: image without label (expected {label_path})")
        def fixed(message: str, cid: str = cid) -> None:
            logging.getLogger("sslbench").warning(message)
            writer.geometry_fixed.append(cid)

        image, label, geom = read_case(image_path, label_path, label_map, writer.strict_geometry, fixed)
        image = normalize(image, str(image_path), **norm)  # type: ignore[arg-type]
        writer.add(cid, image, label, split, geom.spacing, patient_of(cid) if patient_of else cid,
                   origin=str(image_path),
                   geometry={**geometry_to_json(geom), "image": str(image_path.relative_to(raw))})
        read += [image_path, label_path]
    return read
