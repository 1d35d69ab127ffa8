"""What preparing one LiTS-size CT volume costs: peak memory and the cache's size on disk.

    python tools/lits_scale.py WORKDIR [--depth 900] [--size 512]

Writes a synthetic LiTS-like case into WORKDIR (an int16 NIfTI in HU: air at -1000 around an
elliptic body with a liver, spine and kidneys, as ``synthetic-liver`` draws them, at LiTS's in-plane
size), prepares it with the LiTS reader's settings (HU window [-200, 250]) through the same code as
``bench prepare``, and prints the peak of traced memory (numpy and nibabel allocations), the cache's
size and what the float32 uncropped layout of earlier versions would have taken; then extrapolates to
LiTS (131 volumes, 58 638 slices of 512 x 512) at this volume's cropped fraction. WORKDIR is removed
only where this script created it.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

LITS_SLICES = 58_638  # slices in LiTS's 131 training volumes (Bilic et al., 2023)


def make_case(folder: Path, depth: int, size: int) -> tuple[Path, Path]:
    import nibabel as nib

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    body = ((yy - size / 2) / (0.42 * size)) ** 2 + ((xx - size / 2) / (0.47 * size)) ** 2 <= 1
    liver = ((yy - 0.42 * size) / (0.2 * size)) ** 2 + ((xx - 0.32 * size) / (0.18 * size)) ** 2 <= 1
    spine = ((yy - 0.75 * size) / (0.06 * size)) ** 2 + ((xx - 0.5 * size) / (0.06 * size)) ** 2 <= 1
    image = np.empty((size, size, depth), np.int16)  # NIfTI order (x, y, z): axial slices along z
    label = np.zeros((size, size, depth), np.uint8)
    rng = np.random.default_rng(0)
    z_liver = range(int(0.3 * depth), int(0.7 * depth))
    for z in range(depth):
        sl = np.where(body, -80, -1000).astype(np.float32) + rng.normal(0, 15, (size, size)).astype(np.float32)
        sl[spine] = 700
        if z in z_liver:
            sl[liver] = 60 + rng.normal(0, 15, int(liver.sum()))
            label[:, :, z] = liver.T
        image[:, :, z] = np.round(sl).astype(np.int16).T
    affine = np.diag([0.75, 0.75, 1.0, 1.0])
    img_path, lab_path = folder / "volume-0.nii", folder / "segmentation-0.nii"
    nib.save(nib.Nifti1Image(image, affine), str(img_path))
    nib.save(nib.Nifti1Image(label, affine), str(lab_path))
    return img_path, lab_path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--depth", type=int, default=900)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    from sslbench.data import DATASETS, CacheWriter
    from sslbench.datasets._nifti_cases import add_nifti_cases

    created = not args.workdir.exists()
    raw = args.workdir / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        img_path, lab_path = make_case(raw, args.depth, args.size)
        made = time.perf_counter() - t0
        spec = DATASETS.get("lits")()
        cache = args.workdir / "cache"
        shutil.rmtree(cache, ignore_errors=True)
        writer = CacheWriter(spec, cache)
        tracemalloc.start()
        t0 = time.perf_counter()
        add_nifti_cases(writer, raw, [("case0001", img_path, lab_path, "train")], spec.label_map, **spec.norm)
        seconds = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        case = writer.cases[0]
        disk = sum(p.stat().st_size for p in (cache / "volumes").iterdir())
        voxels = int(np.prod(case.shape))
        old = voxels * (4 + 1)  # float32 image + uint8 label, uncropped
        kept = float(np.prod([b - a for a, b in case.crop])) / voxels
        per_slice = disk / case.shape[0]
        report = {
            "shape_dhw": list(case.shape), "crop": [list(c) for c in case.crop], "kept_fraction": round(kept, 4),
            "image_dtype": case.image_dtype, "prepare_s": round(seconds, 1), "make_case_s": round(made, 1),
            "peak_traced_gb": round(peak / 1e9, 3), "volume_float32_gb": round(voxels * 4 / 1e9, 3),
            "cache_gb": round(disk / 1e9, 3), "float32_uncropped_gb": round(old / 1e9, 3),
            "lits_131_volumes_gb_at_this_fraction": round(per_slice * LITS_SLICES / 1e9, 1),
            "lits_131_volumes_gb_float32_uncropped": round(LITS_SLICES * args.size ** 2 * 5 / 1e9, 1),
        }
        print(json.dumps(report, indent=1))
    finally:
        if created:
            shutil.rmtree(args.workdir, ignore_errors=True)
        else:
            shutil.rmtree(raw, ignore_errors=True)
            shutil.rmtree(args.workdir / "cache", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
