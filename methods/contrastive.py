"""Global contrastive frameworks in the semi-supervised setting (MONA paper, Table 5).

"Only pre-training" (default): the shared UNet trained with ``sup_weight (CE + Dice)`` on labeled
slices (weight 1, the scale of MONA's released scripts, in which the paper's Table 5 rows were run) plus the
framework's instance-discrimination loss on views of the unlabeled slices, computed on the UNet
bottleneck through a projection head. "With fine-tuning" is a method of its own, declared beside
each framework (``simclr-ft``, ``mocov2-ft``, ``knn-moco-ft``, ``byol-ft``, ``isd-ft``; GLCon's is
``mona``): the framework as the ``pretrain`` stage, then MONA's stage 2
(``sslbench.methods.mona._anatomy``) as the ``train`` stage, with the ``ReconstructionConfig`` keys on
top of the framework's own. Every EMA decay is called ``ema_decay``; in a fine-tuned variant the
framework's is ``pretrain_ema_decay`` and ``ema_decay`` is stage 2's teacher. No official medical code
exists for these rows (METHODS 2.15); the settings are the frameworks' standard ones, listed per class.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sslbench.method import Batch, Losses, MethodConfig, MethodContext, SSLMethod, StepInfo, register_method
from sslbench.methods.mona._anatomy import AnatomicalReconstruction, ReconstructionConfig
from sslbench.nn import (
    EMATeacher,
    FeatureQueue,
    GlobalHead,
    ce_dice_loss,
    contrastive_views,
    cosine_regression,
    info_nce,
    knn_positive_loss,
    mask_slots,
    mlp,
    moco_logits,
    nt_xent,
    relational_kl,
    strong_view,
)


class Embedder(nn.Module):
    """UNet encoder path -> bottleneck -> projection head (the network a framework trains)."""

    def __init__(self, net: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.net, self.head = net, head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.net(x, features=True).bottleneck)


@dataclass
class ContrastiveConfig(MethodConfig):
    sup_weight: float = 1.0  # supervised loss = sup_weight (CE + Dice): MONA's scripts use 1
    weight: float = 1.0      # weight of the contrastive term (no ramp-up, as MONA's pre-training)
    tau: float = 0.5         # contrastive temperature
    hidden: int = 512        # projection head's hidden width
    proj_dim: int = 128      # projection head's output width


# settings under which every stage-2 term is active on an untrained tiny network (conformance kit)
FINETUNE_CONFORMANCE = {"unsup_threshold": 0.0, "query_threshold": 0.0, "bank_size": 64, "bank_size_bg": 64,
                        "bank_writes": 32, "queries": 16, "negatives": 8}


class GlobalContrastive(SSLMethod[ContrastiveConfig]):
    """Shared plumbing: the supervised loss on labeled slices plus ``contrast`` on unlabeled ones;
    in a fine-tuned variant (``FineTuned``) the stage 2 of MONA follows as the ``train`` stage."""

    finetune: ClassVar[bool] = False

    def __init__(self, cfg: ContrastiveConfig, ctx: MethodContext) -> None:
        super().__init__(cfg, ctx)
        self.embedder = Embedder(self.student, self.build_head().to(ctx.device))
        self.reco = AnatomicalReconstruction(self.student, cfg, ctx) if self.finetune else None  # type: ignore[arg-type]

    @property
    def framework_ema(self) -> float:
        """The decay of the framework's EMA encoder: ``ema_decay``, or ``pretrain_ema_decay`` when
        ``ema_decay`` belongs to stage 2's teacher."""
        return self.cfg.pretrain_ema_decay if self.finetune else self.cfg.ema_decay  # type: ignore[attr-defined]

    def build_head(self) -> nn.Module:
        return GlobalHead(self.student.widths[-1], self.cfg.hidden, self.cfg.proj_dim)

    def contrast(self, x_u: Tensor, g: torch.Generator) -> tuple[Tensor, Losses]:
        """The framework's unsupervised loss on a batch of unlabeled slices (views drawn from ``g``,
        the trainer's generator), and what its ``framework_after_step`` needs (``_``-keys: the keys
        its queues store)."""
        raise NotImplementedError

    def framework_step(self, batch: Batch, step: StepInfo) -> Losses:
        assert batch.x_u is not None
        sup = ce_dice_loss(self.student(batch.x_l), batch.y_l, self.cfg.sup_weight)
        contrast, for_hook = self.contrast(batch.x_u, step.rng(batch.x_u.device))
        return {"loss_sup": sup, "loss_contrast": self.cfg.weight * contrast, "contrast": contrast.detach(),
                **for_hook}

    def framework_after_step(self, step: StepInfo, outputs: Losses) -> None:
        """EMA encoders and queues of the framework (default: none)."""

    def training_step(self, batch: Batch, step: StepInfo) -> Losses:
        if self.reco is not None and step.stage == "train":
            assert batch.x_u is not None
            return self.reco.losses(batch.x_l, batch.y_l, batch.x_u, step)
        return self.framework_step(batch, step)

    def after_step(self, step: StepInfo, outputs: Losses) -> None:
        if self.reco is not None:
            self.reco.after_step(step)  # the stage-2 teacher follows the student from the start
        if self.reco is None or step.stage != "train":
            self.framework_after_step(step, outputs or {})


