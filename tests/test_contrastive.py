"""Contrastive losses, heads and queues (SimCLR, MoCo v2, BYOL) on hand-checkable cases."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sslbench.nn.banks import FeatureQueue
from sslbench.nn.heads import GlobalHead
from sslbench.nn.losses import cosine_regression, info_nce, nt_xent
from sslbench.nn.augment import contrastive_views


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
    k = torch.tensor([[0.6, 0.8]], requires_grad=True)                   # not parallel to q: cos has a slope
    info_nce(q.requires_grad_(), k, bank, tau).backward()
    assert k.grad is None or k.grad.abs().sum() == 0                     # keys are targets, no gradient
    assert q.grad is not None and float(q.grad.abs().sum()) > 0


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
    assert set(dict(q.named_buffers())) == {"bank", "ptr", "count"}     # checkpointed with the method
    assert int(q.count) == 4 and bool(q.valid().all())


def test_queue_counts_its_filled_slots_and_old_checkpoints_load_full() -> None:
    q = FeatureQueue(5, 2)
    assert not q.valid().any()
    q.push(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert q.valid().tolist() == [True, True, False, False, False]
    old = {"bank": q.bank.clone(), "ptr": torch.tensor(2)}              # saved before the fill count
    fresh = FeatureQueue(5, 2)
    fresh.load_state_dict(old)
    assert int(fresh.count) == 5                                        # they used every slot


def _framework_losses_with_queue(valid: torch.Tensor | None, g: torch.Generator) -> dict[str, torch.Tensor]:
    from sslbench.nn.losses import knn_positive_loss, moco_logits, nearest_neighbour_loss, relational_kl

    q, k = torch.randn(3, 8, generator=g), torch.randn(3, 8, generator=g)
    bank = F.normalize(torch.randn(6, 8, generator=g), dim=1)
    local_q, local_k = torch.randn(3, 4, 8, generator=g), torch.randn(3, 4, 8, generator=g)
    local_bank = F.normalize(torch.randn(6, 4, 8, generator=g), dim=-1)
    logits = moco_logits(q, k, bank, 0.2, valid)
    return {
        "info_nce": info_nce(q, k, bank, 0.2, valid),
        "knn": knn_positive_loss(logits[:, 1:], torch.tensor([[0, 1], [2, 3], [4, 5]]), valid),
        "isd": relational_kl(q, k, bank, 0.1, 0.01, valid),
        "glcon_local": relational_kl(local_q, local_k, local_bank, 0.1, 0.01, valid),
        "diversity": nearest_neighbour_loss(q, k, bank, 2, valid),
    }


def test_empty_queue_contributes_nothing_and_a_full_one_gives_the_unmasked_values() -> None:
    """MoCo's InfoNCE, kNN-MoCo's neighbours, ISD's and GLCon's relational KL, MONA's diversity kNN."""
    full = _framework_losses_with_queue(None, torch.Generator().manual_seed(0))
    masked_full = _framework_losses_with_queue(torch.ones(6, dtype=torch.bool), torch.Generator().manual_seed(0))
    empty = _framework_losses_with_queue(torch.zeros(6, dtype=torch.bool), torch.Generator().manual_seed(0))
    for name in full:
        assert float(masked_full[name]) == pytest.approx(float(full[name]), rel=1e-6), name
        assert float(empty[name]) == pytest.approx(0.0, abs=1e-6), name
        assert float(full[name]) > 1e-3, name


def test_partly_filled_queue_uses_only_its_keys() -> None:
    """Slots 0-2 filled: the losses equal those of a 3-slot bank holding just those keys."""
    from sslbench.nn.losses import knn_positive_loss, moco_logits, nearest_neighbour_loss, relational_kl

    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(2, 8, generator=g), torch.randn(2, 8, generator=g)
    bank = F.normalize(torch.randn(6, 8, generator=g), dim=1)
    valid = torch.tensor([True, True, True, False, False, False])
    assert float(info_nce(q, k, bank, 0.2, valid)) == pytest.approx(float(info_nce(q, k, bank[:3], 0.2)), rel=1e-6)
    assert float(relational_kl(q, k, bank, 0.1, 0.01, valid)) == pytest.approx(
        float(relational_kl(q, k, bank[:3], 0.1, 0.01)), rel=1e-6)
    logits = moco_logits(q, k, bank, 0.2, valid)[:, 1:]
    nb = torch.tensor([[0, 4], [1, 2]])                                 # 4 is empty: it does not count
    expected = -(torch.log_softmax(moco_logits(q, k, bank[:3], 0.2)[:, 1:], 1)[0, 0]
                 + 0.5 * torch.log_softmax(moco_logits(q, k, bank[:3], 0.2)[:, 1:], 1)[1, [1, 2]].sum()) / 2
    assert float(knn_positive_loss(logits, nb, valid)) == pytest.approx(float(expected), rel=1e-6)
    # the diversity kNN never picks an empty slot, however close it is
    teacher = bank[4:5].clone()
    got = nearest_neighbour_loss(teacher, teacher, bank, 1, valid)
    near = int((F.normalize(teacher, dim=1) @ bank[:3].t()).argmax())
    assert float(got) == pytest.approx(float(2 - 2 * F.cosine_similarity(teacher, bank[near:near + 1])), rel=1e-5)


def test_gradients_stay_finite_with_an_empty_queue() -> None:
    from sslbench.nn.losses import knn_positive_loss, moco_logits, relational_kl

    q = torch.randn(2, 8, requires_grad=True)
    k, bank = torch.randn(2, 8), F.normalize(torch.randn(4, 8), dim=1)
    empty = torch.zeros(4, dtype=torch.bool)
    total = (info_nce(q, k, bank, 0.2, empty) + relational_kl(q, k, bank, 0.1, 0.01, empty)
             + knn_positive_loss(moco_logits(q, k, bank, 0.2, empty)[:, 1:], torch.tensor([[0], [1]]), empty))
    total.backward()
    assert torch.isfinite(q.grad).all() and float(q.grad.abs().sum()) == pytest.approx(0.0, abs=1e-6)


def test_global_head_and_views() -> None:
    head = GlobalHead(8, 16, 4)
    assert head(torch.rand(3, 8, 5, 5)).shape == (3, 4)
    x = torch.rand(4, 1, 16, 16)
    v1, v2 = contrastive_views(x, torch.Generator().manual_seed(0))
    assert v1.shape == x.shape and not torch.equal(v1, v2) and float(v1.min()) >= 0
    assert F.cosine_similarity(v1.flatten(1), v2.flatten(1)).mean() > 0.3     # still the same images
