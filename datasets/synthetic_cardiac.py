"""``synthetic-cardiac``: a procedural ACDC-like short-axis cine-MR phantom (the embedded default).

Each volume is a stack of short-axis slices from base to apex: a bright LV blood pool inside a dark
myocardial ring, a bright RV crescent wrapped around one side of the septum, inside a textured body
with bright distractor blobs (vessels, liver) of blood-like intensity. Size, ellipticity, position,
rotation, wall thickness, intensities, noise, blur and a bias field vary per volume; the LV tapers
towards the apex and the RV ends before it. Labels follow ACDC: 0 background, 1 RV, 2 Myo, 3 LV.
Volumes are generated deterministically from the case index and written to the prepared cache on first
use, so no data ships with the project.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from sslbench.data import register_dataset
from sslbench.datasets._phantom import PhantomDataset, bias_field, ellipse, grid, minmax, smooth_noise

SPLITS = {"train": 40, "val": 8, "test": 20}
GENERATOR_SEED = 20240101


def cardiac_volume(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    depth = int(rng.integers(8, 13))
    h, w = int(rng.integers(96, 129)), int(rng.integers(96, 129))
    inplane = float(rng.uniform(1.2, 1.8))
    spacing = (float(rng.choice([5.0, 6.5, 8.0, 10.0])), inplane, inplane)
    yy, xx = grid(h, w)
    mm = 1.0 / inplane  # pixels per mm

    cy, cx = h / 2 + rng.uniform(-0.12, 0.12) * h, w / 2 + rng.uniform(-0.12, 0.12) * w
    r_lv = rng.uniform(10, 16) * mm
    ecc = rng.uniform(0.8, 1.2)
    angle = rng.uniform(0, np.pi)
    wall = rng.uniform(5, 9) * mm
    rv_dir = np.pi + rng.uniform(-0.6, 0.6)  # RV on the image left, as in ACDC
    rv_len = rng.uniform(0.55, 0.85)        # fraction of slices (from the base) with an RV
    drift = rng.normal(0, 0.6, size=(depth, 2)).cumsum(0)

    blood, myo_i, tissue = rng.uniform(0.65, 0.95), rng.uniform(0.1, 0.35), rng.uniform(0.25, 0.55)
    body = ellipse(yy, xx, h / 2, w / 2, 0.46 * h, 0.48 * w, rng.uniform(-0.2, 0.2))
    blobs = []
    for _ in range(int(rng.integers(3, 7))):
        by, bx = rng.uniform(0.15, 0.85) * h, rng.uniform(0.15, 0.85) * w
        if np.hypot(by - cy, bx - cx) < r_lv + wall + 12 * mm:
            continue  # keep distractors off the heart
        blobs.append((by, bx, rng.uniform(3, 14) * mm, rng.uniform(3, 14) * mm, rng.uniform(0, np.pi),
                      rng.uniform(0.45, 1.0)))

    image = np.zeros((depth, h, w), np.float32)
    label = np.zeros((depth, h, w), np.uint8)
    texture = smooth_noise(rng, (depth, h, w), 2.0)
    for z in range(depth):
        t = z / max(depth - 1, 1)               # 0 at the base, 1 at the apex
        taper = np.sqrt(max(1.0 - 0.85 * t**2, 0.05))
        sy, sx = cy + drift[z, 0], cx + drift[z, 1]
        r = r_lv * taper * (1 - 0.35 * t)
        lv = ellipse(yy, xx, sy, sx, r * ecc, r / ecc, angle) if r > 2.0 else np.zeros((h, w), bool)
        outer = ellipse(yy, xx, sy, sx, r * ecc + wall, r / ecc + wall, angle)
        myo = outer & ~lv
        rv = np.zeros((h, w), bool)
        if t <= rv_len:
            rr = (r_lv * taper + wall) * rng.uniform(0.95, 1.05)
            oy = sy + np.sin(rv_dir) * rr * 0.55
            ox = sx + np.cos(rv_dir) * rr * 0.55
            rv = ellipse(yy, xx, oy, ox, rr * 1.25, rr * 0.95, rv_dir + np.pi / 2)
            rv &= ~ndimage.binary_dilation(outer, iterations=max(int(1.5 * mm), 1))
        sl = np.where(body, tissue + 0.08 * texture[z], 0.02).astype(np.float32)
        for by, bx, ry, rx, ang, val in blobs:
            sl[ellipse(yy, xx, by, bx, ry, rx, ang) & body] = val
        sl[myo] = myo_i
        sl[lv | rv] = blood
        image[z] = sl
        label[z][rv] = 1
        label[z][myo] = 2
        label[z][lv] = 3

    image = ndimage.gaussian_filter(image, sigma=(0, rng.uniform(0.5, 1.2), rng.uniform(0.5, 1.2)))
    image = np.clip(image, 0.0, None) ** np.exp(rng.uniform(-0.7, 0.7))
    image *= bias_field(rng, h, w, rng.uniform(0.0, 0.6))[None]
    image += rng.normal(0, rng.uniform(0.02, 0.12), image.shape).astype(np.float32)
    return minmax(np.abs(image)), label, spacing


@register_dataset("synthetic-cardiac")
class SyntheticCardiac(PhantomDataset):
    classes = ("background", "RV", "Myo", "LV")
    description = "procedural ACDC-like short-axis phantom (40 train / 8 val / 20 test volumes)"
    splits = SPLITS
    seed = GENERATOR_SEED
    volume = staticmethod(cardiac_volume)
