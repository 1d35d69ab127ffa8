"""Losses shared by every method (SSL4MIS `utils/losses.py`)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def onehot(target: Tensor, classes: int, dtype: torch.dtype) -> Tensor:
    """(B, *spatial) labels -> (B, C, *spatial) one-hot, any number of spatial axes."""
    return F.one_hot(target.long(), classes).movedim(-1, 1).to(dtype)


def dice_loss(logits: Tensor, target: Tensor, eps: float = 1e-5) -> Tensor:
    """The supervised Dice of the track's release, batch-level V-Net Dice with squared denominators.

    2-D (B, C, H, W): SSL4MIS `DiceLoss(C)(softmax, target)`, every class including background,
    averaged over classes. 3-D (B, C, D, H, W): UA-MT's LA `dice_loss(softmax[:, 1], label == 1)`,
    the foreground only (for more than two classes, the mean over the foreground classes)."""
    probs = torch.softmax(logits.float(), dim=1)
    onehot_t = onehot(target, probs.shape[1], probs.dtype)
    dims = (0, *range(2, probs.dim()))
    inter = (probs * onehot_t).sum(dims)
    denom = (probs * probs).sum(dims) + (onehot_t * onehot_t).sum(dims)
    per_class = 1.0 - (2.0 * inter + eps) / (denom + eps)
    return per_class[1:].mean() if probs.dim() == 5 else per_class.mean()


def masked_dice_loss(probs: Tensor, target: Tensor, mask: Tensor, eps: float = 1e-5, reduce: bool = True) -> Tensor:
    """Dice over the pixels where ``mask`` is 1 (the whole batch pooled), per class including the
    background, averaged over classes (``reduce=False``: the per-class losses): UniMatch's
    ``DiceLoss(..., ignore=1 - mask)`` (eps 1e-5) and BCP's ``DiceLoss(..., mask)`` (eps 1e-10).
    ``probs`` (B, C, H, W) already softmaxed; ``mask`` (B, H, W) or (B, C, H, W) per class."""
    probs = probs.float()
    onehot_t = onehot(target, probs.shape[1], probs.dtype)
    m = mask.to(probs.dtype)
    m = m[:, None] if m.dim() == 3 else m
    dims = (0, 2, 3)
    inter = (probs * onehot_t * m).sum(dims)
    denom = (probs * probs * m).sum(dims) + (onehot_t * m).sum(dims)
    per_class = 1.0 - (2.0 * inter + eps) / (denom + eps)
    return per_class.mean() if reduce else per_class


def ce_dice_loss(logits: Tensor, target: Tensor, weight: float = 0.5) -> Tensor:
    """``weight * (CE + Dice)``: SSL4MIS's supervised loss with the default 0.5 (UA-MT's on LA in 3-D,
    see ``dice_loss``); MONA's released scripts use ``CE + Dice`` (weight 1, ``method.sup_weight``)."""
    return weight * (F.cross_entropy(logits.float(), target.long()) + dice_loss(logits, target))


def softmax_mse(student_logits: Tensor, teacher_probs: Tensor) -> Tensor:
    """Mean squared error between the student's softmax and a (detached) target distribution."""
    return softmax_mse_map(student_logits, teacher_probs).mean()


def entropy_map(probs: Tensor, eps: float = 1e-6) -> Tensor:
    """Per-pixel entropy normalised by log C (SSL4MIS ``entropy_loss`` before the mean), (B, H, W)."""
    c = probs.shape[1]
    return -(probs * torch.log(probs + eps)).sum(dim=1) / math.log(c)


def softmax_mse_map(student_logits: Tensor, teacher_probs: Tensor) -> Tensor:
    """Element-wise squared difference of softmax outputs (SSL4MIS ``softmax_mse_loss``), (B, C, H, W)."""
    return (torch.softmax(student_logits.float(), dim=1) - teacher_probs.float()) ** 2


def masked_kl(student_logits: Tensor, target_logits: Tensor, mask: Tensor, eps: float = 1e-7) -> Tensor:
    """``mean_b [ Σ_pix M · KL(softmax(target) ‖ softmax(student)) / (Σ_pix M + eps) ]`` with the target
    detached: MONA's equivariance loss when ``target_logits = T(sg(f(x)))``, ``student_logits = f(T(x))``
    and ``M`` the warped confidence mask (``(B, 1, H, W)`` or ``(B, H, W)``)."""
    log_t = torch.log_softmax(target_logits.detach().float(), dim=1)
    log_s = torch.log_softmax(student_logits.float(), dim=1)
    kl = (log_t.exp() * (log_t - log_s)).sum(dim=1)
    m = mask.reshape(kl.shape).to(kl.dtype)
    return ((kl * m).sum(dim=(1, 2)) / (m.sum(dim=(1, 2)) + eps)).mean()


