"""Batched on-device augmentation reproduces SSL4MIS's RandomGenerator transforms."""
from __future__ import annotations

import math

import torch

from sslbench.nn.augment import affine, ssl4mis_weak, ssl4mis_weak_matrices


def test_rot90_and_flip_are_exact_permutations() -> None:
    x = torch.arange(2 * 16 * 16, dtype=torch.float32).reshape(2, 1, 16, 16)
    for k in range(4):
        theta = k * math.pi / 2
        c, s = round(math.cos(theta)), round(math.sin(theta))
        mat = torch.tensor([[c, -s, 0.0], [s, c, 0.0]]).expand(2, 2, 3)
        out = affine(mat, x).apply(x, "nearest")
        assert any(torch.equal(out, torch.rot90(x, kk, dims=(2, 3))) for kk in range(4))
    flip = torch.tensor([[-1.0, 0, 0], [0, 1.0, 0]]).expand(2, 2, 3)
    assert torch.equal(affine(flip, x).apply(x, "nearest"), torch.flip(x, dims=(3,)))


def test_labels_follow_images_and_keep_their_values() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.zeros(64, 32, 32, dtype=torch.long)
    y[:, 8:20, 10:26] = 1
    y[:, 12:16, 14:18] = 3
    x = y[:, None].float() / 3
    xa, ya = ssl4mis_weak(x, y, g)
    assert set(ya.unique().tolist()) <= {0, 1, 3}
    assert torch.equal((xa[:, 0] * 3).round().long(), ya)       # same transform, nearest neighbour
    changed = (ya != y).flatten(1).any(1).float().mean()
    assert 0.4 < changed < 0.95                                  # about 3/4 of slices are transformed


def test_matrix_mix_matches_ssl4mis_probabilities() -> None:
    g = torch.Generator().manual_seed(1)
    mat = ssl4mis_weak_matrices(4000, g, torch.device("cpu"))
    rotflip = (mat[:, :, :2].abs().round() == mat[:, :, :2].abs()).all(dim=(1, 2))
    identity = (mat[:, :, :2] == torch.eye(2)).all(dim=(1, 2))
    small_rotation = ~rotflip
    assert abs(small_rotation.float().mean() - 0.25) < 0.04   # rotate branch: 0.5 * 0.5 (minus angle 0)
    assert abs(identity.float().mean() - 0.25) < 0.05          # the "no augmentation" branch (+ angle 0)
