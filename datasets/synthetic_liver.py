"""``synthetic-liver``: a procedural LiTS-like axial CT phantom with a long tail.

A large liver (union of ellipses) on the image left of a body with spine, kidneys and spleen of
liver-like intensity as distractors; hypodense tumours that are small, few, present in only some
volumes and only a few slices of those. Classes: background, liver, tumor. Deterministic per case.
"""
from __future__ import annotations

import numpy as np

from sslbench.data import register_dataset
from sslbench.datasets._phantom import PhantomDataset, ellipse, finish_ct_like, grid, smooth_noise

SPLITS = {"train": 40, "val": 8, "test": 16}
GENERATOR_SEED = 20240202


def liver_volume(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    depth, h, w = int(rng.integers(10, 16)), int(rng.integers(96, 121)), int(rng.integers(96, 121))
    inplane = float(rng.uniform(0.6, 0.9))
    spacing = (float(rng.choice([2.5, 4.0, 5.0])), inplane, inplane)
    yy, xx = grid(h, w)
    body = ellipse(yy, xx, h / 2, w / 2, 0.42 * h, 0.47 * w)
    lobes = [(rng.uniform(0.35, 0.5) * h, rng.uniform(0.25, 0.4) * w, rng.uniform(0.15, 0.22) * h,
              rng.uniform(0.12, 0.2) * w, rng.uniform(0, np.pi)) for _ in range(3)]
    z_lo, z_hi = int(rng.integers(0, 3)), depth - int(rng.integers(0, 3))
    n_tumours = int(rng.choice([0, 0, 1, 1, 2, 3]))
    tumours = [(rng.uniform(0.3, 0.55) * h, rng.uniform(0.2, 0.4) * w, rng.uniform(2, 6) / inplane * 0.5,
                int(rng.integers(z_lo, z_hi)), int(rng.integers(1, 3))) for _ in range(n_tumours)]
    liver_i, tumour_i, fat_i = rng.uniform(0.5, 0.65), rng.uniform(0.3, 0.45), rng.uniform(0.15, 0.3)
    image = np.zeros((depth, h, w), np.float32)
    label = np.zeros((depth, h, w), np.uint8)
    texture = smooth_noise(rng, (depth, h, w), 1.5)
    for z in range(depth):
        t = (z - z_lo) / max(z_hi - z_lo, 1)
        scale = np.sqrt(max(1 - (2 * t - 1) ** 2, 0.0)) if z_lo <= z < z_hi else 0.0
        liver = np.zeros((h, w), bool)
        for cy, cx, ry, rx, ang in lobes:
            if scale > 0.15:
                liver |= ellipse(yy, xx, cy, cx, ry * scale, rx * scale, ang)
        liver &= body
        sl = np.where(body, fat_i + 0.05 * texture[z], 0.0).astype(np.float32)
        sl[ellipse(yy, xx, 0.75 * h, 0.5 * w, 0.06 * h, 0.06 * w)] = 0.95                      # spine
        sl[ellipse(yy, xx, 0.6 * h, 0.32 * w, 0.07 * h, 0.05 * w)] = liver_i                 # kidney (R)
        sl[ellipse(yy, xx, 0.6 * h, 0.68 * w, 0.07 * h, 0.05 * w)] = liver_i                 # kidney (L)
        sl[ellipse(yy, xx, 0.42 * h, 0.75 * w, 0.1 * h, 0.07 * w)] = liver_i * 1.02          # spleen
        sl[liver] = liver_i + 0.03 * texture[z][liver]
        lab = liver.astype(np.uint8)
        for cy, cx, r, zc, extent in tumours:
            if abs(z - zc) <= extent:
                tum = ellipse(yy, xx, cy, cx, r * (1 - 0.3 * abs(z - zc)), r) & liver
                sl[tum] = tumour_i
                lab[tum] = 2
        image[z], label[z] = sl, lab
    return finish_ct_like(image, rng), label, spacing


@register_dataset("synthetic-liver")
class SyntheticLiver(PhantomDataset):
    classes = ("background", "liver", "tumor")
    description = "procedural LiTS-like CT phantom, rare small tumours (40 train / 8 val / 16 test)"
    splits = SPLITS
    seed = GENERATOR_SEED
    volume = staticmethod(liver_volume)
