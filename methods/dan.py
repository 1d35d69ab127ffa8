"""DAN: deep adversarial networks (Zhang et al., MICCAI 2017) as SSL4MIS runs it
(`train_adversarial_network_2D.py`, `FCDiscriminator`)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sslbench.method import (
    Batch,
    ConsistencyConfig,
    ExtraOptimizer,
    Losses,
    MethodContext,
    SSLMethod,
    StepInfo,
    register_method,
)
from sslbench.nn import ce_dice_loss


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

@dataclass
class DANConfig(ConsistencyConfig):
    disc_lr: float = 1e-4          # the discriminator's Adam learning rate
    disc_beta1: float = 0.9        # ... and its betas
    disc_beta2: float = 0.99       # (beta2)
    ndf: int = 64                  # the discriminator's base width


@register_method("dan")
class DAN(SSLMethod[DANConfig]):
    """A segmenter and a discriminator D(probabilities, image) that tells predictions on labeled
    slices (target 1) from predictions on unlabeled slices (target 0). Segmenter step (D in eval):
    0.5 (CE + Dice) on labeled slices plus ``w(t)`` times CE(D(p_u, x_u), 1), i.e. make unlabeled
    predictions look like labeled ones. Then a discriminator step (segmenter in eval, no gradient)
    with its own Adam optimiser (lr 1e-4, betas 0.9/0.99), through the trainer's extra-optimiser hook.

    As SSL4MIS: D never sees ground-truth masks (the paper's evaluation network scores segmentations
    against the image; SSL4MIS contrasts labeled vs unlabeled predictions), one D step per segmenter step.
    """

    paper_name = "DAN"

    def __init__(self, cfg: DANConfig, ctx: MethodContext) -> None:
        super().__init__(cfg, ctx)
        self.disc = FCDiscriminator(ctx.num_classes, ctx.in_channels, cfg.ndf).to(ctx.device)

    def extra_optimizers(self) -> dict[str, ExtraOptimizer]:
        return {"disc": ExtraOptimizer(list(self.disc.parameters()), "adam", self.cfg.disc_lr,
                                       (self.cfg.disc_beta1, self.cfg.disc_beta2))}

    def training_step(self, batch: Batch, step: StepInfo) -> Losses:
        assert batch.x_u is not None
        self.disc.eval()
        n = batch.n_l
        logits = self.student(batch.joint())
        d_out = self.disc(torch.softmax(logits[n:].float(), dim=1), batch.x_u)
        adv = F.cross_entropy(d_out.float(), torch.ones(d_out.shape[0], dtype=torch.long, device=d_out.device))
        weight = step.consistency_weight(self.cfg.consistency)
        return {"loss_sup": ce_dice_loss(logits[:n], batch.y_l), "loss_adv": weight * adv,
                "cons_weight": weight}

    def extra_step(self, name: str, batch: Batch, step: StepInfo) -> Losses:
        self.student.eval()
        self.disc.train()
        x = batch.joint()
        with torch.no_grad():
            probs = torch.softmax(self.student(x).float(), dim=1)
        d_out = self.disc(probs, x)
        target = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        target[:batch.n_l] = 1
        return {"loss_disc": F.cross_entropy(d_out.float(), target)}