@register_method("simclr")
class SimCLR(GlobalContrastive):
    """SimCLR (Chen et al., ICML 2020): NT-Xent between the two views' projections, τ = 0.5 (SCS's
    medical setting; ImageNet uses 0.1), 2-layer MLP head with BN."""

    paper_name = "SimCLR"

    def contrast(self, x_u: Tensor, g: torch.Generator) -> tuple[Tensor, Losses]:
        v1, v2 = contrastive_views(x_u, g)
        return nt_xent(self.embedder(v1), self.embedder(v2), self.cfg.tau), {}


@dataclass
class MoCoConfig(ContrastiveConfig):
    tau: float = 0.2
    queue: int = 65536        # keys kept in the queue
    ema_decay: float = 0.999  # the key encoder's EMA


@register_method("mocov2")
class MoCoV2(GlobalContrastive):
    """MoCo v2 (Chen et al., 2020): InfoNCE of the query view against the momentum encoder's key of the
    other view and a FIFO queue of past keys (K = 65536, τ = 0.2, m = 0.999, MLP head). The key encoder
    is an EMA copy of UNet encoder + head, updated after each step with a constant decay (``ema_decay``)."""

    paper_name = "MoCov2"
    Config = MoCoConfig

    def __init__(self, cfg: MoCoConfig, ctx: MethodContext) -> None:
        super().__init__(cfg, ctx)
        self.key_encoder = EMATeacher(self.embedder, self.framework_ema, warmup=False)
        self.queue = FeatureQueue(cfg.queue, cfg.proj_dim).to(ctx.device)

    def contrast(self, x_u: Tensor, g: torch.Generator) -> tuple[Tensor, Losses]:
        v1, v2 = contrastive_views(x_u, g)
        with torch.no_grad():
            k = self.key_encoder(v2)
        return info_nce(self.embedder(v1), k, self.queue.bank, self.cfg.tau, self.queue.valid()), {"_keys": k}

    def framework_after_step(self, step: StepInfo, outputs: Losses) -> None:
        self.key_encoder.update(self.embedder, step.iteration)
        if "_keys" in outputs:
            self.queue.push(outputs["_keys"])


@dataclass
class KNNMoCoConfig(MoCoConfig):
    ema_decay: float = 0.995
    knn: int = 5              # neighbours taken as extra positives: 5 as the MONA paper's appendix (code: 50)
    knn_weight: float = 0.4   # weight of the nearest-neighbour term


