"""DAN: deep adversarial networks (Zhang et al., MICCAI 2017) as SSL4MIS runs it
(`train_adversarial_network_2D.py`, `FCDiscriminator`)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sslbench.discriminator import FCDiscriminator
from sslbench.losses import ce_dice_loss
from sslbench.method import (Batch, ConsistencyConfig, ExtraOptimizer, Losses, MethodContext, SSLMethod,
                             StepInfo, register_method)


@dataclass
class DANConfig(ConsistencyConfig):
    disc_lr: float = 1e-4
    disc_beta1: float = 0.9
    disc_beta2: float = 0.99
    ndf: int = 64


@register_method("dan")
class DAN(SSLMethod):
    """A segmenter and a discriminator D(probabilities, image) that tells predictions on labeled
    slices (target 1) from predictions on unlabeled slices (target 0). Segmenter step (D in eval):
    0.5 (CE + Dice) on labeled slices plus ``w(t)`` times CE(D(p_u, x_u), 1), i.e. make unlabeled
    predictions look like labeled ones. Then a discriminator step (segmenter in eval, no gradient)
    with its own Adam optimiser (lr 1e-4, betas 0.9/0.99), through the trainer's extra-optimiser hook.

    As SSL4MIS: D never sees ground-truth masks (the paper's evaluation network scores segmentations
    against the image; SSL4MIS contrasts labeled vs unlabeled predictions), one D step per segmenter step.
    """

    paper_name = "DAN"
    Config = DANConfig

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