def nt_xent(z1: Tensor, z2: Tensor, tau: float) -> Tensor:
    """SimCLR's normalised-temperature cross entropy over 2N views (positives: the other view)."""
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    n = z1.shape[0]
    sim = z @ z.t() / tau
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n, device=z.device), torch.arange(0, n, device=z.device)])
    return F.cross_entropy(sim, target)


def grouped_nt_xent(z1: Tensor, z2: Tensor, groups: Tensor, tau: float) -> Tensor:
    """GCL's global loss (Chaitanya et al. 2020, strategy G^D-): NT-Xent over the 2N views where every
    pair of samples of the same group (the volume partition a slice lies in) is a positive pair, and
    the denominator of an anchor leaves out all its group's samples but the positive:
    ``-log(exp(s⁺) / (exp(s⁺) + Σ_{other groups} exp(s⁻)))``, averaged over positive pairs. With one
    group per image this is SimCLR's NT-Xent."""
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    g = torch.cat([groups, groups])
    sim = z @ z.t() / tau
    same = g[:, None] == g[None, :]
    pos = same & ~torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
    neg_lse = torch.logsumexp(sim.masked_fill(same, float("-inf")), dim=1, keepdim=True)  # (2N, 1)
    per_pair = torch.logaddexp(sim, neg_lse) - sim  # -log(e^s / (e^s + Σ neg))
    w = pos.float()
    return (per_pair * w).sum() / w.sum().clamp(min=1.0)


# the logit of a memory-bank slot that holds no key yet: exp() of it is exactly 0 against any real
# logit, and a row of nothing but masked slots stays finite (uniform), so no NaN reaches a gradient
MASKED = -1e9


def mask_slots(logits: Tensor, valid: Tensor | None) -> Tensor:
    """Replace the logits of bank slots (last axis) that hold no key; ``valid`` is (K,) bool or None."""
    return logits if valid is None else logits.masked_fill(~valid, MASKED)


def moco_logits(q: Tensor, k: Tensor, bank: Tensor, tau: float, valid: Tensor | None = None) -> Tensor:
    """MoCo's logits (N, 1 + K): the positive key of the same image first, then the bank, over ``tau``
    (slots outside ``valid`` masked)."""
    q, k = F.normalize(q.float(), dim=1), F.normalize(k.detach().float(), dim=1)
    return torch.cat([(q * k).sum(1, keepdim=True) / tau, mask_slots(q @ bank.t().float() / tau, valid)], dim=1)


def info_nce(q: Tensor, k: Tensor, bank: Tensor, tau: float, valid: Tensor | None = None) -> Tensor:
    """MoCo's InfoNCE: the key of the same image against a bank of negatives (target index 0); with
    an empty bank it is 0 (the positive alone)."""
    logits = moco_logits(q, k, bank, tau, valid)
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


def cosine_regression(p: Tensor, z: Tensor) -> Tensor:
    """BYOL's ``2 - 2 cos(p, sg(z))``, averaged over the batch."""
    return (2 - 2 * F.cosine_similarity(p.float(), z.detach().float(), dim=1)).mean()


def relational_kl(q: Tensor, k: Tensor, bank: Tensor, tau_s: float, tau_t: float,
                  valid: Tensor | None = None) -> Tensor:
    """ISD's relational loss ``KL(p_t ‖ p_s)``: ``p_t = softmax(cos(k, bank) / tau_t)`` (teacher,
    detached, sharper with the smaller ``tau_t``) and ``p_s = softmax(cos(q, bank) / tau_s)``, both
    over the bank slots in ``valid`` only (an empty bank gives 0).

    ``q``, ``k``: (N, D) or (N, P, D) with a bank (K, D) or (K, P, D): with P positions (GLCon's local
    windows) each position is compared with the bank entries at the same position. Batch-mean over N
    (and P)."""
    q, k, bank = F.normalize(q.float(), dim=-1), F.normalize(k.detach().float(), dim=-1), bank.float()
    if q.dim() == 2:
        s_q, s_k = q @ bank.t(), k @ bank.t()
    else:
        s_q, s_k = torch.einsum("npd,kpd->npk", q, bank), torch.einsum("npd,kpd->npk", k, bank)
    log_p_s = torch.log_softmax(mask_slots(s_q / tau_s, valid), dim=-1)
    log_p_t = torch.log_softmax(mask_slots(s_k / tau_t, valid), dim=-1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=-1).mean()


