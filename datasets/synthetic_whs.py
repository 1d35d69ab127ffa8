"""``synthetic-whs``: a procedural MM-WHS-like axial cardiac CT phantom with seven structures.

Lower slices cut the ventricles (LV blood pool in a myocardial ring, RV beside it), middle slices the
atria (LA posterior, RA to its right), upper slices the great vessels (ascending aorta and pulmonary
artery). Contrast-enhanced blood is bright, myocardium darker, all on a textured chest. Labels follow
MM-WHS's order: 1 Myo, 2 LA, 3 LV, 4 RA, 5 RV, 6 AAo, 7 PA.
"""
from __future__ import annotations

import numpy as np

from sslbench.data import register_dataset
from sslbench.datasets._phantom import PhantomDataset, ellipse, finish_ct_like, grid, smooth_noise

SPLITS = {"train": 30, "val": 6, "test": 10}
GENERATOR_SEED = 20240303
MYO, LA, LV, RA, RV, AAO, PA = range(1, 8)


def whs_volume(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    depth, h, w = int(rng.integers(12, 18)), int(rng.integers(96, 121)), int(rng.integers(96, 121))
    inplane = float(rng.uniform(0.7, 1.0))
    spacing = (float(rng.choice([1.5, 2.0, 3.0])), inplane, inplane)
    yy, xx = grid(h, w)
    cy, cx = h * rng.uniform(0.45, 0.55), w * rng.uniform(0.45, 0.55)
    s = rng.uniform(0.9, 1.15) * min(h, w) / 100.0
    blood, myo_i, tissue = rng.uniform(0.7, 0.95), rng.uniform(0.35, 0.5), rng.uniform(0.2, 0.35)
    body = ellipse(yy, xx, h / 2, w / 2, 0.45 * h, 0.48 * w)
    image = np.zeros((depth, h, w), np.float32)
    label = np.zeros((depth, h, w), np.uint8)
    texture = smooth_noise(rng, (depth, h, w), 2.0)
    for z in range(depth):
        t = z / max(depth - 1, 1)               # 0: apex (ventricles) .. 1: great vessels
        sl = np.where(body, tissue + 0.05 * texture[z], 0.0).astype(np.float32)
        lab = np.zeros((h, w), np.uint8)
        shapes: list[tuple[int, np.ndarray]] = []
        if t < 0.6:
            k = np.sqrt(max(1 - ((0.6 - t) / 0.6) ** 2 * 0.7, 0.1))
            lv = ellipse(yy, xx, cy + 6 * s, cx + 8 * s, 11 * s * k, 9 * s * k, 0.4)
            myo = ellipse(yy, xx, cy + 6 * s, cx + 8 * s, 16 * s * k, 14 * s * k, 0.4) & ~lv
            rv = ellipse(yy, xx, cy + 2 * s, cx - 12 * s, 10 * s * k, 15 * s * k, 0.2) & ~(lv | myo)
            shapes += [(RV, rv), (MYO, myo), (LV, lv)]
        if 0.35 < t < 0.85:
            shapes += [(LA, ellipse(yy, xx, cy - 14 * s, cx + 4 * s, 9 * s, 12 * s)),
                       (RA, ellipse(yy, xx, cy - 6 * s, cx - 18 * s, 10 * s, 9 * s))]
        if t > 0.65:
            shapes += [(AAO, ellipse(yy, xx, cy - 2 * s, cx + 2 * s, 7 * s, 7 * s)),
                       (PA, ellipse(yy, xx, cy - 6 * s, cx - 10 * s, 6 * s, 8 * s))]
        for cls, mask in shapes:
            mask = mask & body & (lab == 0)
            sl[mask] = myo_i if cls == MYO else blood
            lab[mask] = cls
        image[z], label[z] = sl, lab
    return finish_ct_like(image, rng), label, spacing


@register_dataset("synthetic-whs")
class SyntheticWHS(PhantomDataset):
    classes = ("background", "Myo", "LA", "LV", "RA", "RV", "AAo", "PA")
    description = "procedural MM-WHS-like cardiac CT phantom, 7 structures (30 train / 6 val / 10 test)"
    splits = SPLITS
    seed = GENERATOR_SEED
    volume = staticmethod(whs_volume)
