"""MONA's own heads: GLCon's local window head and predictor, and stage 2's FPN feature extractor
with the pixel-wise representation head (applied only where it is needed, see ``pointwise``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sslbench.methods.mona._fused import FusedMap


class WindowHead(nn.Module):
    """GLCon's local branch: per-window embeddings of a (B, C, H, W) map over a 7 x 7 grid of windows
    (side H/4, stride H/8; 64 px windows with stride 32 at 256 px, MONA's 49 windows), each pooled to
    8 x 8 and projected by 1x1 convs C -> 2C -> C (the released ``ProjectionHead``'s ``dim_in * 2``):
    (B, 49, C * 64).

    Pooling to a 32 x 32 grid once and unfolding 8 x 8 windows with stride 4 equals pooling every
    window to 8 x 8 (the convs are 1x1, so they commute with the unfolding) and costs one pass.
    The student passes its ``predictor`` (two more 1x1 convs C -> C, see ``window_predictor``).
    """

    grid, window, stride = 32, 8, 4

    def __init__(self, channels: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = 2 * channels if hidden is None else hidden
        self.proj = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.Conv2d(hidden, channels, 1))

    @classmethod
    def positions(cls) -> int:
        return ((cls.grid - cls.window) // cls.stride + 1) ** 2

    def forward(self, x: Tensor, predictor: nn.Module | None = None) -> Tensor:
        h = self.proj(F.adaptive_avg_pool2d(x.float(), self.grid))
        if predictor is not None:
            h = predictor(h)
        return F.unfold(h, self.window, stride=self.stride).transpose(1, 2)  # (B, P, C*64)


def window_predictor(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels, channels, 1), nn.Conv2d(channels, channels, 1))


class FeatureExtractor(nn.Module):
    """MONA's representation ("FPN") head over [bottleneck, decoder stages coarse to fine]: top-down,
    ``x = conv1x1(x) + x``, bilinear upsampling (align_corners) to the next stage, concatenation; a last
    1x1 conv gives ``sum(widths)`` channels (496 for the SSL4MIS UNet) at full resolution. Every conv
    has no bias, as the released ``FeatureExtractor``."""

    def __init__(self, widths: tuple[int, ...]) -> None:
        super().__init__()
        rev = widths[::-1]  # bottleneck first
        chans = [sum(rev[: i + 1]) for i in range(len(rev))]
        self.lateral = nn.ModuleList(nn.Conv2d(c, c, 1, bias=False) for c in chans[:-1])
        self.out = nn.Conv2d(chans[-1], chans[-1], 1, bias=False)
        self.channels = chans[-1]

    def fuse(self, feats: list[Tensor]) -> FusedMap:
        """The fused map before the last 1x1 conv, its last upsampling left undone (see ``FusedMap``).
        Everything after it is pixel-wise linear, so a caller that needs the representation only at
        some pixels or averaged over regions applies ``pointwise([self.out, ...], ...)`` there."""
        x = feats[0]
        last = len(feats) - 2
        for i, (conv, nxt) in enumerate(zip(self.lateral, feats[1:])):
            if i == last:  # the widest lateral step, left to FusedMap to apply where the map is read
                return FusedMap(nxt, x, conv.weight)
            x = conv(x) + x
            # channels-last: CPU bilinear upsampling of a wide map is ~10x faster in that layout, and
            # FusedMap reads the last map's pixels as rows (a view in that layout, not a copy)
            x = F.interpolate(x.contiguous(memory_format=torch.channels_last), size=nxt.shape[-2:],
                              mode="bilinear", align_corners=True)
            x = torch.cat([x, nxt.contiguous(memory_format=torch.channels_last)], dim=1)
        return FusedMap(x)

    def forward(self, feats: list[Tensor]) -> Tensor:
        return self.out(self.fuse(feats).full())


def pointwise(convs: list[nn.Module], v: Tensor) -> Tensor:
    """Apply a chain of 1x1 convs to feature vectors (..., C): equal to convolving the map and then
    picking or averaging pixels, at the cost of the picked vectors only."""
    for conv in convs:
        assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1)
        v = F.linear(v, conv.weight.flatten(1).to(v.dtype), None if conv.bias is None else conv.bias.to(v.dtype))
    return v


def representation_head(channels: int) -> nn.Sequential:
    """The student's extra projection on top of the FPN features (two 1x1 convs, no bias)."""
    return nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), nn.Conv2d(channels, channels, 1, bias=False))
