"""UNet variants with extra heads, built from the shared UNet's encoder and decoder blocks.

* ``MultiDecoderUNet`` (CCT, SSL4MIS ``UNet_CCT``): one encoder, a main decoder and auxiliary decoders
  that each read all encoder levels through a perturbation.
* ``PyramidUNet`` (URPC, SSL4MIS ``UNet_URPC``): the decoder predicts at four scales; the three coarse
  heads read perturbed features in train mode; every output is upsampled (nearest) to the input size.

Both return the main logits from ``forward`` so inference and the conformance kit treat them as a UNet.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sslbench.nn.augment import dropout, feature_dropout, feature_noise
from sslbench.nn.unet import SSL4MIS_DROPOUT, Decoder, Encoder

# a perturbation takes the features and, as keyword ``g``, the generator to draw from (None: global)
Perturbation = Callable[..., Tensor]


def _dropout(p: float) -> Perturbation:
    def perturb(x: Tensor, g: torch.Generator | None = None) -> Tensor:
        return dropout(x, p, g)
    return perturb


CCT_PERTURBATIONS: tuple[Perturbation, ...] = (feature_noise, _dropout(0.3), feature_dropout)


class MultiDecoderUNet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, base: int = 16,
                 perturbations: Sequence[Perturbation] = CCT_PERTURBATIONS) -> None:
        super().__init__()
        widths = tuple(base * 2**i for i in range(len(SSL4MIS_DROPOUT)))
        self.encoder = Encoder(in_channels, widths, SSL4MIS_DROPOUT)
        self.decoder = Decoder(widths, num_classes)
        self.aux_decoders = nn.ModuleList(Decoder(widths, num_classes) for _ in perturbations)
        self.perturbations = tuple(perturbations)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))[0]

    def forward_all(self, x: Tensor, g: torch.Generator | None = None) -> tuple[Tensor, list[Tensor]]:
        """Main logits and one logits map per auxiliary decoder (perturbations drawn from ``g``)."""
        feats = self.encoder(x)
        main = self.decoder(feats)[0]
        aux = [dec([perturb(f, g=g) for f in feats])[0] for dec, perturb in zip(self.aux_decoders, self.perturbations)]
        return main, aux


class PyramidUNet(nn.Module):
    """URPC's pyramid: heads after decoder stages 1/8 (dropout 0.5), 1/4 (feature dropout) and 1/2
    (feature noise) plus the main head; perturbations only in train mode (SSL4MIS ``Decoder_URPC``).

    The reference decoder also builds a 3x3 head on the bottleneck (``out_conv_dp4``) that its forward
    never calls. ``bottleneck_head`` keeps it, so parameter counts match the reference (1,831,060 for
    1 input channel and 4 classes); it never receives a gradient, so it changes no result.
    """

    def __init__(self, in_channels: int, num_classes: int, base: int = 16) -> None:
        super().__init__()
        widths = tuple(base * 2**i for i in range(len(SSL4MIS_DROPOUT)))
        self.encoder = Encoder(in_channels, widths, SSL4MIS_DROPOUT)
        self.decoder = Decoder(widths, num_classes)
        coarse = widths[::-1][1:4]  # 8x, 4x, 2x channels
        self.aux_heads = nn.ModuleList(nn.Conv2d(c, num_classes, kernel_size=3, padding=1) for c in coarse)
        self.bottleneck_head = nn.Conv2d(widths[-1], num_classes, kernel_size=3, padding=1)  # unused, as the reference
        self.aux_perturbations: tuple[Perturbation, ...] = (_dropout(0.5), feature_dropout, feature_noise)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))[0]

    def forward_pyramid(self, x: Tensor, g: torch.Generator | None = None) -> list[Tensor]:
        """[main, 1/2-scale, 1/4-scale, 1/8-scale] logits, all at the input size (perturbations drawn from ``g``)."""
        main, stages = self.decoder(self.encoder(x))
        outs = [main]
        for head, perturb, feat in zip(reversed(self.aux_heads), reversed(self.aux_perturbations), reversed(stages[:3])):
            logits = head(perturb(feat, g=g) if self.training else feat)
            outs.append(F.interpolate(logits, size=x.shape[-2:], mode="nearest"))
        return outs
