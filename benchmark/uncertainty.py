"""Monte-Carlo dropout uncertainty (UAMT, Yu 2019): mean softmax over stochastic teacher passes and its
entropy. The teacher runs in train mode, so dropout acts as MC dropout, as in SSL4MIS."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


@torch.no_grad()
def mc_entropy(net: nn.Module, x: Tensor, passes: int, perturb: Callable[[Tensor], Tensor],
               eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Mean probabilities (B, C, H, W) and entropy (B, 1, H, W) over ``passes`` noisy passes.

    Runs the passes two at a time on a doubled batch, as SSL4MIS does (T = 8 -> 4 forward calls).
    """
    b = x.shape[0]
    doubled = x.repeat(2, 1, 1, 1)
    total = None
    for _ in range(passes // 2):
        probs = torch.softmax(net(perturb(doubled)).float(), dim=1)
        s = probs.view(2, b, *probs.shape[1:]).sum(0)
        total = s if total is None else total + s
    mean = total / (2 * (passes // 2))  # type: ignore[operator]
    entropy = -(mean * torch.log(mean + eps)).sum(dim=1, keepdim=True)
    return mean, entropy
