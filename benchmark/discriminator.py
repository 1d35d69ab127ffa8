"""The fully convolutional discriminator of DAN (SSL4MIS ``networks/discriminator.py: FCDiscriminator``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FCDiscriminator(nn.Module):
    """D(segmentation probabilities, image) -> 2 logits, in the reference's layer order:

    conv4x4/2 on the map plus conv4x4/2 on the image, summed with no activation; conv 64->128,
    LeakyReLU(0.2), Dropout2d(0.5); conv 128->256, LeakyReLU, Dropout2d; conv 256->512, LeakyReLU;
    average pooling to 2x2; Linear(2048, 2).

    Pooling: the reference's ``AvgPool2d(7)`` turns the 16x16 map of a 256 px input into 2x2 by
    averaging the two 7x7 blocks of the top-left 14x14 window (the last two rows and columns are
    ignored). That exact pooling runs wherever it yields 2x2 (maps of 14 to 20 px, inputs of 224 to
    335 px); at other sizes, where the reference would fail, the whole map is averaged into 2x2 cells.
    """

    def __init__(self, num_classes: int, in_channels: int = 1, ndf: int = 64) -> None:
        super().__init__()
        self.conv_map = nn.Conv2d(num_classes, ndf, 4, stride=2, padding=1)
        self.conv_image = nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1)
        self.body = nn.Sequential(
            nn.Conv2d(ndf, ndf * 2, 4, stride=2, padding=1), nn.LeakyReLU(0.2), nn.Dropout2d(0.5),
            nn.Conv2d(ndf * 2, ndf * 4, 4, stride=2, padding=1), nn.LeakyReLU(0.2), nn.Dropout2d(0.5),
            nn.Conv2d(ndf * 4, ndf * 8, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
        )
        self.classifier = nn.Linear(ndf * 8 * 4, 2)

    @staticmethod
    def pool(x: Tensor) -> Tensor:
        """2x2 cells: ``AvgPool2d(7)`` where it gives 2x2 (the reference at 256 px), else adaptive."""
        if all(14 <= s <= 20 for s in x.shape[-2:]):
            return F.avg_pool2d(x, 7)
        return F.adaptive_avg_pool2d(x, 2)

    def forward(self, probs: Tensor, image: Tensor) -> Tensor:
        x = self.body(self.conv_map(probs) + self.conv_image(image))
        return self.classifier(torch.flatten(self.pool(x), 1))
