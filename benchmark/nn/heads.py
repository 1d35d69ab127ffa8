"""Projection heads shared by the contrastive frameworks, GCL, SCS and MONA (MLP, global pooling head)."""
from __future__ import annotations

from torch import Tensor, nn


def mlp(cin: int, hidden: int, out: int, norm: bool = True, relu: bool | None = None, bias: bool = True) -> nn.Sequential:
    """Linear -> (BN) -> (ReLU) -> Linear: SimCLR/MoCo v2/BYOL heads with ``norm`` (BN + ReLU); MONA's
    and SCS's global MLP without it (two linear layers, no activation); GCL's with ReLU only."""
    layers: list[nn.Module] = [nn.Linear(cin, hidden, bias=bias)]
    if norm:
        layers.append(nn.BatchNorm1d(hidden))
    if norm if relu is None else relu:
        layers.append(nn.ReLU(inplace=True))
    layers.append(nn.Linear(hidden, out, bias=bias))
    return nn.Sequential(*layers)


class GlobalHead(nn.Module):
    """Global average pooling of a feature map (the UNet bottleneck), then an MLP."""

    def __init__(self, cin: int, hidden: int, out: int, norm: bool = True, relu: bool | None = None,
                 bias: bool = True) -> None:
        super().__init__()
        self.mlp = mlp(cin, hidden, out, norm, relu, bias)

    def forward(self, feature_map: Tensor) -> Tensor:
        return self.mlp(feature_map.float().mean(dim=(2, 3)))
