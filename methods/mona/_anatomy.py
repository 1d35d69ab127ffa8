"""MONA's stage 2, "anatomical contrastive reconstruction" (You et al., METHODS 2.17), as a component
any method can run as its fine-tuning stage: ``mona`` after GLCon, and every contrastive framework's
"with fine-tuning" variant (MONA paper, Table 5) after its own pre-training.

Per step, with an EMA teacher (UNet + representation head, m = 0.99, train mode):

* pseudo-labels ``ŷ, p̂`` from the teacher on the unlabeled slices as the trainer augmented them;
* the student's strong view: CutMix (labels mixed alike), a smooth deformation with p = 0.5 (images
  and labels warped alike) and brightness/contrast/blur;
* ``loss_sup``: ``sup_weight (CE + Dice)`` on the labeled slices, weight 1 as both released MONA
  scripts (SSL4MIS's baselines use 0.5; 0.5 here would double every λ relative to supervision);
* ``loss_unsup``: ReCo's confidence-weighted cross-entropy to ``ŷ`` (weight: the fraction of the
  image's pixels with ``p̂ >= 0.97``);
* ``loss_tailness`` (0.01): per class, 256 student queries against the class mean of the teacher's
  representations (positive) and 512 negatives each from a class-aware memory bank, τ = 0.5;
* ``loss_consistency`` (1): equivariance KL between ``T(sg(f(x)))`` and ``f(T(x'))`` under a random
  affine warp ``T`` (``x'``: a second photometric draw), masked to confident foreground;
* ``loss_diversity`` (1): the student's pooled representation of each unlabeled slice pulled toward
  its 5 nearest neighbours (found with the teacher's) in a FIFO bank of 36 teacher representations.

Where the paper and the released code (``train_arco_2d.py``, ``loss_helper.py``) differ, and which
one this follows:

* Augmentation direction: the paper's text (section 4, appendix) gives the student the weak and the
  teacher the strong view; the code does the opposite (teacher on the batch as loaded, student on
  CutMix + photometric + deformation), and Table 1's MONA numbers come from the code. The default
  follows the code (``student_aug="strong"``, ``teacher_aug="weak"``); Table 3's published row equal
  to Table 1 is the one it is compared with (``sslbench.report.paper.TABLE3_NOTE``).
* Equivariance: one direction with a detached target, as coded; the paper's Eq. 6 sums both KL
  directions: ``method.symmetric_equivariance=true``.
* Reliable / unreliable pixels (U2PL's entropy percentiles, α from 20 % decaying to 0): from the
  *student's* entropy on the unlabeled strong view, as coded (``prob = prob_u``); class ranks, query
  and bank thresholds from the teacher's probabilities, as coded.
* Diversity on the unlabeled slices only, as coded (the paper's setup paragraph says labeled and
  unlabeled).
* Tailness normaliser and gate as coded: divided by the number of classes with reliable pixels in
  the batch (``valid_seg``), zero when fewer than two (``len(seg_num_list) <= 1``); a class without
  queries adds nothing but still counts.
* Not implemented, as in the code: the easy / hard query split of the paper's Eq. 5 and the
  class-relation graph G; the confidence threshold δ = 0.97 (``hard_threshold``, ``unsup_threshold``)
  is the paper's and the code's.
* 49 local views in stage 1 (``heads.WindowHead``: 64 px windows at stride 32, the code's loop); the
  paper's appendix says 36 (ACTION's loop stops one window earlier).

Deliberate differences from the released code, each for the paper's intent:

* The diversity loss sends gradient: neighbours come from the teacher, distances from the student.
  As coded, teacher distances at student-chosen indices make it a constant.
* The diversity bank is lean: representations average-pooled to ``knn_grid`` x ``knn_grid``
  (496 x 16 x 16 by default): 36 entries take 18 MB instead of 4.7 GB for full 496 x 256 x 256 maps.
  The neighbours are found on coarse anatomy layout (which structure is where, at 16-px cells) rather
  than pixel detail; the loss still shapes the full-resolution head through the pooling. Slots not
  yet written are never neighbours (the code starts from random vectors; ``banks.FeatureQueue``).
* Memory-bank negatives for class c are the teacher's features at hard pixels *not* of class c
  (c among the teacher's top 3, label != c, teacher p_c < 0.97, high entropy when unlabeled). As
  coded, the bank of class c takes pixels labeled c and a rank mask that contradicts it (U2PL
  heritage): empty for labeled pixels, the least likely class for unlabeled ones.
* AdvMorph (adversarial deformation) is replaced by a random smooth diffeomorphic deformation, and
  the second (equivariance) view is photometric only, so images and pseudo-labels stay aligned.
* The 512 negatives are drawn once per class and step and shared by that class's 256 queries: each
  query's negatives have the distribution of U2PL's per-query draws (the expected loss is the same),
  but 512 bank rows are gathered instead of 256 x 512 (65 M floats per class and step).
* Queries, negatives and bank writes use fixed-size draws with validity masks (no host sync).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sslbench.method import ConfigError, MethodConfig, MethodContext, StepInfo
from sslbench.methods.mona._banks import ClassMemoryBank
from sslbench.methods.mona._fused import FusedMap
from sslbench.methods.mona._heads import FeatureExtractor, pointwise, representation_head
from sslbench.nn import (
    EMATeacher,
    FeatureQueue,
    UNet,
    ce_dice_loss,
    confident_ce,
    cutmix,
    entropy_map,
    masked_kl,
    nearest_neighbour_loss,
    photometric,
    pick_where,
    prototype_contrast,
    random_deformation,
    random_spatial,
    sample_where,
)

Losses = dict[str, Tensor]


@dataclass
class ReconstructionConfig(MethodConfig):
    """MONA stage-2 settings (``method.<name>``); the switches are the ablations of Tables 2 and 3."""

    tailness: bool = True            # Table 2 switch: the tailness (class-contrast) term
    consistency_loss: bool = True    # Table 2 switch: the equivariance term
    diversity: bool = True           # Table 2 switch: the diversity (kNN) term
    student_aug: Literal["weak", "strong"] = "strong"      # Table 3: the student's view, "weak" or "strong"
    teacher_aug: Literal["weak", "strong"] = "weak"        # Table 3: the teacher's view, "weak" or "strong"
    sup_weight: float = 1.0          # supervised loss = sup_weight (CE + Dice): MONA's scripts use 1
    w_unsup: float = 1.0             # weight of the pseudo-label term (lambda: tailness 0.01, others 1)
    w_tailness: float = 0.01         # weight of the tailness term
    w_consistency: float = 1.0       # weight of the equivariance term
    w_diversity: float = 1.0         # weight of the diversity term
    tau_contrast: float = 0.5        # temperature of the tailness contrast
    queries: int = 256               # per class
    negatives: int = 512             # per query
    query_threshold: float = 0.3     # teacher p_c above which a pixel of class c may be a query
    hard_threshold: float = 0.97     # δ_n: bank keys have teacher p_c below it
    unsup_threshold: float = 0.97    # ReCo's confidence for the unsupervised weight
    entropy_percent: float = 20.0    # U2PL α_0: reliable / unreliable entropy percentiles, decaying to 0
    bank_size: int = 30000           # per foreground class ...
    bank_size_bg: int = 50000        # ... and for background
    bank_writes: int = 1024          # candidate keys per class per step (a fixed size: no host sync)
    eqv_confidence: float = 0.7      # teacher confidence a foreground pixel needs in the equivariance term
    symmetric_equivariance: bool = False  # True: both KL directions of the paper's Eq. 6 (code: one)
    knn_bank: int = 36               # diversity bank of teacher representations (FIFO)
    knn_k: int = 5                   # nearest neighbours pulled toward
    knn_grid: int = 16               # the bank's pooling grid (knn_grid x knn_grid per map)
    deform: float = 0.05             # smooth deformation of the strong view (normalised units), p = 0.5
    ema_decay: float = 0.99          # stage 2's teacher EMA


class _Segmenter(nn.Module):
    """The teacher's structure: UNet + representation head."""

    def __init__(self, net: nn.Module, fpn: nn.Module) -> None:
        super().__init__()
        self.net, self.fpn = net, fpn

    def forward(self, x: Tensor) -> tuple[Tensor, FusedMap]:
        """Logits and the fused feature map before the representation's pixel-wise linear layers."""
        out = self.net(x, features=True)
        return out.logits, self.fpn.fuse([out.bottleneck, *out.decoder])


