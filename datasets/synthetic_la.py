"""``synthetic-la``: a small procedural 3-D phantom of the Left Atrium task, for tests and the demo of
the 3-D track (``bench run --dataset synthetic-la``).

One blob-shaped "atrium" (a union of ellipsoids with pulmonary-vein stubs) of bright enhancement in a
textured, bias-modulated background with a darker ventricle-like distractor beside it; z-scored per
volume as UA-MT's preprocessing does. Volumes are a few tens of voxels a side (D, H, W), isotropic
1 mm. Classes: background, left atrium. Deterministic per case.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from sslbench.data import register_dataset
from sslbench.datasets._phantom import PhantomDataset, smooth_noise

SPLITS = {"train": 16, "val": 4, "test": 4}
GENERATOR_SEED = 20261204


def _ellipsoid(shape: tuple[int, int, int], centre: np.ndarray, radii: np.ndarray) -> np.ndarray:
    zz, yy, xx = np.ogrid[:shape[0], :shape[1], :shape[2]]
    return (((zz - centre[0]) / radii[0]) ** 2 + ((yy - centre[1]) / radii[1]) ** 2
            + ((xx - centre[2]) / radii[2]) ** 2) <= 1.0


def atrium_volume(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    shape = (int(rng.integers(28, 37)), int(rng.integers(44, 57)), int(rng.integers(44, 57)))
    dims = np.array(shape, np.float64)
    centre = dims * rng.uniform(0.4, 0.6, 3)
    atrium = _ellipsoid(shape, centre, dims * rng.uniform(0.16, 0.24, 3))
    for _ in range(int(rng.integers(2, 5))):  # pulmonary-vein stubs leaving the body
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction) + 1e-8
        for step in np.linspace(0.15, 0.32, 4):
            atrium |= _ellipsoid(shape, centre + direction * dims * step, np.full(3, rng.uniform(2.0, 3.5)))
    ventricle = _ellipsoid(shape, centre + np.array([0.0, 0.28, -0.2]) * dims, dims * rng.uniform(0.14, 0.2, 3))
    ventricle &= ~atrium
    image = 0.3 + 0.08 * smooth_noise(rng, shape, 2.0)
    image[ventricle] = rng.uniform(0.45, 0.55)
    image[atrium] = rng.uniform(0.75, 0.9) + 0.04 * smooth_noise(rng, shape, 1.0)[atrium]
    image = ndimage.gaussian_filter(image.astype(np.float32), 0.7)
    image = image + rng.normal(0, rng.uniform(0.03, 0.07), shape).astype(np.float32)
    image = (image - image.mean()) / (image.std() + 1e-8)
    return image.astype(np.float32), atrium.astype(np.uint8), (1.0, 1.0, 1.0)


@register_dataset("synthetic-la")
class SyntheticLA(PhantomDataset):
    classes = ("background", "left atrium")
    description = "procedural 3-D Left Atrium phantom for the 3-D track (16 train / 4 val / 4 test)"
    splits = SPLITS
    seed = GENERATOR_SEED
    volume = staticmethod(atrium_volume)
