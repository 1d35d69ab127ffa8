"""UAMT: uncertainty-aware mean teacher (Yu et al., MICCAI 2019) as SSL4MIS runs it
(`train_uncertainty_aware_mean_teacher_2D.py`)."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from sslbench.method import (
    Batch,
    ConfigError,
    Losses,
    MethodContext,
    SSLMethod,
    StepInfo,
    TeacherConfig,
    register_method,
)
from sslbench.nn import ce_dice_loss, gaussian_noise, sigmoid_rampup, softmax_mse_map


@torch.no_grad()
def mc_entropy(net: nn.Module, x: Tensor, passes: int, perturb: Callable[[Tensor], Tensor],
               eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Mean probabilities (B, C, *S) and entropy (B, 1, *S) over ``passes`` noisy passes (2-D or 3-D).

    Runs the passes two at a time on a doubled batch, as SSL4MIS and UA-MT do (T = 8 -> 4 forward calls).
    """
    b = x.shape[0]
    doubled = x.repeat(2, *[1] * (x.dim() - 1))
    total = None
    for _ in range(passes // 2):
        probs = torch.softmax(net(perturb(doubled)).float(), dim=1)
        s = probs.view(2, b, *probs.shape[1:]).sum(0)
        total = s if total is None else total + s
    mean = total / (2 * (passes // 2))  # type: ignore[operator]
    entropy = -(mean * torch.log(mean + eps)).sum(dim=1, keepdim=True)
    return mean, entropy

@dataclass
class UAMTConfig(TeacherConfig):
    noise_std: float = 0.1          # teacher input noise N(0, std^2) ...
    noise_clip: float = 0.2         # ... clamped to [-clip, clip]
    mc_passes: int = 8              # stochastic teacher passes for the uncertainty
    threshold_max: Literal["ln2", "lnC"] = "ln2"      # "ln2" (SSL4MIS, kept from the binary 3-D code) or "lnC" (max entropy)


def masked_consistency(dist: Tensor, uncertainty: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """``Σ(mask · d) / (2 Σ mask + 1e-16)`` with ``mask = uncertainty < threshold`` broadcast over
    classes (SSL4MIS's normalisation, the 2 included); also returns the fraction of certain pixels."""
    mask = (uncertainty < threshold).to(dist.dtype)
    return (mask * dist).sum() / (2 * mask.sum() + 1e-16), mask.mean()


@register_method("uamt")
class UAMT(SSLMethod[UAMTConfig]):
    """Mean teacher whose consistency only counts pixels the teacher is certain about: the entropy of
    the mean softmax over ``mc_passes`` noisy, dropout-active teacher passes must be below
    ``τ(t) = (0.75 + 0.25 · sigmoid_rampup(t, T)) · τ_max``.

    As SSL4MIS: no 1000-iteration zero period (unlike its MT), teacher inputs with clamped Gaussian
    noise, EMA 0.99 of parameters only. SSL4MIS uses ``τ_max = ln 2`` although its ACDC task has 4
    classes (maximum entropy ln 4), so early in training almost no pixel passes; ``threshold_max``
    keeps that by default because it shapes published numbers, ``"lnC"`` uses the true maximum.

    In 3-D (``train.dims = 3``) it is UA-MT's LA release (``train_LA_meanteacher_certainty_unlabel.py``):
    the same terms on VNet crops, its supervised loss (``ce_dice_loss``: foreground Dice in 3-D) and
    its consistency ramp ``0.1 · sigmoid_rampup(iter // 150, 40)`` (40 quanta of the run, not 200).
    """

    paper_name = "UAMT"
    dims = (2, 3)
    # an untrained network is uncertain everywhere, so the kit checks the term with the lnC threshold
    conformance_config: ClassVar[dict[str, Any]] = {"threshold_max": "lnC"}

    def __init__(self, cfg: UAMTConfig, ctx: MethodContext) -> None:
        super().__init__(cfg, ctx)
        if cfg.threshold_max not in ("ln2", "lnC"):
            raise ConfigError(f"method.threshold_max must be 'ln2' or 'lnC', got '{cfg.threshold_max}'")
        if cfg.mc_passes < 2 or cfg.mc_passes % 2:
            raise ConfigError(f"method.mc_passes must be an even number >= 2, got {cfg.mc_passes}")
        self.teacher = self.make_teacher()
        self.tau_max = math.log(2) if cfg.threshold_max == "ln2" else math.log(ctx.num_classes)

    def training_step(self, batch: Batch, step: StepInfo) -> Losses:
        assert batch.x_u is not None
        cfg = self.cfg
        logits = self.student(batch.joint())
        g = step.rng(batch.x_u.device)
        noise = lambda x: gaussian_noise(x, cfg.noise_std, cfg.noise_clip, g)  # noqa: E731
        with torch.no_grad():
            teacher_probs = torch.softmax(self.teacher(noise(batch.x_u)).float(), dim=1)
        _, uncertainty = mc_entropy(self.teacher.module, batch.x_u, cfg.mc_passes, noise)
        ramp = 1.0 if step.force_ramps else sigmoid_rampup(step.iteration, step.total)
        threshold = (0.75 + 0.25 * ramp) * self.tau_max
        cons, certain = masked_consistency(softmax_mse_map(logits[batch.n_l:], teacher_probs), uncertainty, threshold)
        weight = step.consistency_weight(cfg.consistency, ramp_steps=40 if self.ctx.dims == 3 else 200)
        return {"loss_sup": ce_dice_loss(logits[:batch.n_l], batch.y_l), "loss_cons": weight * cons,
                "certain_fraction": certain.detach(), "cons_weight": weight}

    def after_step(self, step: StepInfo, outputs: Losses) -> None:
        self.teacher.update(self.student, step.iteration)
