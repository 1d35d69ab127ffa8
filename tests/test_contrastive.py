"""Contrastive losses, heads and queues (SimCLR, MoCo v2, BYOL) on hand-checkable cases."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sslbench.banks import FeatureQueue
from sslbench.heads import GlobalHead
from sslbench.losses import cosine_regression, info_nce, nt_xent
from sslbench.transforms import contrastive_views


def test_nt_xent_hand_case() -> None:
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # each view's positive has cos 1, the two negatives cos 0: -log(e^{1/τ} / (e^{1/τ} + 2 e^0))
    tau = 0.5
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 2))
    assert float(nt_xent(z, z.clone(), tau)) == pytest.approx(expected, rel=1e-5)
    assert float(nt_xent(z, z.flip(0), tau)) > expected                # swapped pairs are worse


def test_info_nce_uses_the_key_as_positive_and_the_bank_as_negatives() -> None:
    q = torch.tensor([[1.0, 0.0]])
    bank = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    tau = 0.2
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + math.exp(0) + math.exp(-1 / tau)))
    assert float(info_nce(q, q.clone(), bank, tau)) == pytest.approx(expected, rel=1e-5)
    k = torch.tensor([[1.0, 0.0]], requires_grad=True)
    info_nce(q.requires_grad_(), k, bank, tau).backward()
    assert k.grad is None or k.grad.abs().sum() == 0                     # keys are targets, no gradient


def test_cosine_regression() -> None:
    p = torch.tensor([[1.0, 1.0]])
    assert float(cosine_regression(p, 3 * p)) == pytest.approx(0.0, abs=1e-6)
    assert float(cosine_regression(p, -p)) == pytest.approx(4.0)


def test_queue_is_fifo_and_normalised() -> None:
    q = FeatureQueue(4, 2)
    q.push(torch.tensor([[3.0, 0.0], [0.0, 2.0], [1.0, 1.0]]))
    q.push(torch.tensor([[0.0, -5.0], [-1.0, 0.0]]))
    assert torch.allclose(q.bank[0], torch.tensor([-1.0, 0.0]))           # wrapped around: oldest replaced
    assert torch.allclose(q.bank[3], torch.tensor([0.0, -1.0]))
    assert torch.allclose(q.bank.norm(dim=1), torch.ones(4)) and int(q.ptr) == 1
    assert set(dict(q.named_buffers())) == {"bank", "ptr"}              # checkpointed with the method


def test_global_head_and_views() -> None:
    head = GlobalHead(8, 16, 4)
    assert head(torch.rand(3, 8, 5, 5)).shape == (3, 4)
    x = torch.rand(4, 1, 16, 16)
    v1, v2 = contrastive_views(x, torch.Generator().manual_seed(0))
    assert v1.shape == x.shape and not torch.equal(v1, v2) and float(v1.min()) >= 0
    assert F.cosine_similarity(v1.flatten(1), v2.flatten(1)).mean() > 0.3     # still the same images
