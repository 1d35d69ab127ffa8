"""Drawing helpers for the procedural phantoms: shapes on a grid, smooth noise, bias fields."""
from __future__ import annotations

import numpy as np
from scipy import ndimage


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
