"""SCS: global SimCLR and supervised local contrastive pre-training, then fine-tuning (Hu et al.,
MICCAI 2021; METHODS 2.12, ``xhu248/semi_cotrast_seg``)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sslbench.method import Batch, Losses, MethodConfig, MethodContext, SSLMethod, StepInfo, register_method
from sslbench.nn import GlobalHead, ce_dice_loss, nt_xent, photometric, strong_view, supcon


@dataclass
class SCSConfig(MethodConfig):
    tau_global: float = 0.5    # SimCLR temperature of the global term
    tau_local: float = 0.1     # run_coseg.sh (the code default is 0.07)
    hidden: int = 512          # global projection head: hidden width ...
    proj_dim: int = 128        # ... and output width
    local_hidden: int = 256    # pixel projection head: hidden width ...
    local_dim: int = 128       # ... and output width
    stride: int = 4            # LocalConLoss mode=stride
    max_pixels: int = 2048     # strided pixels per view entering the SupCon matrix
    w_global: float = 1.0      # weight of the global (SimCLR) term
    w_local: float = 1.0       # weight of the local (supervised pixel contrast) term


@register_method("scs")
class SCS(SSLMethod[SCSConfig]):
    """``pretrain`` stage: SimCLR (NT-Xent, τ = 0.5, head GAP -> Linear(w, 512) -> Linear(512, 128) with
    no activation) on every slice, plus supervised local contrast on the labeled slices (two
    photometric views, full-resolution decoder features -> 1x1 conv 256 -> 1x1 conv 128, L2-normalised,
    subsampled with stride 4, SupCon with τ = 0.1, positives of the same label, non-background anchors).
    ``train`` stage: (CE + Dice) on the labeled slices.

    Differences from the released code: the global and local pre-training run together in one stage
    (the code runs them one after the other); the strided pixels of both views are subsampled to
    ``max_pixels`` (the same positions in both views) so the SupCon matrix stays bounded at 256 px
    (65 k strided pixels per labeled batch otherwise); the fine-tuning uses the shared (CE + Dice), SGD
    and schedule, without the mixup variant."""

    paper_name = "SCS"
    stages = ("pretrain", "train")

    def __init__(self, cfg: SCSConfig, ctx: MethodContext) -> None:
        super().__init__(cfg, ctx)
        widths = self.student.widths
        self.global_head = GlobalHead(widths[-1], cfg.hidden, cfg.proj_dim, norm=False)
        self.local_head = nn.Sequential(nn.Conv2d(widths[0], cfg.local_hidden, 1), nn.Conv2d(cfg.local_hidden, cfg.local_dim, 1))
        self.to(ctx.device)

    def training_step(self, batch: Batch, step: StepInfo) -> Losses:
        if step.stage == "train":
            return {"loss_sup": ce_dice_loss(self.student(batch.x_l), batch.y_l)}
        cfg, x = self.cfg, batch.joint()
        g = step.rng(x.device)
        z1 = self.global_head(self.student(strong_view(x, g), features=True).bottleneck)
        z2 = self.global_head(self.student(strong_view(x, g), features=True).bottleneck)
        s = cfg.stride
        labels = batch.y_l[:, ::s, ::s].flatten()
        pick = torch.randperm(labels.numel(), generator=g, device=x.device)[:cfg.max_pixels]
        feats = []
        for _ in range(2):
            fmap = self.local_head(self.student(photometric(batch.x_l, g), features=True).decoder[-1])
            feats.append(fmap[:, :, ::s, ::s].permute(0, 2, 3, 1).reshape(-1, fmap.shape[1])[pick])
        lab = torch.cat([labels[pick], labels[pick]])
        local = supcon(torch.cat(feats), lab, cfg.tau_local, anchor_mask=lab != 0)
        return {"loss_global": cfg.w_global * nt_xent(z1, z2, cfg.tau_global), "loss_local": cfg.w_local * local}
