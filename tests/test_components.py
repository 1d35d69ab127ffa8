"""Largest connected components on the device (``sslbench.nn.components``) against scipy's labelling
with 8-connectivity and BCP's ``np.argmax(np.bincount(...))`` choice, on random and adversarial maps."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from sslbench.nn.components import GPU_CHECK_EVERY, component_labels, keep_largest_per_class, largest_component


def reference(labels: np.ndarray, num_classes: int) -> np.ndarray:
    out = np.zeros_like(labels)
    for i in range(labels.shape[0]):
        for c in range(1, num_classes):
            lab, n = ndimage.label(labels[i] == c, structure=np.ones((3, 3)))
            if n:
                out[i][lab == np.argmax(np.bincount(lab.flat)[1:]) + 1] = c
    return out


@pytest.mark.parametrize("seed", range(20))
def test_random_label_maps_equal_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = ndimage.gaussian_filter(rng.random((3, 37, 41)), (0, 1.5 + seed % 3, 2))
    labels = np.digitize(x, np.quantile(x, [0.35, 0.6, 0.8]))
    got = keep_largest_per_class(torch.from_numpy(labels), 4).numpy()
    assert np.array_equal(got, reference(labels, 4))


def test_a_long_snake_is_one_component_on_the_cpu() -> None:
    s = np.zeros((1, 96, 96), np.int64)
    for r in range(0, 96, 4):                      # 24 folds: hundreds of propagation rounds
        s[0, r, 2:94] = 1
        s[0, r:r + 4, 93 if (r // 4) % 2 == 0 else 2] = 1
    s[0, 90:93, 40:50] = 0
    got = keep_largest_per_class(torch.from_numpy(s), 2).numpy()
    assert np.array_equal(got, reference(s, 2))


def test_ties_diagonals_and_empty_maps() -> None:
    m = torch.zeros(3, 6, 6, dtype=torch.bool)
    m[0, 0, 4:6] = True                            # two components of 2 pixels: the first in raster order wins
    m[0, 4, 0:2] = True
    m[1, 1, 1] = m[1, 2, 2] = m[1, 3, 3] = True    # diagonal neighbours: one component (8-connectivity)
    m[1, 5, 5] = True
    got = largest_component(m)
    assert got[0].nonzero().tolist() == [[0, 4], [0, 5]]
    assert got[1].sum() == 3 and not got[1, 5, 5]
    assert not got[2].any()


def smallest_index_labels(mask: np.ndarray) -> np.ndarray:
    """scipy's 8-connected components, each labelled with the smallest flat index in it (background H*W)."""
    h, w = mask.shape
    lab, n = ndimage.label(mask, structure=np.ones((3, 3)))
    first = ndimage.minimum(np.arange(h * w).reshape(h, w), lab, index=np.arange(1, n + 1))
    out = np.full(h * w + 0, h * w, np.int64)
    fg = lab.ravel() > 0
    out[fg] = np.asarray(first, np.int64)[lab.ravel()[fg] - 1]
    return out.reshape(h, w)


def hard_shapes(size: int = 256) -> np.ndarray:
    """Shapes that need many rounds of plain label propagation: myocardium-like C shapes open at the
    top (mid-radius 15-25 px), a ring with a gap, U shapes, a square spiral and a 2-px zig-zag snake."""
    yy, xx = np.mgrid[:size, :size]
    maps = []
    for radius in (15, 20, 25):
        r = np.hypot(yy - 128, xx - 128)
        angle = np.degrees(np.arctan2(xx - 128, -(yy - 128)))         # 0 at the top
        maps.append((abs(r - radius) <= 3) & (abs(angle) > 25))
    r = np.hypot(yy - 100, xx - 140)
    maps.append((abs(r - 60) <= 2) & ~((abs(yy - 40) < 4) & (xx > 140)))  # a ring cut once
    for depth in (100, 200):
        u = np.zeros((size, size), bool)
        u[20:20 + depth, 40:44] = u[20:20 + depth, 200:204] = u[16 + depth:20 + depth, 40:204] = True
        maps.append(u)
    spiral = np.zeros((size, size), bool)
    lo, hi = 4, size - 5
    while hi - lo > 4:                                              # a square spiral of 2-px walls
        spiral[lo:lo + 2, lo:hi] = spiral[lo:hi, hi - 2:hi] = spiral[hi - 2:hi, lo:hi] = True
        spiral[lo + 4:hi, lo:lo + 2] = True
        lo, hi = lo + 4, hi - 4
        spiral[lo - 2:lo, lo - 2:lo] = True
    maps.append(spiral)
    snake = np.zeros((size, size), bool)
    for row in range(0, size - 4, 4):                              # 63 folds
        snake[row, 2:size - 2] = True
        snake[row:row + 4, size - 3 if (row // 4) % 2 == 0 else 2] = True
    maps.append(snake)
    return np.stack(maps)


@pytest.mark.parametrize("check_every", [1, GPU_CHECK_EVERY, 5])
def test_hard_shapes_at_256_px_equal_scipy_on_every_code_path(check_every: int) -> None:
    """The GPU's path (a convergence check every few rounds) forced on the CPU gives scipy's
    components exactly, where a fixed 64 rounds cut C, ring and U shapes into pieces."""
    masks = hard_shapes()
    got = component_labels(torch.from_numpy(masks), check_every).numpy()
    for i, m in enumerate(masks):
        assert np.array_equal(got[i], smallest_index_labels(m)), i
    kept = largest_component(torch.from_numpy(masks), check_every).numpy()
    for i, m in enumerate(masks):
        lab, n = ndimage.label(m, structure=np.ones((3, 3)))
        assert np.array_equal(kept[i], lab == np.argmax(np.bincount(lab.flat)[1:]) + 1), i
