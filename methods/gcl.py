"""GCL: global and local contrastive pre-training (Chaitanya et al., NeurIPS 2020), then supervised
fine-tuning (METHODS 2.11, ``krishnabits001/domain_specific_cl``)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sslbench.method import Batch, Losses, MethodConfig, MethodContext, SSLMethod, StepInfo, register_method
from sslbench.nn import GlobalHead, ce_dice_loss, grouped_nt_xent, photometric, prototype_contrast, strong_view

# GCL's 13 local regions: corners, edge midpoints, centre and the four quarter points of the map
REGIONS = [(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0), (0.0, 0.5), (0.5, 0.0), (1.0, 0.5), (0.5, 1.0),
           (0.5, 0.5), (0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75)]


@dataclass
class GCLConfig(MethodConfig):
    tau: float = 0.1           # NT-Xent temperature of both terms
    partitions: int = 4        # volume partitions: slices of one partition are positives (G^D-)
    hidden: int = 1024         # projection head: hidden width ...
    proj_dim: int = 128        # ... and output width
    region: int = 3            # local region side (3 x 3 feature patch)
    w_global: float = 1.0      # weight of the global (encoder) term
    w_local: float = 1.0       # weight of the local (decoder) term


def other_indices(n: int, device: torch.device) -> Tensor:
    """Row i: the indices 0..n-1 without i, built on the device (a boolean-mask gather would wait for
    the host to count the selected elements)."""
    j = torch.arange(n - 1, device=device)[None, :]
    return j + (j >= torch.arange(n, device=device)[:, None]).long()


@register_method("gcl")
class GCL(SSLMethod[GCLConfig]):
    """``pretrain`` stage, no labels: the global loss on the encoder (NT-Xent, τ = 0.1, where slices
    from the same of 4 volume partitions are positives and same-partition samples are left out of the
    denominator) and the local loss on the decoder at 1/4 resolution (13 fixed 3 x 3 regions, each
    through a shared Linear(·, 128); positive: the same region in the other view, τ = 0.1). ``train``
    stage: (CE + Dice) on the labeled slices only.

    Differences from the released TF code, for the shared UNet and trainer: the global head pools the
    bottleneck (GAP -> Dense 1024 ReLU -> Dense 128) instead of flattening it (a flattened 256 x 16 x 16
    map would need a 67 M-parameter layer); the two losses are trained together in one stage instead of
    encoder then decoder; local negatives are all other regions of both views (the code lists 5 by hand);
    batches are random slices, and partition positives come from the slices' positions in their
    volumes (without positions, only the other view is positive: G^R); SGD and the profile's schedule
    replace Adam at 1e-3. Local views differ photometrically only, so regions stay aligned."""

    paper_name = "GCL"
    stages = ("pretrain", "train")

    def __init__(self, cfg: GCLConfig, ctx: MethodContext) -> None:
        super().__init__(cfg, ctx)
        widths = self.student.widths
        self.global_head = GlobalHead(widths[-1], cfg.hidden, cfg.proj_dim, norm=False, relu=True, bias=False)
        c = widths[-3]  # decoder width at 1/4 resolution
        self.local_head = nn.Sequential(
            nn.Conv2d(c, c, 1), nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.Conv2d(c, c, 1),
        )
        self.region_proj = nn.Linear(c * cfg.region ** 2, cfg.proj_dim, bias=False)
        self.to(ctx.device)

    def regions(self, x: Tensor) -> Tensor:
        """(B, 13, D) region embeddings from the decoder stage at 1/4 resolution."""
        fmap = self.local_head(self.student(x, features=True).decoder[1])
        r = self.cfg.region
        h, w = fmap.shape[-2:]
        patches = [fmap[:, :, round(a * (h - r)):round(a * (h - r)) + r, round(b * (w - r)):round(b * (w - r)) + r]
                   for a, b in REGIONS]
        return self.region_proj(torch.stack([p.flatten(1) for p in patches], dim=1).float())

    def local_loss(self, e1: Tensor, e2: Tensor) -> Tensor:
        """Region i of one view against region i of the other view (positive) and every other region
        of both views (negatives), both directions averaged."""
        b, n, d = e1.shape
        others = other_indices(n, e1.device)  # (n, n - 1)
        losses = []
        for a, p in ((e1, e2), (e2, e1)):
            negs = torch.cat([a[:, others], p[:, others]], dim=2)  # (b, n, 2 (n - 1), d)
            losses.append(prototype_contrast(a.reshape(-1, d), p.reshape(-1, d), negs.reshape(b * n, -1, d), self.cfg.tau))
        return 0.5 * (losses[0] + losses[1])

    def training_step(self, batch: Batch, step: StepInfo) -> Losses:
        if step.stage == "train":
            return {"loss_sup": ce_dice_loss(self.student(batch.x_l), batch.y_l)}
        x = batch.joint()
        g = step.rng(x.device)
        n = x.shape[0]
        groups = (batch.positions * self.cfg.partitions).long() if batch.positions is not None \
            else torch.arange(n, device=x.device)
        z1 = self.global_head(self.student(strong_view(x, g), features=True).bottleneck)
        z2 = self.global_head(self.student(strong_view(x, g), features=True).bottleneck)
        glob = grouped_nt_xent(z1, z2, groups, self.cfg.tau)
        local = self.local_loss(self.regions(photometric(x, g)), self.regions(photometric(x, g)))
        return {"loss_global": self.cfg.w_global * glob, "loss_local": self.cfg.w_local * local}
