"""MT: Mean Teacher (Tarvainen & Valpola, NeurIPS 2017) as SSL4MIS runs it (`train_mean_teacher_2D.py`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from sslbench.method import Batch, Losses, MethodContext, SSLMethod, StepInfo, TeacherConfig, register_method
from sslbench.nn import ce_dice_loss, gaussian_noise, softmax_mse


@dataclass
class MTConfig(TeacherConfig):
    noise_std: float = 0.1          # teacher input noise N(0, std^2) ...
    noise_clip: float = 0.2         # ... clamped to [-clip, clip]
    warmup_fraction: float = 1 / 30  # consistency forced to 0 before this fraction of the run
    eval_net: Literal["student", "teacher"] = "student"        # network evaluated: "student" (SSL4MIS) or "teacher"


@register_method("mt")
class MeanTeacher(SSLMethod[MTConfig]):
    """Student trained with 0.5 (CE + Dice) on labeled slices plus ``w(t)`` times the MSE between its
    softmax and an EMA teacher's softmax on noisy unlabeled slices.

    Follows SSL4MIS: the student sees labeled and unlabeled slices in one forward pass (shared BN
    statistics); the teacher runs in train mode (dropout on, batch statistics, as SSL4MIS never calls
    ``eval()`` on it) on the unlabeled slices plus clamped Gaussian noise; EMA ``min(1 - 1/(t+1), 0.99)``
    of the parameters only; the student is evaluated. SSL4MIS zeroes the consistency for the first 1000
    of 30000 iterations; here that warm-up is ``warmup_fraction`` of the run (1/30, identical on the
    ``ssl4mis`` profile) so shorter profiles keep the same shape. Differs from the paper's MT in using
    SSL4MIS's weight (0.1, sigmoid ramp over the whole run) rather than the paper's schedule.

    In 3-D (``train.dims = 3``) it is the mean teacher of UA-MT's LA script without the uncertainty
    mask (UA-MT's own MT baseline): VNet crops, foreground Dice, the ramp over 40 quanta of the run
    (``sigmoid_rampup(iter // 150, 40)`` at 6000 iterations); the warm-up fraction still applies.
    """

    paper_name = "MT"
    eval_nets = {"student": "student", "teacher": "teacher.module"}
    dims = (2, 3)

    def __init__(self, cfg: MTConfig, ctx: MethodContext) -> None:
        super().__init__(cfg, ctx)
        self.teacher = self.make_teacher()

    def training_step(self, batch: Batch, step: StepInfo) -> Losses:
        assert batch.x_u is not None
        n_l = batch.n_l
        logits = self.student(batch.joint())
        noisy = gaussian_noise(batch.x_u, self.cfg.noise_std, self.cfg.noise_clip, step.rng(batch.x_u.device))
        with torch.no_grad():
            teacher_probs = torch.softmax(self.teacher(noisy).float(), dim=1)
        mse = softmax_mse(logits[n_l:], teacher_probs)
        weight = step.consistency_weight(self.cfg.consistency, self.cfg.warmup_fraction,
                                         ramp_steps=40 if self.ctx.dims == 3 else 200)
        return {
            "loss_sup": ce_dice_loss(logits[:n_l], batch.y_l),
            "loss_cons": weight * mse,
            "cons_mse": mse.detach(),
            "cons_weight": weight,
        }

    def after_step(self, step: StepInfo, outputs: Losses) -> None:
        self.teacher.update(self.student, step.iteration)
