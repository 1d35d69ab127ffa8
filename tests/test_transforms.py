"""Device-side augmentation shared by methods: one warp for images, labels and probabilities."""
from __future__ import annotations

import pytest
import torch

from sslbench.nn.augment import (SpatialTransform, cutmix, gaussian_blur, identity_grid, photometric,
                                 random_spatial, smooth_displacement)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def labels_and_image(n: int = 4, size: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.zeros(n, size, size, dtype=torch.long)
    y[:, 10:30, 12:36] = 1
    y[:, 16:24, 18:28] = 2
    return y, y[:, None].float() / 2


def test_identity_transform_changes_nothing() -> None:
    y, x = labels_and_image()
    t = SpatialTransform(identity_grid(4, 48, 48, torch.device("cpu")))
    assert torch.allclose(t.apply(x), x, atol=1e-5) and torch.equal(t.apply(y, "label"), y)
    assert bool(t.valid().all())


def test_images_labels_and_probabilities_move_together() -> None:
    y, x = labels_and_image()
    t = random_spatial(4, 48, 48, gen(), torch.device("cpu"), deform=0.05)
    wy = t.apply(y, "label")
    wx = t.apply(x, "image")
    assert set(wy.unique().tolist()) <= {0, 1, 2}
    agree = ((wx[:, 0] * 2).round().long() == wy).float().mean()
    assert agree > 0.95                                                      # same warp, different resampling
    probs = torch.softmax(torch.randn(4, 3, 48, 48, generator=gen(1)), dim=1)
    wp = t.apply(probs, "prob")
    valid = t.valid()[:, 0] > 0
    assert valid.any() and torch.allclose(wp.sum(1)[valid], torch.ones_like(wp.sum(1)[valid]), atol=1e-4)


def test_equivariance_of_a_pixelwise_map() -> None:
    """f(T(x)) == T(f(x)) for a pixel-wise linear f: the identity an equivariance loss relies on."""
    x = torch.rand(2, 1, 32, 32, generator=gen(2))
    t = random_spatial(2, 32, 32, gen(3), torch.device("cpu"))
    f = lambda z: torch.cat([2 * z, 1 - z], dim=1)  # noqa: E731
    assert torch.allclose(f(t.apply(x)) * t.valid(), t.apply(f(x)) * t.valid(), atol=1e-5)


def test_deformation_does_not_fold() -> None:
    disp = smooth_displacement(3, 40, 40, 0.1, gen(4), torch.device("cpu"))
    grid = identity_grid(3, 40, 40, torch.device("cpu")) + disp
    dx = grid[:, :, 1:, :] - grid[:, :, :-1, :]
    dy = grid[:, 1:, :, :] - grid[:, :-1, :, :]
    jac = dx[:, :-1, :, 0] * dy[:, :, :-1, 1] - dx[:, :-1, :, 1] * dy[:, :, :-1, 0]
    assert disp.abs().max() > 0.01 and bool((jac > 0).all())


def test_photometric_and_blur() -> None:
    x = torch.rand(64, 1, 24, 24, generator=gen(5))
    out = photometric(x, gen(6))
    assert out.shape == x.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    changed = (out != x).flatten(1).any(1).float().mean()
    assert 0.5 < changed < 0.95                                            # p = 0.5 for each of two ops
    flat = torch.ones(2, 1, 16, 16)
    assert torch.allclose(gaussian_blur(flat, torch.tensor([0.5, 1.1])), flat, atol=1e-5)
    spike = torch.zeros(1, 1, 15, 15)
    spike[0, 0, 7, 7] = 1
    blurred = gaussian_blur(spike, torch.tensor([1.0]))
    assert abs(float(blurred.sum()) - 1) < 1e-4 and float(blurred.max()) < 0.2


def test_cutmix_pastes_the_next_sample() -> None:
    x = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 1, 32, 32).clone()
    y = torch.arange(4).view(4, 1, 1).expand(4, 32, 32).clone()
    mx, (my,), box = cutmix(x, [y], gen(7))
    for i in range(4):
        inside = box[i, 0] > 0
        assert 0.35 < float(inside.float().mean()) <= 0.55
        assert bool((mx[i, 0][inside] == (i + 1) % 4).all()) and bool((mx[i, 0][~inside] == i).all())
        assert torch.equal(my[i].float(), mx[i, 0])


def test_equivariance_loss_is_zero_for_an_equivariant_network() -> None:
    from sslbench.nn.losses import masked_kl

    torch.manual_seed(0)
    equivariant = torch.nn.Conv2d(1, 3, 1)                     # pixel-wise: commutes with any warp
    x = torch.rand(2, 1, 32, 32)
    t = random_spatial(2, 32, 32, gen(8), torch.device("cpu"))
    mask = t.valid()
    loss = masked_kl(equivariant(t.apply(x)), t.apply(equivariant(x)), mask)
    assert float(loss.detach()) < 1e-6
    not_equivariant = torch.nn.Conv2d(1, 3, 5, padding=2)
    loss = masked_kl(not_equivariant(t.apply(x)), t.apply(not_equivariant(x)), mask)
    assert float(loss.detach()) > 1e-5
    student = torch.zeros(2, 3, 32, 32, requires_grad=True)
    masked_kl(student, torch.randn(2, 3, 32, 32), mask).backward()
    assert student.grad.abs().sum() > 0 and bool((student.grad[~mask.bool().expand_as(student)] == 0).all())


def test_masked_kl_by_hand_and_its_target_is_detached() -> None:
    """MONA's ``loss_eqv``: per image Σ_pix M KL(softmax(target) ‖ softmax(student)) / (Σ_pix M + 1e-7),
    then the batch mean; no gradient to the target."""
    from sslbench.nn.losses import masked_kl

    torch.manual_seed(0)
    s = torch.randn(2, 3, 2, 2, requires_grad=True)
    t = torch.randn(2, 3, 2, 2, requires_grad=True)
    m = torch.tensor([[[1.0, 0.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 1.0]]])
    p_t = torch.softmax(t.detach(), 1)
    kl = (p_t * (p_t.log() - torch.log_softmax(s.detach(), 1))).sum(1)
    expected = ((kl * m).sum((1, 2)) / (m.sum((1, 2)) + 1e-7)).mean()
    loss = masked_kl(s, t, m)
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-6)
    loss.backward()
    assert float(s.grad.abs().sum()) > 0 and (t.grad is None or float(t.grad.abs().sum()) == 0.0)
