"""Losses shared by every method (SSL4MIS `utils/losses.py`)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def dice_loss(logits: Tensor, target: Tensor, eps: float = 1e-5) -> Tensor:
    """SSL4MIS `DiceLoss(C)(softmax, target)`: batch-level V-Net Dice with squared denominators,
    computed for every class including background and averaged over classes."""
    probs = torch.softmax(logits.float(), dim=1)
    onehot = F.one_hot(target.long(), probs.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    denom = (probs * probs).sum(dims) + (onehot * onehot).sum(dims)
    return (1.0 - (2.0 * inter + eps) / (denom + eps)).mean()


def ce_dice_loss(logits: Tensor, target: Tensor) -> Tensor:
    """The supervised loss of SSL4MIS: 0.5 * (CE + Dice)."""
    return 0.5 * (F.cross_entropy(logits.float(), target.long()) + dice_loss(logits, target))


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
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


def info_nce(q: Tensor, k: Tensor, bank: Tensor, tau: float) -> Tensor:
    """MoCo's InfoNCE: the key of the same image against a bank of negatives (target index 0)."""
    q, k = F.normalize(q.float(), dim=1), F.normalize(k.detach().float(), dim=1)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ bank.t().float()], dim=1) / tau
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


def cosine_regression(p: Tensor, z: Tensor) -> Tensor:
    """BYOL's ``2 - 2 cos(p, sg(z))``, averaged over the batch."""
    return (2 - 2 * F.cosine_similarity(p.float(), z.detach().float(), dim=1)).mean()
