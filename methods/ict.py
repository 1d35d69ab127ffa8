"""ICT: interpolation consistency training (Verma et al., IJCAI 2019) as SSL4MIS runs it
(`train_interpolation_consistency_training_2D.py`)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sslbench.method import Batch, Losses, MethodContext, SSLMethod, StepInfo, TeacherConfig, register_method
from sslbench.nn import ce_dice_loss, softmax_mse


def beta_lambdas(n: int, alpha: float, like: Tensor) -> Tensor:
    """n mixing coefficients ~ Beta(alpha, alpha), shaped (n, 1, 1, 1) to broadcast over images."""
    conc = torch.full((), float(alpha), device=like.device)  # a fill, not a host-to-device copy
    dist = torch.distributions.Beta(conc, conc, validate_args=False)  # validation would sync the device
    return dist.sample((n,)).to(like.dtype).view(n, 1, 1, 1)


def mix_halves(x: Tensor, lam: Tensor) -> Tensor:
    """(1 - lam) * first half + lam * second half (ICT's ``u_mix``); works for images and probabilities."""
    half = x.shape[0] // 2
    return (1 - lam) * x[:half] + lam * x[half:2 * half]

@dataclass
class ICTConfig(TeacherConfig):
    alpha: float = 0.2   # mixing coefficients ~ Beta(alpha, alpha), one per mixed pair


@register_method("ict")
class ICT(SSLMethod[ICTConfig]):
    """The unlabeled batch is split in halves and mixed pairwise, ``u_mix = (1-λ) u_a + λ u_b``; the
    student's softmax on ``u_mix`` is pulled (MSE, weight ``w(t)``) towards the same mix of the EMA
    teacher's softmax on ``u_a`` and ``u_b``. The student sees labeled and mixed slices in one pass.

    As SSL4MIS: teacher in train mode without input noise, run once on each half (so its batch-norm
    statistics in train mode come from the same slices as the reference's), EMA 0.99, no mixup of
    labeled data, λ per pair. The paper ramps its weight differently; the suite uses SSL4MIS's 0.1 sigmoid ramp.
    """

    paper_name = "ICT"

    def __init__(self, cfg: ICTConfig, ctx: MethodContext) -> None:
        super().__init__(cfg, ctx)
        self.teacher = self.make_teacher()

    def training_step(self, batch: Batch, step: StepInfo) -> Losses:
        assert batch.x_u is not None
        lam = beta_lambdas(batch.x_u.shape[0] // 2, self.cfg.alpha, batch.x_u)
        logits = self.student(torch.cat([batch.x_l, mix_halves(batch.x_u, lam)]))
        half = batch.x_u.shape[0] // 2
        with torch.no_grad():  # one teacher pass per half, as the reference: BN statistics per half
            first = torch.softmax(self.teacher(batch.x_u[:half]).float(), dim=1)
            second = torch.softmax(self.teacher(batch.x_u[half:2 * half]).float(), dim=1)
            target = mix_halves(torch.cat([first, second]), lam)
        cons = softmax_mse(logits[batch.n_l:], target)
        weight = step.consistency_weight(self.cfg.consistency)
        return {"loss_sup": ce_dice_loss(logits[:batch.n_l], batch.y_l), "loss_cons": weight * cons,
                "cons_mse": cons.detach(), "cons_weight": weight}

    def after_step(self, step: StepInfo, outputs: Losses) -> None:
        self.teacher.update(self.student, step.iteration)
