"""Batched augmentation on the device (one ``grid_sample`` for the whole batch).

``ssl4mis_weak`` reproduces SSL4MIS's ``RandomGenerator`` (2020-2025 version) per slice: with
probability 0.5 a rot90 by k in {0..3} followed by a flip of a random axis; otherwise, with
probability 0.5, a rotation by an integer angle in [-20, 19] degrees (nearest neighbour, zero fill,
no reshape); otherwise nothing. Images and labels are both resampled with nearest neighbour, as
SSL4MIS's ``order=0``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .transforms import SpatialTransform


def ssl4mis_weak_matrices(n: int, generator: torch.Generator, device: torch.device) -> Tensor:
    """(n, 2, 3) affine matrices in normalised coordinates (``affine_grid`` convention)."""
    u = torch.rand(n, 2, generator=generator, device=device)
    k = torch.randint(0, 4, (n,), generator=generator, device=device)
    flip_axis = torch.randint(0, 2, (n,), generator=generator, device=device)
    degrees = torch.randint(-20, 20, (n,), generator=generator, device=device).float()
    rot_flip = u[:, 0] < 0.5
    rotate = (~rot_flip) & (u[:, 1] < 0.5)

    theta = torch.where(rot_flip, k.float() * (math.pi / 2), torch.zeros_like(degrees))
    theta = torch.where(rotate, degrees * (math.pi / 180), theta)
    cos, sin = torch.cos(theta), torch.sin(theta)
    # snap rot90 multiples to exact integers so grid points land on pixel centres
    cos = torch.where(rot_flip, cos.round(), cos)
    sin = torch.where(rot_flip, sin.round(), sin)
    mat = torch.zeros(n, 2, 3, device=device)
    mat[:, 0, 0], mat[:, 0, 1], mat[:, 1, 0], mat[:, 1, 1] = cos, -sin, sin, cos
    flip = torch.ones(n, 2, device=device)
    flip_sign = torch.where(rot_flip, -1.0, 1.0)
    flip[torch.arange(n, device=device), flip_axis] = flip_sign
    mat[:, :, :2] = mat[:, :, :2] * flip[:, None, :]
    return mat


def affine(mat: Tensor, like: Tensor) -> SpatialTransform:
    """The warp of per-sample affine matrices (``affine_grid`` convention) for batches shaped like ``like``."""
    return SpatialTransform(F.affine_grid(mat.to(like.dtype), list(like.shape), align_corners=False))


def warp(x: Tensor, mat: Tensor, mode: str = "nearest") -> Tensor:
    """Apply per-sample affine matrices to (B, C, H, W); zero fill outside."""
    return affine(mat, x).apply(x, mode)


def ssl4mis_weak(x: Tensor, y: Tensor | None, generator: torch.Generator) -> tuple[Tensor, Tensor | None]:
    """Augment images (B, C, H, W) and, when given, their labels (B, H, W) with the same transform
    (nearest neighbour for both, as SSL4MIS's ``order=0``)."""
    t = affine(ssl4mis_weak_matrices(x.shape[0], generator, x.device), x)
    return t.apply(x, "nearest"), (t.apply(y, "label") if y is not None else None)


def gaussian_noise(x: Tensor, std: float = 0.1, clip: float = 0.2) -> Tensor:
    """``x + clamp(N(0, std^2), -clip, clip)``: the teacher-input noise of SSL4MIS's MT, UAMT."""
    return x + torch.clamp(torch.randn_like(x) * std, -clip, clip)
