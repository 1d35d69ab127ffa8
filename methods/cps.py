"""CPS: cross pseudo supervision (Chen et al., CVPR 2021) as SSL4MIS runs it
(`train_cross_pseudo_supervision_2D.py`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from sslbench.method import Batch, ConsistencyConfig, Losses, MethodContext, SSLMethod, StepInfo, register_method
from sslbench.nn import ce_dice_loss


@dataclass
class CPSConfig(ConsistencyConfig):
    eval_net: Literal["model1", "model2"] = "model1"   # network evaluated and selected: "model1" or "model2"


def cross_pseudo_losses(logits1: Tensor, logits2: Tensor) -> tuple[Tensor, Tensor]:
    """CE of each network against the other's hard (argmax, detached) pseudo labels."""
    return (F.cross_entropy(logits1.float(), logits2.detach().argmax(1)),
            F.cross_entropy(logits2.float(), logits1.detach().argmax(1)))


def release_init(net: nn.Module, init: object) -> None:
    """SSL4MIS's 3-D CPS initialisation: ``init`` on every ``Conv3d`` weight, BN weights 1, biases 0."""
    for m in net.modules():
        if type(m) is nn.Conv3d:
            init(m.weight)  # type: ignore[operator]
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@register_method("cps")
class CPS(SSLMethod[CPSConfig]):
    """Two UNets with independent initialisations, each trained with 0.5 (CE + Dice) on labeled slices
    and ``w(t)`` times the CE against the other network's argmax on unlabeled slices (no confidence
    threshold, as SSL4MIS). Both losses are summed and optimised together.

    SSL4MIS uses two SGD optimisers with identical settings; SGD is per-parameter, so the trainer's
    single SGD over both networks takes exactly the same steps. SSL4MIS keeps a best checkpoint per
    network; the suite evaluates ``eval_net`` (model1 by default) and records which in the run record.

    In 3-D (``train.dims = 3``) two VNets with SSL4MIS's ``train_cross_pseudo_supervision_3D.py`` terms
    and ramp (``iter // 150`` over 200, the run's 200 quanta here), with the track's supervised loss
    (UA-MT's foreground Dice, where SSL4MIS's 3-D script averages ``DiceLoss(2)`` over both classes),
    and its initialisations: Kaiming-normal conv weights for the first network, Xavier-normal for the
    second, batch-norm weights 1 and biases 0 (``kaiming_normal_init_weight`` / ``xavier_normal_init_weight``
    on ``Conv3d`` and ``BatchNorm3d`` only; transposed convs and conv biases keep PyTorch's defaults).
    """

    paper_name = "CPS"
    dims = (2, 3)

    eval_nets = {"model1": "student", "model2": "model2"}

    def __init__(self, cfg: CPSConfig, ctx: MethodContext) -> None:
        super().__init__(cfg, ctx)
        self.model2 = ctx.build_unet()
        if ctx.dims == 3:  # SSL4MIS's 3-D script initialises its two networks differently
            release_init(self.student, nn.init.kaiming_normal_)
            release_init(self.model2, nn.init.xavier_normal_)

    def training_step(self, batch: Batch, step: StepInfo) -> Losses:
        x, n = batch.joint(), batch.n_l
        l1, l2 = self.student(x), self.model2(x)
        ps1, ps2 = cross_pseudo_losses(l1[n:], l2[n:])
        weight = step.consistency_weight(self.cfg.consistency)
        return {"loss_sup1": ce_dice_loss(l1[:n], batch.y_l), "loss_sup2": ce_dice_loss(l2[:n], batch.y_l),
                "loss_cps1": weight * ps1, "loss_cps2": weight * ps2, "cons_weight": weight}
