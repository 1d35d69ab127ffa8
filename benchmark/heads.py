"""Projection heads and feature queues shared by the contrastive methods."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def mlp(cin: int, hidden: int, out: int, norm: bool = True) -> nn.Sequential:
    """Linear -> (BN -> ReLU) -> Linear: SimCLR/MoCo v2/BYOL heads with ``norm``; MONA's and SCS's
    global MLP without it (two linear layers, no activation)."""
    layers: list[nn.Module] = [nn.Linear(cin, hidden)]
    if norm:
        layers += [nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
    layers.append(nn.Linear(hidden, out))
    return nn.Sequential(*layers)


class GlobalHead(nn.Module):
    """Global average pooling of a feature map (the UNet bottleneck), then an MLP."""

    def __init__(self, cin: int, hidden: int, out: int, norm: bool = True) -> None:
        super().__init__()
        self.mlp = mlp(cin, hidden, out, norm)

    def forward(self, feature_map: Tensor) -> Tensor:
        return self.mlp(feature_map.float().mean(dim=(2, 3)))


class FeatureQueue(nn.Module):
    """A FIFO memory bank of L2-normalised keys kept as buffers (so it is checkpointed and moves with
    the module); the write pointer stays on the device, so pushing needs no host sync."""

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("bank", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def push(self, keys: Tensor) -> None:
        n, size = keys.shape[0], self.bank.shape[0]
        idx = (self.ptr + torch.arange(n, device=keys.device)) % size
        self.bank[idx] = F.normalize(keys.detach().float(), dim=1).to(self.bank.dtype)
        self.ptr.copy_((self.ptr + n) % size)
