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

In 3-D (``train.dims = 3``) it is the release's LA script (``code/LA_BCP_train.py``) on two VNets:

* the box is a cuboid of ``int(2/3 * size)`` voxels per axis, its corner ``randint(0, size - box)``
  per axis, one per batch (``context_mask``);
* ``pretrain``: ``a`` outside / ``b`` inside and their labels mixed alike; loss ``(CE + Dice) / 2``
  of the mixed label over the whole crop, with the LA code's ``mask_DiceLoss``: per sample and class
  ``(2 inter + 1e-5) / (Σp + Σy + 1e-5)``, averaged over both (``sample_dice_loss``);
* ``train``: pseudo-labels are the teacher's foreground probability >= 0.5 (``get_cut_mask``), cut
  to the volume's largest 26-connected component (``LargestCC_pancreas``); ``a`` outside / ``ua``
  inside supervised by ``ya`` (weight 1) and its pseudo-label (``u_weight``), and ``ub`` outside /
  ``b`` inside by the pseudo-label (``u_weight``) and ``yb`` (weight 1); each image's loss ``(Dice +
  CE) / 2`` with the masked ``mask_DiceLoss``, the two summed; the teacher is an EMA 0.99 of the
  parameters only (``update_ema_variables``: no warm-up, its BN statistics its own, from its train-mode
  passes, and its dropout active as the release's ``has_dropout=True`` network in train mode).

Its schedule (pre-training 2000, self-training 15 000 iterations, batch 8 with 4 labeled, lr / 10
every 2500 iterations of self-training) is ``configs/methods/bcp.toml``'s ``uamt`` profile. The
release validates both stages on its *test* volumes (``var_all_case_LA`` reads ``test.list``) and
reports the best; LA here has no validation split, so the pre-training's last weights go on and the
last weights are evaluated. Its test script also keeps the largest component of each prediction
(``--nms 1``); evaluation here post-processes no method.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from sslbench.method import Batch, Losses, MethodConfig, MethodContext, SSLMethod, StepInfo, register_method
from sslbench.nn import EMATeacher, keep_largest_per_class, masked_dice_loss, onehot


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


def cuboid_mask(shape: tuple[int, ...], g: torch.Generator, device: torch.device, fraction: float = 2 / 3) -> Tensor:
    """(D, H, W) float mask, 1 outside one cuboid of ``int(size * f)`` voxels per axis and 0 inside,
    its corner ``randint(0, size - box)`` per axis (numpy's exclusive bound): the LA ``context_mask``."""
    inside = torch.ones(shape, dtype=torch.bool, device=device)
    for axis, size in enumerate(shape):
        box = int(size * fraction)
        start = torch.randint(0, max(size - box, 1), (1,), generator=g, device=device)
        at = torch.arange(size, device=device)
        view = [1] * len(shape)
        view[axis] = size
        inside &= ((at >= start) & (at < start + box)).view(view)
    return (~inside).float()


def sample_dice_loss(logits: Tensor, target: Tensor, mask: Tensor | None = None, smooth: float = 1e-5) -> Tensor:
    """BCP's LA ``mask_DiceLoss(nclass)``: ``1 - mean over samples and classes of (2 Σ m p y + s) /
    (Σ m (p + y) + s)``, softmax probabilities ``p``, one-hot ``y``, ``m`` the mask (all ones if None)."""
    probs = torch.softmax(logits.float(), dim=1)
    onehot_t = onehot(target, probs.shape[1], probs.dtype)
    inter, union = probs * onehot_t, probs + onehot_t
    if mask is not None:
        m = mask.to(probs.dtype).expand(target.shape)[:, None]
        inter, union = inter * m, union * m
    dims = tuple(range(2, probs.dim()))
    return 1 - ((2 * inter.sum(dims) + smooth) / (union.sum(dims) + smooth)).mean()


def masked_ce(logits: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """CE over the voxels where ``mask`` is 1: ``Σ m CE / (Σ m + 1e-16)`` (the release's ``mix_loss``)."""
    m = mask.expand(target.shape)
    return (F.cross_entropy(logits.float(), target.long(), reduction="none") * m).sum() / (m.sum() + 1e-16)


def mix_loss_3d(logits: Tensor, outer: Tensor, inner: Tensor, mask: Tensor, outer_weight: float,
                inner_weight: float) -> tuple[Tensor, Tensor]:
    """The LA ``mix_loss`` before its ``/ 2``: (Dice, CE) of ``outer`` where ``mask`` is 1 and ``inner``
    where it is 0, each weighted."""
    dice = (outer_weight * sample_dice_loss(logits, outer, mask)
            + inner_weight * sample_dice_loss(logits, inner, 1 - mask))
    ce = outer_weight * masked_ce(logits, outer, mask) + inner_weight * masked_ce(logits, inner, 1 - mask)
    return dice, ce


def halves(x: Tensor, k: int) -> tuple[Tensor, Tensor]:
    return x[:k], x[k:2 * k]


@register_method("bcp")
class BCP(SSLMethod[BCPConfig]):
    """BCP: copy-paste between labeled and unlabeled slices in both directions with a mean teacher,
    after a copy-paste pre-training on the labeled slices (module docstring: recipe, deviations)."""

    paper_name = "BCP"
    dims = (2, 3)
    stages = ("pretrain", "train")
    carry_best_of = ("pretrain",)  # stage 2 loads the pre-training's best-on-validation network
    background_unmasked = False    # see ``mix_loss`` (ABD's copy of the Dice loss: True in both stages)

    def __init__(self, cfg: BCPConfig, ctx: MethodContext) -> None:
        super().__init__(cfg, ctx)
        # ACDC's release averages the BN statistics too; LA's ``update_ema_variables`` the parameters only
        self.teacher = EMATeacher(self.student, cfg.ema_decay, warmup=False, train_mode=True, buffers=ctx.dims == 2)

    def teacher_labels(self, x: Tensor) -> Tensor:
        """The teacher's labels of ``x`` before the cleaning (one pass: its BN statistics are this batch's)."""
        with torch.no_grad():
            logits = self.teacher(x)
            if x.dim() == 5 and self.ctx.num_classes == 2:  # LA's get_cut_mask: foreground probability >= 0.5
                return (torch.softmax(logits.float(), dim=1)[:, 1] >= 0.5).long()
            return logits.argmax(dim=1)

    def clean(self, *labels: Tensor) -> tuple[Tensor, ...]:
        """Each label map cut to its classes' largest components, all maps in one pass (the cleaning is
        per slice, so batching changes no pixel; on a GPU its convergence reads are host syncs, and one
        pass makes them once a step instead of once per map)."""
        if not self.cfg.largest_component:
            return labels
        kept = keep_largest_per_class(torch.cat(labels), self.ctx.num_classes)
        return tuple(kept.split([len(lab) for lab in labels]))

    def pseudo_labels(self, *xs: Tensor) -> tuple[Tensor, ...]:
        """The teacher's cleaned labels of each batch in ``xs`` (a teacher pass each, as released)."""
        return self.clean(*(self.teacher_labels(x) for x in xs))

    def training_step(self, batch: Batch, step: StepInfo) -> Losses:
        if batch.x_l.dim() == 5:
            return self.training_step_3d(batch, step)
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
        plab_a, plab_b = self.pseudo_labels(ua, ub)  # two teacher passes, as released
        out_unl = self.student(ua * m + a * (1 - m))
        out_l = self.student(b * m + ub * (1 - m))
        unl_dice, unl_ce = mix_loss(out_unl, plab_a, ya, mask, cfg.u_weight, 1.0)
        l_dice, l_ce = mix_loss(out_l, yb, plab_b, mask, 1.0, cfg.u_weight)
        dice, ce = unl_dice + l_dice, unl_ce + l_ce
        return {"loss_mix": (dice + ce) / 2, "mix_dice": dice.detach(), "mix_ce": ce.detach()}

    def training_step_3d(self, batch: Batch, step: StepInfo) -> Losses:
        """The LA release's two stages (module docstring)."""
        cfg, x_l, y_l = self.cfg, batch.x_l, batch.y_l
        mask = cuboid_mask(tuple(x_l.shape[2:]), step.rng(x_l.device), x_l.device, cfg.box_fraction)
        m = mask[None, None]
        if step.stage == "pretrain":
            k = x_l.shape[0] // 2
            (a, b), (ya, yb) = halves(x_l, k), halves(y_l, k)
            mixed = (ya * mask + yb * (1 - mask)).long()
            out = self.student(a * m + b * (1 - m))
            dice, ce = sample_dice_loss(out, mixed), F.cross_entropy(out.float(), mixed)
            return {"loss_mix": (dice + ce) / 2, "mix_dice": dice.detach(), "mix_ce": ce.detach()}
        assert batch.x_u is not None
        k = min(x_l.shape[0], batch.x_u.shape[0]) // 2
        (a, b), (ya, yb), (ua, ub) = halves(x_l, k), halves(y_l, k), halves(batch.x_u, k)
        plab_a, plab_b = self.pseudo_labels(ua, ub)
        l_dice, l_ce = mix_loss_3d(self.student(a * m + ua * (1 - m)), ya, plab_a, mask, 1.0, cfg.u_weight)
        u_dice, u_ce = mix_loss_3d(self.student(ub * m + b * (1 - m)), plab_b, yb, mask, cfg.u_weight, 1.0)
        loss_l, loss_u = (l_dice + l_ce) / 2, (u_dice + u_ce) / 2
        return {"loss_mix": loss_l + loss_u, "mix_dice": (l_dice + u_dice).detach(),
                "mix_ce": (l_ce + u_ce).detach()}

    def start_stage(self, stage: str) -> None:
        # stage 2's teacher starts as the pre-trained network (the best-validated one: carry_best_of)
        self.teacher.reset_to(self.student)

    def after_step(self, step: StepInfo, outputs: Losses) -> None:
        if step.stage == "train":
            self.teacher.update(self.student, step.iteration)
