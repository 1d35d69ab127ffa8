"""CCT: cross-consistency training (Ouali et al., CVPR 2020) as SSL4MIS runs it
(`train_cross_consistency_training_2D.py`, `UNet_CCT`)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sslbench.method import Batch, ConsistencyConfig, Losses, MethodContext, SSLMethod, StepInfo, register_method
from sslbench.nn import MultiDecoderUNet, ce_dice_loss


@dataclass
class CCTConfig(ConsistencyConfig):
    detach_main: bool = False   # SSL4MIS: False (the consistency also trains the main decoder)


def cross_consistency(main_logits: Tensor, aux_logits: list[Tensor], detach_main: bool = False) -> Tensor:
    """Mean over auxiliary decoders of the MSE between main and auxiliary softmax outputs. SSL4MIS
    does not detach the main prediction, so the term also trains the main decoder; CCT's paper uses
    the main prediction as a fixed target (``detach_main``)."""
    main = torch.softmax(main_logits.float(), dim=1)
    if detach_main:
        main = main.detach()
    return torch.stack([((main - torch.softmax(a.float(), dim=1)) ** 2).mean() for a in aux_logits]).mean()


@register_method("cct")
class CCT(SSLMethod[CCTConfig]):
    """One shared encoder, a main decoder and three auxiliary decoders reading all encoder levels
    through feature noise, dropout (p 0.3, always on) and feature dropout. Supervised: the mean of CE
    and Dice over the four decoders on labeled slices; unsupervised: ``w(t)`` times the main-vs-
    auxiliary consistency on unlabeled slices. Inference uses the main decoder.

    Differs from the paper: SSL4MIS's three perturbations (of CCT's seven), applied to every encoder
    level instead of the encoder output only, and the consistency reaches the main decoder
    (``detach_main=True`` gives the paper's fixed main target).
    """

    paper_name = "CCT"

    def build_student(self, ctx: MethodContext) -> nn.Module:
        return MultiDecoderUNet(ctx.in_channels, ctx.num_classes, ctx.base_width).to(ctx.device)

    def training_step(self, batch: Batch, step: StepInfo) -> Losses:
        x = batch.joint()
        main, aux = self.student.forward_all(x, g=step.rng(x.device))
        n = batch.n_l
        sup = torch.stack([ce_dice_loss(o[:n], batch.y_l) for o in [main, *aux]]).mean()
        cons = cross_consistency(main[n:], [a[n:] for a in aux], self.cfg.detach_main)
        weight = step.consistency_weight(self.cfg.consistency)
        return {"loss_sup": sup, "loss_cons": weight * cons, "cons_mse": cons.detach(), "cons_weight": weight}
