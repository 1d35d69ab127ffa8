"""GLCon (MONA's stage 1) and MONA (GLCon, then anatomical contrastive reconstruction), You et al.
"Mine yOur owN Anatomy" (METHODS 2.16-2.17, ``MONA/code/pretrain_2D.py``, ``train_arco_2d.py``)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sslbench.method import Batch, Losses, MethodContext, StepInfo, register_method
from sslbench.methods.contrastive import ContrastiveConfig, FineTuned, GlobalContrastive
from sslbench.methods.mona._anatomy import ReconstructionConfig
from sslbench.methods.mona._heads import WindowHead, window_predictor
from sslbench.nn import EMATeacher, FeatureQueue, GlobalHead, ce_dice_loss, mlp, photometric, relational_kl


@dataclass
class GLConConfig(ContrastiveConfig):
    tau_s: float = 0.1        # student temperature
    tau_t: float = 0.01       # teacher temperature (sharper), as ACTION's script and ISD+
    bank: int = 36            # memory bank of teacher keys (global vectors and local window maps)
    ema_decay: float = 0.99   # the teacher's EMA
    proj_dim: int = 512       # global MLP: GAP -> Linear(256, 256) -> Linear(256, 512), no activation
    w_global: float = 1.0     # weight of the global (bottleneck) term
    w_local: float = 1.0      # weight of the local (49 output windows) term


@register_method("glcon")
class GLCon(GlobalContrastive):
    """GLCon: ISD-style relational KL at two levels, plus ``sup_weight (CE + Dice)`` on the labeled
    slices (weight 1 as ``pretrain_2D.py``; MONA pre-trains with labels: 3 labeled + 3 unlabeled per batch).

    * global: bottleneck -> MLP (GAP, Linear(w, w), Linear(w, 512), no activation) -> predictor
      (Linear(512, 512) x 2); teacher: EMA MLP; a bank of K = 36 teacher vectors;
    * local: the segmentation logits in 7 x 7 = 49 windows (64 px, stride 32 at 256 px), each pooled to
      8 x 8 and projected by 1x1 convs (C -> 8 -> C), plus the student's 1x1-conv predictor; a bank of
      36 teacher window maps;
    * ``KL(p_t ‖ p_s)`` over the bank, τ_s = 0.1, τ_t = 0.01; teacher = EMA (m = 0.99) of UNet + heads.

    49 windows as the released loop (``range(0, 256 - 64 + 1, 32)`` per axis); the paper's appendix
    says 36, ACTION's loop (one window fewer per axis). Bank slots are used once written: the released
    banks start from random vectors (see ``sslbench.nn.banks.FeatureQueue``; K = 36 fills in 6 steps).

    Deliberate differences from the released code: the teacher heads are updated by EMA only (as
    coded they also receive SGD gradients through the KL target); the local branch compares each
    window's 256-d embedding with the bank's embeddings of the same window (as coded a reshape mixes
    batch, window and feature axes and 49-d vectors are compared); the teacher sees the weakly
    augmented batch and the student a photometric strong view, as ISD (as coded an in-place colour
    jitter reaches both and only a blur differs, on the teacher's side). ShuffleBN is dropped: on one
    device BN already sees the whole batch. Both branches train together in one stage (ACTION's
    script first trains the encoder alone).
    """

    paper_name = "GLCon"
    Config = GLConConfig
    cfg: GLConConfig

    def __init__(self, cfg: GLConConfig, ctx: MethodContext) -> None:
        super().__init__(cfg, ctx)
        c = ctx.num_classes
        self.local = WindowHead(c).to(ctx.device)
        self.global_predictor = mlp(cfg.proj_dim, cfg.proj_dim, cfg.proj_dim, norm=False).to(ctx.device)
        self.local_predictor = window_predictor(c).to(ctx.device)
        self.teacher = EMATeacher(self._body(), self.framework_ema, warmup=False)
        self.global_bank = FeatureQueue(cfg.bank, cfg.proj_dim).to(ctx.device)
        self.local_bank = FeatureQueue(cfg.bank, WindowHead.positions(), c * WindowHead.window ** 2).to(ctx.device)

    def build_head(self) -> nn.Module:
        w = self.student.widths[-1]
        return GlobalHead(w, w, self.cfg.proj_dim, norm=False)

    def _body(self) -> nn.ModuleDict:
        """What the teacher mirrors: UNet, global MLP and local projection (not the predictors)."""
        return nn.ModuleDict({"net": self.student, "global": self.embedder.head, "local": self.local})

    def framework_step(self, batch: Batch, step: StepInfo) -> Losses:
        assert batch.x_u is not None
        x, n_l = batch.joint(), batch.n_l
        out = self.student(photometric(x, step.rng(x.device)), features=True)
        q_global = self.global_predictor(self.embedder.head(out.bottleneck))
        q_local = self.local(out.logits, self.local_predictor)
        with torch.no_grad():
            body = self.teacher.module
            t = body["net"](x, features=True)
            k_global, k_local = body["global"](t.bottleneck), body["local"](t.logits)
        cfg = self.cfg
        kl_global = relational_kl(q_global, k_global, self.global_bank.bank, cfg.tau_s, cfg.tau_t,
                                  self.global_bank.valid())
        kl_local = relational_kl(q_local, k_local, self.local_bank.bank, cfg.tau_s, cfg.tau_t, self.local_bank.valid())
        return {"loss_sup": ce_dice_loss(out.logits[:n_l], batch.y_l, cfg.sup_weight),
                "loss_global": cfg.w_global * kl_global, "loss_local": cfg.w_local * kl_local,
                "_global_keys": k_global, "_local_keys": k_local}

    def framework_after_step(self, step: StepInfo, outputs: Losses) -> None:
        self.teacher.update(self._body(), step.iteration)
        if "_global_keys" in outputs:
            self.global_bank.push(outputs["_global_keys"])
            self.local_bank.push(outputs["_local_keys"])


@dataclass
class MONAConfig(ReconstructionConfig, GLConConfig):
    pretrain_ema_decay: float = 0.99     # GLCon's teacher in stage 1 (``ema_decay``: stage 2's teacher)


@register_method("mona")
class MONA(FineTuned, GLCon):
    """MONA: GLCon as the ``pretrain`` stage (``train.pretrain_iterations``), then anatomical
    contrastive reconstruction (``sslbench.methods.mona._anatomy``: pseudo-label, tailness, equivariance and
    diversity losses, λ = (0.01, 1, 1, 1)) as the ``train`` stage from the pre-trained student and
    its EMA teacher. The ablations of Tables 2 and 3 are the switches ``method.tailness``,
    ``method.consistency_loss``, ``method.diversity``, ``method.student_aug`` and
    ``method.teacher_aug``; the default augmentation pair is the released code's (teacher weak,
    student strong), which the paper's text describes the other way round (``sslbench.methods.mona._anatomy``). The released code's own deviations are listed in ``sslbench.methods.mona._anatomy``;
    further ones: plain SGD momentum (the code uses Nesterov) with the profile's schedule, and model
    selection as every other method (the paper evaluates the last iteration; use ``--set
    train.select=last``)."""

    paper_name = "MONA"
    Config = MONAConfig
