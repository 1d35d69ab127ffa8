"""BCP: Bidirectional Copy-Paste (Bai et al., CVPR 2023), as its released ACDC code runs it
(DeepMed-Lab-ECNU/BCP, ``code/ACDC_BCP_train.py``).

Two stages on the shared UNet:

* ``pretrain``: the labeled half-batches ``a`` and ``b`` mixed by one box per batch (zero-mask of
  2/3 x 2/3 of the image at a random position): ``a`` outside the box, ``b`` inside; loss
  ``(Dice + CE) / 2`` of the mixed labels, each region's Dice and CE over its own pixels;
* ``train``: a mean teacher, initialised from the pre-trained network and run in train mode, labels
  the unlabeled halves ``ua``, ``ub`` (argmax, then per slice and class only the largest connected
  component); the student sees ``ua`` outside / ``a`` inside the box and ``b`` outside / ``ub``
  inside, each supervised by the same mix of labels and pseudo-labels, with the unlabeled region
  weighted ``u_weight`` (0.5); loss ``(Dice + CE) / 2`` summed over both mixed images; the teacher
  follows the student by EMA 0.99 of every parameter and BN statistic after each step.

As released, stage 2 starts from the pre-trained network with the best validation Dice (validated at
every ``train.val_every``; the last one when no validation runs), and both stages train at a constant
learning rate (``configs/methods/bcp.toml``: ``train.lr_schedule = "constant"``; the release never
decays it). Deviations: stage 2 starts a fresh optimiser (the release loads the pre-training's
momentum buffers); the unused projection / selector heads of the release's ``UNet_2d`` are left out
(they get no gradient); when the labeled and unlabeled parts of a batch differ in size, both are cut
to the smaller even size (the release assumes 12 + 12).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from sslbench.method import Batch, Losses, MethodConfig, MethodContext, SSLMethod, StepInfo, register_method
from sslbench.nn import EMATeacher, keep_largest_per_class, masked_dice_loss


@dataclass
class BCPConfig(MethodConfig):
    u_weight: float = 0.5         # weight of the pseudo-labelled region of each mixed image
    box_fraction: float = 2 / 3   # side of the pasted box, as a fraction of the image side
    ema_decay: float = 0.99       # the teacher's EMA of parameters and BN statistics
    largest_component: bool = True  # clean pseudo-labels to each class's largest component per slice


def box_mask(h: int, w: int, g: torch.Generator, device: torch.device, fraction: float = 2 / 3) -> Tensor:
    """(h, w) float mask: 1 outside one box of ``int(h * f) x int(w * f)`` pixels, 0 inside, its
    corner uniform over ``[0, h - bh) x [0, w - bw)`` (``np.random.randint``), one per batch."""
    bh, bw = int(h * fraction), int(w * fraction)
    y0 = torch.randint(0, max(h - bh, 1), (1,), generator=g, device=device)
    x0 = torch.randint(0, max(w - bw, 1), (1,), generator=g, device=device)
    rows = torch.arange(h, device=device).view(h, 1)
    cols = torch.arange(w, device=device).view(1, w)
    inside = (rows >= y0) & (rows < y0 + bh) & (cols >= x0) & (cols < x0 + bw)
    return (~inside).float()


def mix_loss(logits: Tensor, outer: Tensor, inner: Tensor, mask: Tensor, outer_weight: float,
             inner_weight: float, background_unmasked: bool = False) -> tuple[Tensor, Tensor]:
    """The release's ``mix_loss``: Dice (eps 1e-10) and CE of ``outer`` labels over the pixels where
    ``mask`` is 1 and of ``inner`` labels where it is 0, each weighted; returns (Dice, CE).
    ``background_unmasked``: the background's Dice term over every pixel, as ABD's copy of the Dice
    loss computes it (its mask encoder maps class 0 to an all-ones mask)."""
    probs = torch.softmax(logits.float(), dim=1)
    m = mask.expand(logits.shape[0], *mask.shape[-2:])

    def region(r: Tensor) -> Tensor:
        if not background_unmasked:
            return r
        per_class = r[:, None].expand(-1, probs.shape[1], -1, -1).clone()
        per_class[:, 0] = 1.0
        return per_class

    dice = (outer_weight * masked_dice_loss(probs, outer, region(m), eps=1e-10)
            + inner_weight * masked_dice_loss(probs, inner, region(1 - m), eps=1e-10))
    ce_out = F.cross_entropy(logits.float(), outer.long(), reduction="none")
    ce_in = F.cross_entropy(logits.float(), inner.long(), reduction="none")
    ce = (outer_weight * (ce_out * m).sum() / (m.sum() + 1e-16)
          + inner_weight * (ce_in * (1 - m)).sum() / ((1 - m).sum() + 1e-16))
    return dice, ce


def halves(x: Tensor, k: int) -> tuple[Tensor, Tensor]:
    return x[:k], x[k:2 * k]


@register_method("bcp")
class BCP(SSLMethod[BCPConfig]):
    """BCP: copy-paste between labeled and unlabeled slices in both directions with a mean teacher,
    after a copy-paste pre-training on the labeled slices (module docstring: recipe, deviations)."""

    paper_name = "BCP"
    stages = ("pretrain", "train")
    carry_best_of = ("pretrain",)  # stage 2 loads the pre-training's best-on-validation network
    background_unmasked = False    # see ``mix_loss`` (ABD's copy of the Dice loss: True in both stages)

    def __init__(self, cfg: BCPConfig, ctx: MethodContext) -> None:
        super().__init__(cfg, ctx)
        self.teacher = EMATeacher(self.student, cfg.ema_decay, warmup=False, train_mode=True, buffers=True)

    def pseudo_labels(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            labels = self.teacher(x).argmax(dim=1)
        if self.cfg.largest_component:
            labels = keep_largest_per_class(labels, self.ctx.num_classes)
        return labels

    def training_step(self, batch: Batch, step: StepInfo) -> Losses:
        cfg, x_l, y_l = self.cfg, batch.x_l, batch.y_l
        g = step.rng(x_l.device)
        h, w = x_l.shape[-2:]
        mask = box_mask(h, w, g, x_l.device, cfg.box_fraction)
        m = mask.view(1, 1, h, w)
        if step.stage == "pretrain":
            k = x_l.shape[0] // 2
            (a, b), (ya, yb) = halves(x_l, k), halves(y_l, k)
            dice, ce = mix_loss(self.student(a * m + b * (1 - m)), ya, yb, mask, 1.0, 1.0,
                                background_unmasked=self.background_unmasked)
            return {"loss_mix": (dice + ce) / 2, "mix_dice": dice.detach(), "mix_ce": ce.detach()}
        assert batch.x_u is not None
        k = min(x_l.shape[0], batch.x_u.shape[0]) // 2
        (a, b), (ya, yb), (ua, ub) = halves(x_l, k), halves(y_l, k), halves(batch.x_u, k)
        plab_a, plab_b = self.pseudo_labels(ua), self.pseudo_labels(ub)  # two teacher passes, as released
        out_unl = self.student(ua * m + a * (1 - m))
        out_l = self.student(b * m + ub * (1 - m))
        unl_dice, unl_ce = mix_loss(out_unl, plab_a, ya, mask, cfg.u_weight, 1.0)
        l_dice, l_ce = mix_loss(out_l, yb, plab_b, mask, 1.0, cfg.u_weight)
        dice, ce = unl_dice + l_dice, unl_ce + l_ce
        return {"loss_mix": (dice + ce) / 2, "mix_dice": dice.detach(), "mix_ce": ce.detach()}

    def start_stage(self, stage: str) -> None:
        # stage 2's teacher starts as the pre-trained network (the best-validated one: carry_best_of)
        self.teacher.reset_to(self.student)

    def after_step(self, step: StepInfo, outputs: Losses) -> None:
        if step.stage == "train":
            self.teacher.update(self.student, step.iteration)
