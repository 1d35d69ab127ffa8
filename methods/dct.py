"""DCT as SSL4MIS implements it (`train_deep_co_training_2D.py`): rotation-equivariance consistency
of a single UNet. Registered as "DCT" because the MONA paper's DCT row comes from this code."""
from __future__ import annotations

import torch
from torch import Tensor

from sslbench.method import Batch, ConsistencyConfig, Losses, SSLMethod, StepInfo, register_method
from sslbench.nn import ce_dice_loss


def rotation_consistency(rot_logits: Tensor, logits: Tensor, k: int) -> Tensor:
    """``0.5 [mean((sg(f(rot x)) - rot f(x))²) + mean((f(rot x) - sg(rot f(x)))²)]`` on softmax maps:
    each view is the target of the other, so both directions train the network."""
    p_rot = torch.softmax(rot_logits.float(), dim=1)
    rot_p = torch.rot90(torch.softmax(logits.float(), dim=1), k, dims=(2, 3))
    return 0.5 * (((p_rot.detach() - rot_p) ** 2).mean() + ((p_rot - rot_p.detach()) ** 2).mean())


@register_method("dct")
class DCT(SSLMethod[ConsistencyConfig]):
    """0.5 (CE + Dice) on labeled slices plus ``w(t)`` times the rotation consistency between the
    prediction of an unlabeled batch rotated by k·90° (k ~ U{0..3} per iteration) and the rotated
    prediction of the unrotated batch.

    This is SSL4MIS's "deep co-training" script, not Qiao et al.'s DCT (two networks, view-difference
    adversarial examples): the MONA paper's DCT numbers almost certainly come from SSL4MIS, so the
    suite reproduces that code by default. Slices must be square (rot90), as every profile makes them.
    """

    paper_name = "DCT"

    def training_step(self, batch: Batch, step: StepInfo) -> Losses:
        assert batch.x_u is not None
        # k drawn on the host from torch's global RNG (checkpointed), so the step needs no device sync
        k = int(torch.randint(0, 4, ()).item())
        logits = self.student(batch.joint())
        rot_logits = self.student(torch.rot90(batch.x_u, k, dims=(2, 3)))
        cons = rotation_consistency(rot_logits, logits[batch.n_l:], k)
        weight = step.consistency_weight(self.cfg.consistency)
        return {"loss_sup": ce_dice_loss(logits[:batch.n_l], batch.y_l), "loss_cons": weight * cons,
                "cons_mse": cons.detach(), "cons_weight": weight}