class AnatomicalReconstruction(nn.Module):
    """MONA stage 2 for a student UNet (held by reference: it belongs to the method)."""

    def __init__(self, student: UNet, cfg: ReconstructionConfig, ctx: MethodContext) -> None:
        super().__init__()
        for name in ("student_aug", "teacher_aug"):
            if getattr(cfg, name) not in ("weak", "strong"):
                raise ConfigError(f"method.{name} must be 'weak' or 'strong', got '{getattr(cfg, name)}'")
        self.cfg = cfg
        self._student = [student]  # not a submodule: the method owns and checkpoints it
        self.fpn = FeatureExtractor(student.widths).to(ctx.device)
        dim = self.fpn.channels
        self.rep_head = representation_head(dim).to(ctx.device)
        self.teacher = EMATeacher(_Segmenter(student, self.fpn), cfg.ema_decay, warmup=False)
        c = ctx.num_classes
        self.bank = ClassMemoryBank([cfg.bank_size_bg] + [cfg.bank_size] * (c - 1), dim).to(ctx.device)
        self.grid = min(cfg.knn_grid, ctx.image_size)
        self.knn = FeatureQueue(cfg.knn_bank, dim * self.grid ** 2).to(ctx.device)

    @property
    def student(self) -> UNet:
        return self._student[0]

    # ------------------------------------------------------------------ step
    def losses(self, x_l: Tensor, y_l: Tensor, x_u: Tensor, step: StepInfo) -> Losses:
        cfg, g, n_l = self.cfg, step.rng(x_l.device), x_l.shape[0]
        with torch.no_grad():
            x_t = photometric(x_u, g) if cfg.teacher_aug == "strong" else x_u
            conf, pseudo = torch.softmax(self.teacher.module.net(x_t).float(), dim=1).max(dim=1)
        x_s = x_s2 = x_u
        if cfg.student_aug == "strong":
            x_mix, (pseudo, conf), _ = cutmix(x_u, [pseudo, conf], g)
            warp = random_deformation(x_u.shape[0], *x_u.shape[-2:], g, x_u.device, cfg.deform)
            x_mix, pseudo = warp.apply(x_mix), warp.apply(pseudo, "label")
            conf = warp.apply(conf[:, None], "prob")[:, 0]
            x_s, x_s2 = photometric(x_mix, g), photometric(x_mix, g)
        images, labels = torch.cat([x_l, x_s]), torch.cat([y_l, pseudo])
        out = self.student(images, features=True)
        logits = out.logits
        losses: Losses = {
            "loss_sup": ce_dice_loss(logits[:n_l], y_l, cfg.sup_weight),
            "loss_unsup": cfg.w_unsup * confident_ce(logits[n_l:], pseudo, conf, cfg.unsup_threshold),
        }
        if cfg.tailness or cfg.diversity:
            # fused maps before the last pixel-wise linear layers (see heads.FeatureExtractor.fuse):
            # the 496-channel representation is computed only at sampled pixels and pooled cells
            fused = self.fpn.fuse([out.bottleneck, *out.decoder])
            with torch.no_grad():
                t_logits, t_fused = self.teacher(images)
                t_prob = torch.softmax(t_logits.float(), dim=1)
            if cfg.tailness:
                s_prob = torch.softmax(logits.detach().float(), dim=1)
                tail = self.tailness(fused, t_fused, t_prob, s_prob, labels, n_l, step, g)
                losses["loss_tailness"] = cfg.w_tailness * tail
                losses["tailness"] = tail.detach()
            if cfg.diversity:  # unlabeled slices only, as the released code (rep_u, rep_u_teacher)
                s_emb = self.pooled(fused[n_l:], self.student_proj)
                with torch.no_grad():
                    t_emb = self.pooled(t_fused[n_l:], self.teacher_proj)
                div = nearest_neighbour_loss(s_emb, t_emb, self.knn.bank, cfg.knn_k, self.knn.valid())
                self.knn.push(t_emb)
                losses["loss_diversity"] = cfg.w_diversity * div
            del fused, t_fused  # 1.5 GB at 256 px, batch 24; the equivariance pass below does not read them
        if cfg.consistency_loss:
            if not cfg.symmetric_equivariance:
                # the equivariance pass reads only detached logits: backpropagate this pass first and
                # free its activations before the second one runs (peak 6.4 -> 5.8 GB at 256 px, batch 24)
                losses = step.backward_now(losses)
                del out
            conf_all = torch.cat([torch.ones_like(y_l, dtype=conf.dtype), conf])
            eqv = self.equivariance(torch.cat([x_l, x_s2]), logits, labels, conf_all, g)
            losses["loss_consistency"] = cfg.w_consistency * eqv
        return losses

    def after_step(self, step: StepInfo) -> None:
        self.teacher.update(_Segmenter(self.student, self.fpn), step.iteration)

    # ------------------------------------------------------------------ representations
    def student_proj(self, v: Tensor) -> Tensor:
        """Fused features (..., C) -> the student's representation: FPN output conv, then its head."""
        return pointwise([self.fpn.out, *self.rep_head], v.float())

    def teacher_proj(self, v: Tensor) -> Tensor:
        """Fused features -> the teacher's representation (its FPN output conv; no extra head)."""
        return pointwise([self.teacher.module.fpn.out], v.float())

    def pooled(self, fused: FusedMap, proj: Callable[[Tensor], Tensor]) -> Tensor:
        """The representation map average-pooled to ``knn_grid`` cells, flattened (the lean kNN key)."""
        return proj(fused.pooled(self.grid)).flatten(1)

    # ------------------------------------------------------------------ terms
    def equivariance(self, images: Tensor, logits: Tensor, labels: Tensor, conf: Tensor,
                     g: torch.Generator) -> Tensor:
        """``KL(T(sg(f(x))) ‖ f(T(x')))`` on confident foreground pixels (mask warped by ``T``), as the
        released code; with ``symmetric_equivariance`` also ``KL(sg(f(T(x'))) ‖ T(f(x)))``, the second
        term of the paper's Eq. 6 (each direction's target detached, so both maps are trained)."""
        n, _, h, w = images.shape
        t = random_spatial(n, h, w, g, images.device)
        pred_t = self.student(t.apply(images))
        mask = t.apply(((labels != 0) & (conf >= self.cfg.eqv_confidence)).float()[:, None], "prob")
        loss = masked_kl(pred_t, t.apply(logits.detach().float(), "prob"), mask)
        if self.cfg.symmetric_equivariance:
            loss = loss + masked_kl(t.apply(logits.float(), "prob"), pred_t.detach(), mask)
        return loss

    def tailness(self, fused: FusedMap, t_fused: FusedMap, t_prob: Tensor, s_prob: Tensor, labels: Tensor,
                 n_l: int, step: StepInfo, g: torch.Generator) -> Tensor:
        """Class-prototype contrast with memory-bank negatives (MONA's tailness / ACF term).

        ``labels``: ground truth then pseudo-labels; ``t_prob`` the teacher's probabilities (query and
        bank thresholds, ranks); ``s_prob`` the student's (detached), whose entropy on the unlabeled
        slices sets the reliable / unreliable percentiles, as ``train_arco_2d.py`` (``prob = prob_u``).
        A class with reliable pixels in the batch counts in the normaliser; its term is added when it
        has queries; fewer than two such classes give 0 (``valid_seg``, ``len(seg_num_list) <= 1``).
        Reads the fused maps only at the sampled pixels and as class sums (``FusedMap``), and projects
        only those (the projection is linear, so the mean of projections is the projected mean)."""
        cfg = self.cfg
        n, _, h, w = fused.shape
        hw = h * w
        alpha = cfg.entropy_percent * (1.0 - step.progress())
        ent = entropy_map(s_prob[n_l:]).flatten()
        # Python-float quantiles: a tensor of quantiles is range-checked on the device (a host sync)
        low_thr, high_thr = torch.quantile(ent, alpha / 100), torch.quantile(ent, 1 - alpha / 100)
        ones = torch.ones(n_l * hw, dtype=torch.bool, device=ent.device)
        low, high = torch.cat([ones, ent <= low_thr]), torch.cat([ones, ent >= high_thr])
        t_fused = t_fused.detach_float()

        prob_f = t_prob.permute(0, 2, 3, 1).reshape(-1, t_prob.shape[1])
        lab_f = labels.flatten()
        rank = prob_f.argsort(dim=1, descending=True).argsort(dim=1)  # rank of each class per pixel
        c_num = t_prob.shape[1]
        reliable_all = F.one_hot(lab_f, c_num).bool() & low[:, None]  # (N_pix, C)
        with torch.no_grad():  # class means of the teacher's fused features, all classes in one product
            sums = t_fused.class_sums(reliable_all.view(n, hw, c_num))  # (C_feat, C)
            protos = self.teacher_proj((sums / reliable_all.sum(0).clamp(min=1)).t())  # (C, D)
        draws = [sample_where(reliable_all[:, c] & (prob_f[:, c] > cfg.query_threshold), cfg.queries, g)
                 for c in range(c_num)]
        # one gather for every class's queries: its backward allocates one map-sized gradient, not C
        queries = self.student_proj(fused.gather(torch.cat([idx for idx, _ in draws]))).view(c_num, cfg.queries, -1)
        terms, present, queried = [], [], []
        for c, (_, valid) in enumerate(draws):
            negs = self.bank.sample(c, (cfg.negatives,), g)  # shared by the class's queries (see above)
            terms.append(prototype_contrast(queries[c], protos[c], negs, cfg.tau_contrast, weight=valid))
            present.append(reliable_all[:, c].any())  # a "valid class" of the released code
            queried.append(valid.any())
            hard = (lab_f != c) & (rank[:, c] < 3) & (prob_f[:, c] < cfg.hard_threshold) & high
            cand, valid_key = pick_where(hard, min(cfg.bank_writes, self.bank.sizes[c]), g)
            with torch.no_grad():
                self.bank.push(c, self.teacher_proj(t_fused.gather(cand)), valid_key)
        w = torch.stack(present).float()
        on = w * torch.stack(queried).float()
        loss = (torch.stack(terms) * on).sum() / w.sum().clamp(min=1.0)  # / valid_seg, as coded
        return loss * (w.sum() >= 2).float()  # U2PL: no contrast with fewer than two classes
