"""Batched on-device augmentation reproduces SSL4MIS's RandomGenerator transforms."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from sslbench.io.resize import resize_slices
from sslbench.nn.augment import affine, rotation_matrices, ssl4mis_weak, ssl4mis_weak_matrices


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


def _markers(h: int, w: int) -> np.ndarray:
    """Five 13 x 13 square markers (classes 1-5): four near the corners of an h x w slice, one central."""
    lab = np.zeros((h, w), np.uint8)
    for c, (y, x) in enumerate([(40, 40), (40, w - 40), (h - 40, 40), (h - 40, w - 40), (h // 2, w // 2)], 1):
        lab[y - 6:y + 7, x - 6:x + 7] = c
    return lab


def test_small_rotation_of_a_zoomed_slice_equals_rotate_then_zoom() -> None:
    """SSL4MIS rotates a slice at its native size (256 x 216 here), then zooms it; our slices are zoomed
    to the square first, so the rotation is composed in the native aspect. Every marker lands where
    scipy's rotate + zoom puts it, to interpolation (< 0.75 px); a rotation of the square grid shears
    the slice and misplaces the corner markers by 2.5-3.7 px at 15-20 degrees."""
    h, w, s = 256, 216, 128
    lab = _markers(h, w)
    small = torch.from_numpy(resize_slices(lab[None], s, "nearest"))[:, None].float()
    for degrees in (-20, -19, -7, 3, 15, 19):
        ref = ndimage.zoom(ndimage.rotate(lab, degrees, order=0, reshape=False), (s / h, s / w), order=0)
        lin = rotation_matrices(torch.tensor([float(degrees)]), torch.tensor([h / w]))
        out = affine(torch.cat([lin, torch.zeros(1, 2, 1)], 2), small).apply(small, "nearest")[0, 0].numpy()
        for c in range(1, 6):
            err = np.hypot(*np.subtract(ndimage.center_of_mass(ref == c), ndimage.center_of_mass(out == c)))
            assert err < 0.75, (degrees, c, err)


def test_weak_matrices_use_each_slices_aspect_in_the_rotation_branch_only() -> None:
    n = 4000
    aspect = torch.full((n,), 256 / 216)
    square = ssl4mis_weak_matrices(n, torch.Generator().manual_seed(3), torch.device("cpu"))
    native = ssl4mis_weak_matrices(n, torch.Generator().manual_seed(3), torch.device("cpu"), aspect)
    rotated = (square[:, 0, 1] != 0) & (square[:, 0, 1].abs() != 1)             # the small-rotation branch
    assert rotated.float().mean() > 0.2
    assert torch.equal(native[~rotated], square[~rotated])                         # rot90 / flip / identity
    torch.testing.assert_close(native[rotated, 0, 1], square[rotated, 0, 1] * aspect[rotated])
    torch.testing.assert_close(native[rotated, 1, 0], square[rotated, 1, 0] / aspect[rotated])


def test_the_trainer_gives_each_slice_its_native_aspect(tmp_path: Path) -> None:
    """``build_train_data`` hands every training slice its case's native height / width."""
    from sslbench.data import CacheWriter, DatasetSpec
    from sslbench.cache import PreparedDataset
    from sslbench.run.job import build_train_data

    class Two(DatasetSpec):
        name = "two"
        classes = ("bg", "fg")

    writer = CacheWriter(Two(), tmp_path / "two")
    rng = np.random.default_rng(0)
    for case, (h, w), split in (("a", (24, 18), "train"), ("b", (16, 16), "train"), ("c", (20, 30), "train"),
                                ("v", (12, 12), "val"), ("t", (12, 12), "test")):
        writer.add(case, rng.random((3, h, w)).astype(np.float32), (rng.random((3, h, w)) > 0.5).astype(np.uint8),
                   split, None)
    writer.finish()
    data = build_train_data(PreparedDataset(tmp_path / "two"), ["a"], ["b", "c"], 16, torch.device("cpu"))
    assert data.aspect is not None
    torch.testing.assert_close(data.aspect, torch.tensor([24 / 18] * 3 + [1.0] * 3 + [20 / 30] * 3))


def test_next_batch_passes_the_sampled_slices_aspects(monkeypatch) -> None:
    import dataclasses

    import sslbench.train.batches as trainer_module
    from sslbench.train.conformance import build

    trainer = build("mt")
    n = trainer.data.images.shape[0]
    trainer.batches.data = dataclasses.replace(trainer.data, aspect=torch.arange(1, n + 1, dtype=torch.float32))
    seen = []
    real = trainer_module.ssl4mis_weak

    def spy(x, y, g, aspect=None):
        seen.append(aspect)
        return real(x, y, g, aspect)

    monkeypatch.setattr(trainer_module, "ssl4mis_weak", spy)
    trainer.batches.lab_sampler.next, trainer.batches.unl_sampler.next = (lambda k: torch.tensor([0, 2])), (lambda k: torch.tensor([7, 9]))
    trainer.next_batch()
    assert [a.tolist() for a in seen] == [[1.0, 3.0], [8.0, 10.0]]