@register_method("knn-moco")
class KNNMoCo(MoCoV2):
    """kNN-MoCo (Van Gansbeke et al., NeurIPS 2021): MoCo v2 plus an auxiliary loss treating the
    query's k = 5 nearest queue entries as extra positives (the MONA paper's appendix for its Table 5;
    the released default is 50), ``L = CE_moco + 0.4 L_aux``. Neighbours are found with backbone
    features (the bottleneck after global average pooling) against a second queue of the keys'
    backbone features; ``L_aux = -mean_q (1/k) Σ_{j ∈ kNN} log softmax_j(q · queue / τ)``, the
    log-softmax running over the K queue entries only, without the positive key's column, as the
    released ``pull_topk`` (``builder_ours.py``) computes it on ``l_neg``.

    Differs from the released code: neighbours are looked up in the backbone queue *before* this
    step's keys enter it (the released forward enqueues first, so the query's own key can be its own
    neighbour, at a slot whose projection-head entry is still the old key); multi-crop and
    AutoAugment of the ImageNet recipe are not used: every framework here shares the same two views."""

    paper_name = "kNN-MoCo"
    Config = KNNMoCoConfig
    cfg: KNNMoCoConfig

    def __init__(self, cfg: KNNMoCoConfig, ctx: MethodContext) -> None:
        super().__init__(cfg, ctx)
        self.backbone_queue = FeatureQueue(cfg.queue, self.student.widths[-1]).to(ctx.device)

    def contrast(self, x_u: Tensor, g: torch.Generator) -> tuple[Tensor, Losses]:
        v1, v2 = contrastive_views(x_u, g)
        feat = self.student(v1, features=True).bottleneck
        q = self.embedder.head(feat)
        with torch.no_grad():
            k_feat = self.key_encoder.module.net(v2, features=True).bottleneck
            k = self.key_encoder.module.head(k_feat)
            sim = F.normalize(feat.float().mean(dim=(2, 3)), dim=1) @ self.backbone_queue.bank.t()
            sim = mask_slots(sim, self.backbone_queue.valid())  # never an empty slot as a neighbour
            neighbours = sim.topk(min(self.cfg.knn, sim.shape[1]), dim=1).indices  # queue indices
        valid = self.queue.valid()  # the two queues are written together: the same slots are filled
        logits = moco_logits(q, k, self.queue.bank, self.cfg.tau, valid)  # column 0: the positive key
        moco = F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))
        loss = moco + self.cfg.knn_weight * knn_positive_loss(logits[:, 1:], neighbours, valid)
        return loss, {"_keys": k, "_backbone_keys": k_feat.float().mean(dim=(2, 3))}

    def framework_after_step(self, step: StepInfo, outputs: Losses) -> None:
        if "_backbone_keys" in outputs:
            self.backbone_queue.push(outputs["_backbone_keys"])
        super().framework_after_step(step, outputs)


@dataclass
class BYOLConfig(ContrastiveConfig):
    ema_decay: float = 0.99   # the target network's EMA


@register_method("byol")
class BYOL(GlobalContrastive):
    """BYOL (Grill et al., NeurIPS 2020): the online projection of each view, through a predictor,
    regresses the EMA target's projection of the other view (``2 - 2 cos``); the two symmetric terms
    are summed, as BYOL defines its loss (not averaged). Momentum 0.99 and BN MLPs as the ISD
    repository's small-batch BYOL."""

    paper_name = "BYOL"
    Config = BYOLConfig

    def __init__(self, cfg: BYOLConfig, ctx: MethodContext) -> None:
        super().__init__(cfg, ctx)
        self.predictor = mlp(cfg.proj_dim, cfg.hidden, cfg.proj_dim).to(ctx.device)
        self.target = EMATeacher(self.embedder, self.framework_ema, warmup=False)

    def contrast(self, x_u: Tensor, g: torch.Generator) -> tuple[Tensor, Losses]:
        v1, v2 = contrastive_views(x_u, g)
        with torch.no_grad():
            t1, t2 = self.target(v1), self.target(v2)
        return (cosine_regression(self.predictor(self.embedder(v1)), t2)
                + cosine_regression(self.predictor(self.embedder(v2)), t1)), {}

    def framework_after_step(self, step: StepInfo, outputs: Losses) -> None:
        self.target.update(self.embedder, step.iteration)


@dataclass
class ISDConfig(ContrastiveConfig):
    tau_s: float = 0.1        # student temperature ...
    tau_t: float = 0.01       # ... and the sharper teacher's (ISD+ / MONA, METHODS section 3)
    queue: int = 128000       # anchors kept in the queue
    ema_decay: float = 0.99   # the teacher's EMA
    proj_dim: int = 64        # ISD+ head: feat -> 2 feat -> feat / 4 (256 -> 512 -> 64 on the bottleneck)


