"""Interpolation of sample pairs (ICT, Verma 2019), shared by every mixing method."""
from __future__ import annotations

import torch
from torch import Tensor


def beta_lambdas(n: int, alpha: float, like: Tensor) -> Tensor:
    """n mixing coefficients ~ Beta(alpha, alpha), shaped (n, 1, 1, 1) to broadcast over images."""
    conc = torch.full((), float(alpha), device=like.device)  # a fill, not a host-to-device copy
    dist = torch.distributions.Beta(conc, conc, validate_args=False)  # validation would sync the device
    return dist.sample((n,)).to(like.dtype).view(n, 1, 1, 1)


def mix_halves(x: Tensor, lam: Tensor) -> Tensor:
    """(1 - lam) * first half + lam * second half (ICT's ``u_mix``); works for images and probabilities."""
    half = x.shape[0] // 2
    return (1 - lam) * x[:half] + lam * x[half:2 * half]
