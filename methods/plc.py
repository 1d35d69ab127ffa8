"""PLC: local contrastive loss with pseudo-label based self-training (Chaitanya et al. 2021 / MedIA
2023; METHODS 2.13, ``krishnabits001/pseudo_label_contrastive_training``)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sslbench.method import Batch, Losses, MethodConfig, MethodContext, SSLMethod, StepInfo, register_method
from sslbench.nn import dice_loss, photometric, pick_where, prototype_contrast, random_spatial


@dataclass
class PLCConfig(MethodConfig):
    tau: float = 0.1             # temperature of the pixel-to-class-mean contrast
    lamda_local: float = 0.1     # weight of that contrast against the Dice loss
    anchors: int = 3             # pixels sampled per image and foreground class (no_of_pos_eles)
    refresh: int = 3             # pseudo-labels re-estimated this many times per stage (every ~5000 of 15001)


@register_method("plc")
class PLC(SSLMethod[PLCConfig]):
    """``pretrain`` stage: a baseline UNet (the pseudo-labeller) trained with Dice (background
    included) on the labeled slices. ``train`` stage, from random initialisation: Dice on the labeled
    slices plus ``0.1 L_local`` on two augmented views of the unlabeled slices with the labeller's
    pseudo-labels: for each image and foreground class, 3 pixels of the class are anchors, the class's
    mean embedding in the same view and in the other view are positives, the other classes' means are
    negatives, τ = 0.1; the embedding head sits on the last decoder layer (1x1 conv + BN + ReLU, 1x1
    conv). The labeller takes the student's weights ``refresh`` times per stage (the code reloads its
    best model every ~5000 iterations; here the current student).

    Differences from the released code: the anchor's own class is never a negative (the code's
    ``neg_cls_ref`` includes it); the positive stays in the denominator (standard InfoNCE, as the
    paper writes it; the code leaves it out); pseudo-labels are inferred on the fly on the
    weakly augmented slice, then both views warp image and labels alike; SGD and the profile's
    schedule replace Adam at 1e-3."""

    paper_name = "PLC"
    stages = ("pretrain", "train")

    def __init__(self, cfg: PLCConfig, ctx: MethodContext) -> None:
        super().__init__(cfg, ctx)
        self.labeller = ctx.build_unet()
        c = self.student.widths[0]
        self.head = nn.Sequential(nn.Conv2d(c, c, 1), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                                  nn.Conv2d(c, c, 1)).to(ctx.device)

    def view(self, x: Tensor, labels: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
        """An augmented view (mild affine + photometric) of images and their pseudo-labels, embedded."""
        n, _, h, w = x.shape
        t = random_spatial(n, h, w, g, x.device, rotate=15.0, scale=(0.9, 1.1), translate=0.05, flip=False)
        emb = self.head(self.student(photometric(t.apply(x), g), features=True).decoder[-1])
        return emb, t.apply(labels, "label")

    def local_loss(self, views: list[tuple[Tensor, Tensor]], g: torch.Generator) -> Tensor:
        c_num = self.ctx.num_classes
        means, onehots = [], []
        for emb, lab in views:
            onehot = F.one_hot(lab, c_num).permute(0, 3, 1, 2).flatten(2).float()  # (B, C, HW)
            means.append(torch.einsum("bch,bdh->bcd", onehot, emb.flatten(2).float())
                         / onehot.sum(2, keepdim=True).clamp(min=1))
            onehots.append(onehot)
        terms, weights = [], []
        for v, (emb, _) in enumerate(views):
            b, d = emb.shape[:2]
            onehot, mean, other = onehots[v], means[v], means[1 - v]
            idx, valid = pick_where(onehot > 0, self.cfg.anchors, g)  # (B, C, A)
            flat = emb.flatten(2).float()  # (B, D, HW)
            anchors = flat.gather(2, idx.flatten(1)[:, None].expand(b, d, -1)).transpose(1, 2).view(b, c_num, -1, d)
            present = (onehot.sum(2) > 0)
            for c in range(1, c_num):  # foreground classes
                negs = torch.cat([mean[:, :c], mean[:, c + 1:]], dim=1)  # (B, C-1, D): the other classes
                q = anchors[:, c].reshape(-1, d)
                neg_q = negs[:, None].expand(-1, self.cfg.anchors, -1, -1).reshape(q.shape[0], -1, d)
                w = (valid[:, c] & present[:, c][:, None]).flatten()
                for pos in (mean[:, c], other[:, c]):
                    pos_q = pos[:, None].expand(-1, self.cfg.anchors, -1).reshape(-1, d)
                    terms.append(prototype_contrast(q, pos_q, neg_q, self.cfg.tau, weight=w))
                    weights.append(w.any().float())
        wt = torch.stack(weights)
        return (torch.stack(terms) * wt).sum() / wt.sum().clamp(min=1.0)

    def training_step(self, batch: Batch, step: StepInfo) -> Losses:
        # SSL4MIS's Dice includes the background, as PLC's dsc_loss=2
        if step.stage == "pretrain":
            return {"loss_labeller": dice_loss(self.labeller(batch.x_l), batch.y_l)}
        assert batch.x_u is not None
        g = step.rng(batch.x_u.device)
        with torch.no_grad():
            pseudo = self.labeller(batch.x_u).argmax(dim=1)
        views = [self.view(batch.x_u, pseudo, g) for _ in range(2)]
        local = self.local_loss(views, g)
        return {"loss_sup": dice_loss(self.student(batch.x_l), batch.y_l), "loss_local": self.cfg.lamda_local * local,
                "local": local.detach()}

    def after_step(self, step: StepInfo, outputs: Losses) -> None:
        every = max(step.total // self.cfg.refresh, 1)
        if step.stage == "train" and (step.iteration + 1) % every == 0 and step.iteration + 1 < step.total:
            self.labeller.load_state_dict(self.student.state_dict())
