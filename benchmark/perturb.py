"""Feature perturbations of CCT (Ouali 2020) as SSL4MIS implements them, shared by CCT and URPC."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def feature_noise(x: Tensor, magnitude: float = 0.3) -> Tensor:
    """``x + x * u`` with u ~ U(-m, m) of shape (C, H, W), shared across the batch."""
    u = (torch.rand(x.shape[1:], device=x.device, dtype=x.dtype) * 2 - 1) * magnitude
    return x + x * u.unsqueeze(0)


def feature_dropout(x: Tensor, low: float = 0.7, high: float = 0.9) -> Tensor:
    """Zero the most active positions: those whose channel-mean activation reaches gamma times its
    per-sample maximum, gamma ~ U(low, high) drawn once per call (SSL4MIS ``FeatureDropout``:
    ``x * (attention < threshold)``). Usually a few % of the positions are dropped."""
    attention = x.mean(dim=1, keepdim=True)
    peak = attention.flatten(1).amax(dim=1).view(-1, 1, 1, 1)
    gamma = low + (high - low) * torch.rand((), device=x.device)
    return x * (attention < peak * gamma).to(x.dtype)


def dropout(x: Tensor, p: float) -> Tensor:
    """Dropout that stays active in eval mode too (SSL4MIS's ``F.dropout(x, p)`` default)."""
    return F.dropout(x, p=p, training=True)