def knn_positive_loss(logits: Tensor, neighbours: Tensor, valid: Tensor | None = None) -> Tensor:
    """kNN-MoCo's auxiliary loss: ``-mean_q (1/k) Σ_{j ∈ kNN(q)} log softmax(logits_q)_j`` where
    ``logits`` (N, K) are the query's (temperature-scaled) similarities to the queue entries (slots
    outside ``valid`` already masked) and ``neighbours`` (N, k) the indices of its nearest entries
    (found in another feature space). Neighbours in slots outside ``valid`` do not count; with none
    left the loss is 0."""
    log_p = torch.log_softmax(logits.float(), dim=1).gather(1, neighbours)
    if valid is None:
        return -log_p.mean()
    ok = valid[neighbours]
    per_query = -torch.where(ok, log_p, torch.zeros_like(log_p)).sum(1) / ok.sum(1).clamp(min=1)
    return per_query.mean()


def supcon(features: Tensor, labels: Tensor, tau: float, anchor_mask: Tensor | None = None) -> Tensor:
    """Supervised contrastive loss (Khosla et al. 2020) over N features (N, D) with labels (N,):
    positives are the other samples of the same label. ``anchor_mask`` (N,) selects the anchors (SCS:
    non-background pixels only); anchors without a positive are ignored. Averaged over anchors."""
    z = F.normalize(features.float(), dim=1)
    n = z.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = (z @ z.t() / tau).masked_fill(eye, float("-inf"))
    log_prob = torch.log_softmax(logits, dim=1).masked_fill(eye, 0.0)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    n_pos = pos.sum(1)
    per_anchor = -(log_prob * pos).sum(1) / n_pos.clamp(min=1)
    valid = n_pos > 0
    if anchor_mask is not None:
        valid = valid & anchor_mask
    w = valid.float()
    return (per_anchor * w).sum() / w.sum().clamp(min=1.0)


def prototype_contrast(queries: Tensor, positives: Tensor, negatives: Tensor, tau: float,
                       weight: Tensor | None = None, include_positive: bool = True) -> Tensor:
    """Contrast of queries against a positive and negatives with cosine similarities (MONA's tailness /
    ACF term, PLC's local term): ``-log exp(s⁺/τ) / (exp(s⁺/τ) + Σ exp(s⁻/τ))`` per query.

    ``queries`` (N, D); ``positives`` (N, D) or one shared (D,) prototype; ``negatives`` (N, M, D) per
    query or (M, D) shared; ``weight`` (N,) averages the queries (0 = not a query).
    ``include_positive=False`` drops the positive from the denominator (PLC as coded)."""
    q = F.normalize(queries.float(), dim=-1)
    p = F.normalize(positives.float(), dim=-1).expand_as(q)
    pos = (q * p).sum(-1, keepdim=True) / tau
    neg = F.normalize(negatives.float(), dim=-1)
    s_neg = (q @ neg.t() if neg.dim() == 2 else torch.einsum("nd,nmd->nm", q, neg)) / tau
    per_query = torch.logsumexp(torch.cat([pos, s_neg], 1) if include_positive else s_neg, dim=1) - pos[:, 0]
    if weight is None:
        return per_query.mean()
    w = weight.float()
    return (per_query * w).sum() / w.sum().clamp(min=1.0)


def confident_ce(logits: Tensor, target: Tensor, conf: Tensor, threshold: float) -> Tensor:
    """ReCo's unsupervised loss: pixel cross-entropy to pseudo-labels, each image weighted by the
    fraction of its pixels with confidence >= ``threshold``, averaged over pixels with a non-zero loss
    (``masked_select`` in ReCo; a masked sum here, so no host sync)."""
    ce = F.cross_entropy(logits.float(), target.long(), reduction="none")
    w = (conf >= threshold).float().mean(dim=(1, 2), keepdim=True)
    nonzero = (ce > 0).float()
    return (w * ce * nonzero).sum() / nonzero.sum().clamp(min=1.0)


def nearest_neighbour_loss(student: Tensor, teacher: Tensor, bank: Tensor, k: int = 5,
                           valid: Tensor | None = None) -> Tensor:
    """MONA's diversity ("revisiting") loss with gradient: the ``k`` bank entries nearest to the
    teacher's embedding (no gradient) are the neighbours; the loss is the mean ``2 - 2 cos`` of the
    student's embedding to them, so it falls as the student moves toward its neighbours. Slots
    outside ``valid`` are never neighbours; with fewer than ``k`` filled slots the mean runs over
    those there are, and an empty bank gives 0."""
    s = F.normalize(student.float().flatten(1), dim=1)
    with torch.no_grad():
        t = F.normalize(teacher.float().flatten(1), dim=1)
        sim = mask_slots(t @ bank.float().t(), valid)
        idx = sim.topk(min(k, bank.shape[0]), dim=1).indices  # nearest = largest cosine
    nb = bank.float()[idx]  # (N, k, D)
    dist = 2 - 2 * (s.unsqueeze(1) * nb).sum(-1)
    if valid is None:
        return dist.mean()
    ok = valid[idx]
    return (torch.where(ok, dist, torch.zeros_like(dist)).sum(1) / ok.sum(1).clamp(min=1)).mean()
