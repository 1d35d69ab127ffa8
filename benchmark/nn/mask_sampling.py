"""Fixed-size draws among the true entries of a mask, without a host sync (MONA's queries and bank
writes, PLC's anchors)."""
from __future__ import annotations

import torch
from torch import Tensor


def sample_where(mask: Tensor, n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """``n`` indices drawn uniformly with replacement among the true entries of a flat ``mask``, and
    whether each drawn entry is valid (all invalid when the mask is empty); no host sync."""
    cdf = torch.cumsum(mask.float() + 1e-12, 0)
    u = torch.rand(n, generator=g, device=mask.device) * cdf[-1]
    idx = torch.searchsorted(cdf, u).clamp(max=mask.numel() - 1)
    return idx, mask[idx]


def pick_where(mask: Tensor, k: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """Up to ``k`` distinct indices along the last axis of ``mask``, true entries first in random
    order, and whether each picked entry is true: a fixed-size draw without replacement (a variable
    count would need a host sync)."""
    score = torch.rand(mask.shape, generator=g, device=mask.device) + mask.float()
    idx = score.topk(min(k, mask.shape[-1]), dim=-1).indices
    return idx, mask.gather(-1, idx)
