"""Largest connected components on the device (``sslbench.nn.components``) against scipy's labelling
with 8-connectivity and BCP's ``np.argmax(np.bincount(...))`` choice, on random and adversarial maps."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from sslbench.nn.components import keep_largest_per_class, largest_component


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
