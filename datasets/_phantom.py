"""Drawing helpers for the procedural phantoms: shapes on a grid, smooth noise, bias fields."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np
from scipy import ndimage

from sslbench.data import CacheWriter, DatasetSpec

Volume = tuple[np.ndarray, np.ndarray, tuple[float, float, float]]


def grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    return np.mgrid[0:h, 0:w].astype(np.float32)


def ellipse(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float,
            angle: float = 0.0) -> np.ndarray:
    """Boolean mask of a rotated ellipse (radii in pixels)."""
    c, s = np.cos(angle), np.sin(angle)
    dy, dx = yy - cy, xx - cx
    u = (c * dx + s * dy) / max(rx, 1e-3)
    v = (-s * dx + c * dy) / max(ry, 1e-3)
    return u * u + v * v <= 1.0


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std smooth random field."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return (field - field.mean()) / (field.std() + 1e-8)


def bias_field(rng: np.random.Generator, h: int, w: int, strength: float) -> np.ndarray:
    """Multiplicative low-order polynomial field, as MR coil inhomogeneity."""
    yy, xx = np.mgrid[-1:1:complex(0, h), -1:1:complex(0, w)]
    coef = rng.uniform(-1, 1, 6)
    poly = coef[0] * xx + coef[1] * yy + coef[2] * xx * yy + coef[3] * xx**2 + coef[4] * yy**2 + coef[5]
    poly = poly / (np.abs(poly).max() + 1e-8)
    return np.exp(strength * poly).astype(np.float32)


def minmax(volume: np.ndarray) -> np.ndarray:
    lo, hi = float(volume.min()), float(volume.max())
    return ((volume - lo) / (hi - lo + 1e-8)).astype(np.float32)


def finish_ct_like(image: np.ndarray, rng: np.random.Generator, blur: float = 0.8,
                   noise: tuple[float, float] = (0.02, 0.06)) -> np.ndarray:
    """In-plane blur (partial volume), Gaussian noise, min-max to [0, 1]."""
    image = ndimage.gaussian_filter(image, sigma=(0, blur, blur))
    image = image + rng.normal(0, rng.uniform(*noise), image.shape).astype(np.float32)
    return minmax(image)


class PhantomDataset(DatasetSpec):
    """An embedded dataset generated case by case from ``volume(rng)`` (deterministic per case)."""

    embedded = True
    splits: ClassVar[dict[str, int]] = {}
    seed: ClassVar[int] = 0
    volume: ClassVar[Callable[[np.random.Generator], Volume]]

    def build(self, raw: Path | None, writer: CacheWriter) -> None:
        writer.source = {"generator": self.name, "seed": self.seed, "splits": self.splits}
        index = 0
        for split, count in self.splits.items():
            for _ in range(count):
                image, label, spacing = type(self).volume(np.random.default_rng([self.seed, index]))
                writer.add(f"case{index:03d}", image, label, split, spacing)
                index += 1
