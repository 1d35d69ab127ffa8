"""Global contrastive frameworks in the semi-supervised setting (MONA paper, Table 5 "only
pre-training" rows): the shared UNet trained with (CE + Dice) on labeled slices plus the framework's
instance-discrimination loss on two views of the unlabeled slices, computed on the UNet bottleneck
through a projection head. No official medical code exists for these rows (METHODS 2.15); the
settings are the frameworks' standard ones, listed per class.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sslbench.ema import EMATeacher
from sslbench.heads import FeatureQueue, GlobalHead, mlp
from sslbench.losses import ce_dice_loss, cosine_regression, info_nce, nt_xent
from sslbench.method import Batch, Losses, MethodConfig, MethodContext, SSLMethod, StepInfo, register_method
from sslbench.transforms import contrastive_views


class Embedder(nn.Module):
    """UNet encoder path -> bottleneck -> projection head (the network a framework trains)."""

    def __init__(self, net: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.net, self.head = net, head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.net(x, features=True).bottleneck)


@dataclass
class ContrastiveConfig(MethodConfig):
    weight: float = 1.0      # weight of the contrastive term (no ramp-up, as MONA's pre-training)
    tau: float = 0.5
    hidden: int = 512
    proj_dim: int = 128


class GlobalContrastive(SSLMethod):
    """Shared plumbing: supervised loss on labeled slices, ``contrast(view1, view2)`` on unlabeled ones."""

    Config = ContrastiveConfig

    def __init__(self, cfg: ContrastiveConfig, ctx: MethodContext) -> None:
        super().__init__(cfg, ctx)
        self.embedder = Embedder(self.student, GlobalHead(self.student.widths[-1], cfg.hidden, cfg.proj_dim).to(ctx.device))

    def contrast(self, v1: Tensor, v2: Tensor) -> Tensor:
        raise NotImplementedError

    def training_step(self, batch: Batch, step: StepInfo) -> Losses:
        assert batch.x_u is not None
        sup = ce_dice_loss(self.student(batch.x_l), batch.y_l)
        contrast = self.contrast(*contrastive_views(batch.x_u))
        return {"loss_sup": sup, "loss_contrast": self.cfg.weight * contrast, "contrast": contrast.detach()}


@register_method("simclr")
class SimCLR(GlobalContrastive):
    """SimCLR (Chen et al., ICML 2020): NT-Xent between the two views' projections, τ = 0.5 (SCS's
    medical setting; ImageNet uses 0.1), 2-layer MLP head with BN."""

    paper_name = "SimCLR"

    def contrast(self, v1: Tensor, v2: Tensor) -> Tensor:
        return nt_xent(self.embedder(v1), self.embedder(v2), self.cfg.tau)


@dataclass
class MoCoConfig(ContrastiveConfig):
    tau: float = 0.2
    queue: int = 65536
    momentum: float = 0.999


@register_method("mocov2")
class MoCoV2(GlobalContrastive):
    """MoCo v2 (Chen et al., 2020): InfoNCE of the query view against the momentum encoder's key of the
    other view and a FIFO queue of past keys (K = 65536, τ = 0.2, m = 0.999, MLP head). The key encoder
    is an EMA copy of UNet encoder + head, updated after each step with a constant momentum."""

    paper_name = "MoCov2"
    Config = MoCoConfig

    def __init__(self, cfg: MoCoConfig, ctx: MethodContext) -> None:
        super().__init__(cfg, ctx)
        self.key_encoder = EMATeacher(self.embedder, cfg.momentum, warmup=False)
        self.queue = FeatureQueue(cfg.queue, cfg.proj_dim).to(ctx.device)
        self._keys: Tensor | None = None

    def contrast(self, v1: Tensor, v2: Tensor) -> Tensor:
        with torch.no_grad():
            k = self.key_encoder(v2)
        self._keys = k
        return info_nce(self.embedder(v1), k, self.queue.bank, self.cfg.tau)

    def after_step(self, step: StepInfo) -> None:
        self.key_encoder.update(self.embedder, step.iteration)
        if self._keys is not None:
            self.queue.push(self._keys)
            self._keys = None


@dataclass
class BYOLConfig(ContrastiveConfig):
    momentum: float = 0.99


@register_method("byol")
class BYOL(GlobalContrastive):
    """BYOL (Grill et al., NeurIPS 2020): the online projection of each view, through a predictor,
    regresses the EMA target's projection of the other view (``2 - 2 cos``, symmetric). Momentum 0.99
    and BN MLPs as the ISD repository's small-batch BYOL."""

    paper_name = "BYOL"
    Config = BYOLConfig

    def __init__(self, cfg: BYOLConfig, ctx: MethodContext) -> None:
        super().__init__(cfg, ctx)
        self.predictor = mlp(cfg.proj_dim, cfg.hidden, cfg.proj_dim).to(ctx.device)
        self.target = EMATeacher(self.embedder, cfg.momentum, warmup=False)

    def contrast(self, v1: Tensor, v2: Tensor) -> Tensor:
        with torch.no_grad():
            t1, t2 = self.target(v1), self.target(v2)
        return 0.5 * (cosine_regression(self.predictor(self.embedder(v1)), t2)
                      + cosine_regression(self.predictor(self.embedder(v2)), t1))

    def after_step(self, step: StepInfo) -> None:
        self.target.update(self.embedder, step.iteration)