@register_method("isd")
class ISD(GlobalContrastive):
    """ISD (Tejankar et al., ICCV 2021), the ISD+ recipe (``train_isd_plus.py``): the student (encoder +
    BN MLP projection + MLP predictor) matches the teacher's (EMA, m = 0.99) similarity distribution
    over a queue of K = 128000 past teacher keys, ``KL(p_t ‖ p_s)`` with τ_t = 0.01, τ_s = 0.1. The
    teacher sees the weakly augmented slice (the trainer's rotation/flip), the student a strong view.
    ShuffleBN is not needed on one device (one BN over the whole batch)."""

    paper_name = "ISD"
    Config = ISDConfig
    cfg: ISDConfig

    def __init__(self, cfg: ISDConfig, ctx: MethodContext) -> None:
        super().__init__(cfg, ctx)
        self.predictor = mlp(cfg.proj_dim, cfg.hidden, cfg.proj_dim).to(ctx.device)
        self.teacher = EMATeacher(self.embedder, self.framework_ema, warmup=False)
        self.queue = FeatureQueue(cfg.queue, cfg.proj_dim).to(ctx.device)

    def contrast(self, x_u: Tensor, g: torch.Generator) -> tuple[Tensor, Losses]:
        with torch.no_grad():
            k = self.teacher(x_u)
        q = self.predictor(self.embedder(strong_view(x_u, g)))
        return relational_kl(q, k, self.queue.bank, self.cfg.tau_s, self.cfg.tau_t, self.queue.valid()), {"_keys": k}

    def framework_after_step(self, step: StepInfo, outputs: Losses) -> None:
        self.teacher.update(self.embedder, step.iteration)
        if "_keys" in outputs:
            self.queue.push(outputs["_keys"])


# ------------------------------------------------------------------ "with fine-tuning" (Table 5)
class FineTuned:
    """Mixin of a framework's fine-tuned variant: the framework is the ``pretrain`` stage, MONA's
    stage 2 the ``train`` stage (``bench methods`` lists both stages, as they run)."""

    finetune: ClassVar[bool] = True
    stages: ClassVar[tuple[str, ...]] = ("pretrain", "train")
    conformance_config: ClassVar[dict[str, object]] = FINETUNE_CONFORMANCE


@dataclass
class SimCLRFTConfig(ReconstructionConfig, ContrastiveConfig):
    pass


@register_method("simclr-ft")
class SimCLRFT(FineTuned, SimCLR):
    """SimCLR, then MONA's stage 2 (Table 5, "with fine-tuning")."""

    paper_name = "SimCLR"
    Config = SimCLRFTConfig


@dataclass
class MoCoFTConfig(ReconstructionConfig, MoCoConfig):
    pretrain_ema_decay: float = 0.999   # the pre-training's EMA (ema_decay: stage 2's teacher)


@register_method("mocov2-ft")
class MoCoV2FT(FineTuned, MoCoV2):
    """MoCo v2, then MONA's stage 2 (Table 5, "with fine-tuning")."""

    paper_name = "MoCov2"
    Config = MoCoFTConfig


@dataclass
class KNNMoCoFTConfig(ReconstructionConfig, KNNMoCoConfig):
    pretrain_ema_decay: float = 0.995   # the pre-training's EMA (ema_decay: stage 2's teacher)


@register_method("knn-moco-ft")
class KNNMoCoFT(FineTuned, KNNMoCo):
    """kNN-MoCo, then MONA's stage 2 (Table 5, "with fine-tuning")."""

    paper_name = "kNN-MoCo"
    Config = KNNMoCoFTConfig


@dataclass
class BYOLFTConfig(ReconstructionConfig, BYOLConfig):
    pretrain_ema_decay: float = 0.99    # the pre-training's EMA (ema_decay: stage 2's teacher)


@register_method("byol-ft")
class BYOLFT(FineTuned, BYOL):
    """BYOL, then MONA's stage 2 (Table 5, "with fine-tuning")."""

    paper_name = "BYOL"
    Config = BYOLFTConfig


@dataclass
class ISDFTConfig(ReconstructionConfig, ISDConfig):
    pretrain_ema_decay: float = 0.99    # the pre-training's EMA (ema_decay: stage 2's teacher)


@register_method("isd-ft")
class ISDFT(FineTuned, ISD):
    """ISD, then MONA's stage 2 (Table 5, "with fine-tuning")."""

    paper_name = "ISD"
    Config = ISDFTConfig
