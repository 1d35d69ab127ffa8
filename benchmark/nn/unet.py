"""The one 2-D UNet every method shares (SSL4MIS `networks/unet.py`, widths 16-256).

Encoder: five ConvBlocks (conv3x3-BN-LeakyReLU(0.01)-Dropout-conv3x3-BN-LeakyReLU) with dropout
0.05/0.1/0.2/0.3/0.5 and max-pooling between them. Decoder: four up steps, each a 1x1 conv to the skip's
width, bilinear x2 upsampling with ``align_corners=True``, concatenation [skip, up] and a ConvBlock
without dropout: SSL4MIS's ``UpBlock`` with its own default ``bilinear=True``, the one that runs (its
networks set ``params['bilinear'] = False`` but never pass it on). ``UNet(1, 4)`` has 1,813,764
parameters, as the reference. Output: a 3x3 conv to the classes. PyTorch default init, as
SSL4MIS (its kaiming helpers are never called). ``forward(x, features=True)`` also returns the
bottleneck and every decoder stage, for projection heads and auxiliary decoders.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

SSL4MIS_DROPOUT = (0.05, 0.1, 0.2, 0.3, 0.5)


class ConvBlock(nn.Sequential):
    """SSL4MIS's conv block. Its activations run in place on the batch norm's fresh output: the values
    and gradients are the same (with a positive slope the output's sign is the input's), and autograd
    keeps one map fewer per activation (about 1 GB of a 256 px, batch 24 MONA step's peak)."""

    def __init__(self, cin: int, cout: int, dropout: float) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1),
            nn.BatchNorm2d(cout),
            nn.LeakyReLU(0.01, inplace=True),
            nn.Dropout(dropout),
            nn.Conv2d(cout, cout, 3, padding=1),
            nn.BatchNorm2d(cout),
            nn.LeakyReLU(0.01, inplace=True),
        )


class Encoder(nn.Module):
    def __init__(self, in_channels: int, widths: tuple[int, ...], dropout: tuple[float, ...]) -> None:
        super().__init__()
        blocks = [ConvBlock(in_channels, widths[0], dropout[0])]
        blocks += [ConvBlock(widths[i - 1], widths[i], dropout[i]) for i in range(1, len(widths))]
        self.blocks = nn.ModuleList(blocks)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = [self.blocks[0](x)]
        for block in self.blocks[1:]:
            feats.append(block(self.pool(feats[-1])))
        return feats


class UpBlock(nn.Module):
    """1x1 conv to the skip's width, bilinear x2 (align_corners=True), concat [skip, up], ConvBlock."""

    def __init__(self, cin: int, cskip: int, cout: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(cin, cskip, kernel_size=1)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.conv = ConvBlock(2 * cskip, cout, 0.0)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.conv(torch.cat([skip, self.up(self.reduce(x))], dim=1))


class Decoder(nn.Module):
    """Decoder over the five encoder levels; reused by auxiliary decoders (CCT, URPC)."""

    def __init__(self, widths: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        rev = widths[::-1]
        self.ups = nn.ModuleList(UpBlock(rev[i], rev[i + 1], rev[i + 1]) for i in range(len(rev) - 1))
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=3, padding=1)

    def forward(self, feats: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        x = feats[-1]
        stages = []
        for up, skip in zip(self.ups, reversed(feats[:-1])):
            x = up(x, skip)
            stages.append(x)
        return self.head(x), stages


@dataclass
class UNetOutput:
    logits: Tensor
    bottleneck: Tensor
    decoder: list[Tensor] = field(default_factory=list)  # coarse to fine: 1/8, 1/4, 1/2, 1/1


class UNet(nn.Module):
    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 4,
        base: int = 16,
        dropout: tuple[float, ...] = SSL4MIS_DROPOUT,
    ) -> None:
        super().__init__()
        self.widths = tuple(base * 2**i for i in range(len(dropout)))
        self.num_classes = num_classes
        self.encoder = Encoder(in_channels, self.widths, tuple(dropout))
        self.decoder = Decoder(self.widths, num_classes)

    def forward(self, x: Tensor, features: bool = False) -> Tensor | UNetOutput:
        feats = self.encoder(x)
        logits, stages = self.decoder(feats)
        if features:
            return UNetOutput(logits, feats[-1], stages)
        return logits


def build_unet(in_channels: int, num_classes: int, base: int = 16) -> UNet:
    """Factory used by every method, so all of them train the same network."""
    return UNet(in_channels=in_channels, num_classes=num_classes, base=base)
