"""The fully convolutional discriminator of DAN (SSL4MIS ``networks/discriminator.py: FCDiscriminator``)."""
from __future__ import annotations

import torch
from torch import Tensor, nn


class FCDiscriminator(nn.Module):
    """D(segmentation probabilities, image) -> 2 logits.

    conv4x4/2 on the map and on the image (summed), then 64->128->256->512 4x4/2 convs with
    LeakyReLU(0.2) and Dropout2d(0.5) after the first two, average pooling to 2x2, Linear(2048, 2).
    SSL4MIS pools with ``AvgPool2d(7)``, which gives 2x2 only for 256x256 inputs; adaptive pooling to
    2x2 keeps the head's shape at every training size.
    """

    def __init__(self, num_classes: int, in_channels: int = 1, ndf: int = 64) -> None:
        super().__init__()
        self.conv_map = nn.Conv2d(num_classes, ndf, 4, stride=2, padding=1)
        self.conv_image = nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1)
        self.body = nn.Sequential(
            nn.LeakyReLU(0.2), nn.Dropout2d(0.5),
            nn.Conv2d(ndf, ndf * 2, 4, stride=2, padding=1), nn.LeakyReLU(0.2), nn.Dropout2d(0.5),
            nn.Conv2d(ndf * 2, ndf * 4, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(ndf * 4, ndf * 8, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(2),
        )
        self.classifier = nn.Linear(ndf * 8 * 4, 2)

    def forward(self, probs: Tensor, image: Tensor) -> Tensor:
        x = self.body(self.conv_map(probs) + self.conv_image(image))
        return self.classifier(torch.flatten(x, 1))
