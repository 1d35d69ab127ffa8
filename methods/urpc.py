"""URPC: uncertainty-rectified pyramid consistency (Luo et al., MICCAI 2021 / MedIA 2022) as SSL4MIS
runs it (`train_uncertainty_rectified_pyramid_consistency_2D.py`, `UNet_URPC`)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from sslbench.method import Batch, ConsistencyConfig, Losses, MethodContext, SSLMethod, StepInfo, register_method
from sslbench.nn import PyramidUNet, ce_dice_loss


def rectified_pyramid_consistency(logits: list[Tensor]) -> Tensor:
    """For each scale s with probabilities p_s and the pyramid mean p̄ (not detached):
    ``D_s = Σ_c p̄ (log p̄ - log p_s)`` per pixel, and
    ``L_s = mean((p̄ - p_s)² e^{-D_s}) / (mean(e^{-D_s}) + 1e-8) + mean(D_s)``; returns mean_s L_s.
    Pixels where the scales disagree (large KL) weigh less in the squared term, and the KL itself is
    minimised."""
    probs = [torch.softmax(x.float(), dim=1) for x in logits]
    mean = torch.stack(probs).mean(0)
    terms = []
    for p in probs:
        kl = (mean * (torch.log(mean) - torch.log(p))).sum(dim=1, keepdim=True)
        w = torch.exp(-kl)
        terms.append(((mean - p) ** 2 * w).mean() / (w.mean() + 1e-8) + kl.mean())
    return torch.stack(terms).mean()


@register_method("urpc")
class URPC(SSLMethod[ConsistencyConfig]):
    """A UNet whose decoder predicts at four scales (coarse heads on perturbed features in training).
    Supervised: mean of CE and Dice over the four outputs; unsupervised: ``w(t)`` times the
    uncertainty-rectified consistency of each scale with the pyramid mean, on unlabeled slices.
    Inference uses the full-resolution head (SSL4MIS's test script looks for ``unet_urds`` and crashes
    on ``unet_urpc``, issues #28/#40; here the main head is simply the network's output).
    """

    paper_name = "URPC"

    def build_student(self, ctx: MethodContext) -> nn.Module:
        return PyramidUNet(ctx.in_channels, ctx.num_classes, ctx.base_width).to(ctx.device)

    def training_step(self, batch: Batch, step: StepInfo) -> Losses:
        x = batch.joint()
        outs = self.student.forward_pyramid(x, g=step.rng(x.device))
        n = batch.n_l
        sup = torch.stack([ce_dice_loss(o[:n], batch.y_l) for o in outs]).mean()
        cons = rectified_pyramid_consistency([o[n:] for o in outs])
        weight = step.consistency_weight(self.cfg.consistency)
        return {"loss_sup": sup, "loss_cons": weight * cons, "cons_raw": cons.detach(), "cons_weight": weight}
