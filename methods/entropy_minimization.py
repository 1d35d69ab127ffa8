"""EM: entropy minimisation (Vu et al., ADVENT, CVPR 2019) as SSL4MIS runs it
(`train_entropy_minimization_2D.py`)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from sslbench.method import Batch, ConsistencyConfig, Losses, SSLMethod, StepInfo, register_method
from sslbench.nn import ce_dice_loss, entropy_map


@dataclass
class EMConfig(ConsistencyConfig):
    whole_batch: bool = True   # SSL4MIS: entropy over labeled + unlabeled slices; False: unlabeled only


@register_method("em")
class EntropyMinimization(SSLMethod[EMConfig]):
    """0.5 (CE + Dice) on labeled slices plus ``w(t)`` times the mean per-pixel entropy (normalised by
    log C) of the student's softmax.

    Paper vs SSL4MIS: ADVENT's direct entropy term only (no adversarial entropy discriminator). SSL4MIS
    averages the entropy over the whole batch, labeled slices included; ``whole_batch`` (default True,
    as SSL4MIS, since it affects published numbers) switches to unlabeled slices only.
    """

    paper_name = "EM"

    def training_step(self, batch: Batch, step: StepInfo) -> Losses:
        logits = self.student(batch.joint())
        probs = torch.softmax(logits.float(), dim=1)
        ent = entropy_map(probs if self.cfg.whole_batch else probs[batch.n_l:]).mean()
        weight = step.consistency_weight(self.cfg.consistency)
        return {"loss_sup": ce_dice_loss(logits[:batch.n_l], batch.y_l), "loss_entropy": weight * ent,
                "entropy": ent.detach(), "cons_weight": weight}
