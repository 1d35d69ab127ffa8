"""MONA's stage-2 terms pinned directly (``sslbench.methods.mona._anatomy``) against the released definitions
(``train_arco_2d.py``, ``loss_helper.py: compute_contra_memobank_loss``, ReCo's unsupervised loss).

The tailness test makes every representation carry its pixel's index (identity projections), so the
pixels chosen as queries, averaged into prototypes and written to the bank can be read back and
checked against the rules, with student and teacher probabilities that disagree.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from sslbench.methods.mona._anatomy import AnatomicalReconstruction, ReconstructionConfig
from sslbench.methods.mona._fused import FusedMap
from sslbench.nn.losses import confident_ce
from sslbench.method import MethodContext, StepInfo
from sslbench.nn.unet import build_unet

C, N_L, N_U, S = 4, 2, 2, 16


def _reco(**cfg: object) -> AnatomicalReconstruction:
    torch.manual_seed(0)
    ctx = MethodContext(in_channels=1, num_classes=C, image_size=S, device=torch.device("cpu"), base_width=4)
    config = dataclasses.replace(ReconstructionConfig(), queries=16, negatives=8, bank_size=64, bank_size_bg=64,
                                 bank_writes=32, **cfg)
    return AnatomicalReconstruction(build_unet(1, C, 4), config, ctx)


def _identity_projections(reco: AnatomicalReconstruction) -> int:
    dim = reco.fpn.channels
    eye = torch.eye(dim).view(dim, dim, 1, 1)
    with torch.no_grad():
        for conv in (reco.fpn.out, reco.teacher.module.fpn.out, *reco.rep_head):
            conv.weight.copy_(eye)
    return dim


def _entropy(p: Tensor) -> Tensor:
    return -(p * torch.log(p + 1e-6)).sum(1)


def test_tailness_queries_prototypes_and_bank_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    import sslbench.methods.mona._anatomy as anatomy

    reco = _reco()
    dim = _identity_projections(reco)
    n = N_L + N_U
    g = torch.Generator().manual_seed(3)
    index = torch.arange(1, n * S * S + 1, dtype=torch.float32).view(n, 1, S, S)   # pixel id + 1
    fused = torch.cat([index, torch.randn(n, dim - 1, S, S, generator=g)], 1).requires_grad_()
    t_fused = torch.cat([index, torch.randn(n, dim - 1, S, S, generator=g)], 1)
    labels = torch.randint(0, C, (n, S, S), generator=g)
    t_logits = 4 * torch.randn(n, C, S, S, generator=g)
    t_logits[:, C - 1] = -20.0     # the teacher never believes in the last class: no queries, no bank writes
    t_prob = torch.softmax(t_logits, 1)
    s_prob = torch.softmax(4 * torch.randn(n, C, S, S, generator=g), 1)               # disagrees with t_prob
    calls, writes = [], []
    real = anatomy.prototype_contrast

    def spy(queries, positives, negatives, tau, weight=None, include_positive=True):  # noqa: ANN001, ANN202
        calls.append((queries.detach(), positives.detach(), negatives.detach(), weight.clone()))
        return real(queries, positives, negatives, tau, weight=weight, include_positive=include_positive)

    monkeypatch.setattr(anatomy, "prototype_contrast", spy)
    monkeypatch.setattr(reco.bank, "push", lambda c, feats, valid: writes.append((c, feats.detach(), valid.clone())))
    loss = reco.tailness(FusedMap(fused), FusedMap(t_fused), t_prob, s_prob, labels, N_L, StepInfo("train", 0, 10), g)

    flat = lambda t: t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])  # noqa: E731  (pixels, channels)
    pix_label, pix_t = labels.flatten(), flat(t_prob)
    ent_u = _entropy(s_prob[N_L:]).flatten()                   # the student's entropy, unlabeled only
    alpha = 20.0                                               # 20 % at iteration 0 of 10
    low_thr, high_thr = torch.quantile(ent_u, alpha / 100), torch.quantile(ent_u, 1 - alpha / 100)
    labeled = torch.arange(n * S * S) < N_L * S * S
    low = labeled | torch.cat([torch.zeros(N_L * S * S, dtype=torch.bool), ent_u <= low_thr])
    high = labeled | torch.cat([torch.zeros(N_L * S * S, dtype=torch.bool), ent_u >= high_thr])
    rank = pix_t.argsort(1, descending=True).argsort(1)
    assert len(calls) == C and {c for c, _, _ in writes} == set(range(C))
    present, terms = [], []
    for c in range(C):
        queries, proto, negs, weight = calls[c]
        reliable = (pix_label == c) & low
        present.append(bool(reliable.any()))
        # prototype: the teacher's representation averaged over the class's reliable pixels
        torch.testing.assert_close(proto, flat(t_fused)[reliable].mean(0))
        # queries: reliable pixels of the class with teacher p_c > 0.3
        chosen = queries[weight][:, 0].long() - 1
        allowed = reliable & (pix_t[:, c] > 0.3)
        assert bool(allowed[chosen].all()) and (len(chosen) > 0) == bool(allowed.any())
        assert (len(chosen) > 0) == (c < C - 1)
        torch.testing.assert_close(queries[weight], flat(fused)[chosen])
        terms.append(real(queries, proto, negs, 0.5, weight=weight) if weight.any() else torch.tensor(0.0))
        # bank writes: other classes' pixels, teacher p_c < 0.97, c among its top 3, unreliable if unlabeled
        _, feats, valid = next(w for w in writes if w[0] == c)
        written = feats[valid][:, 0].long() - 1
        hard = (pix_label != c) & (pix_t[:, c] < 0.97) & (rank[:, c] < 3) & high
        assert bool(hard[written].all()) and (len(written) > 0) == bool(hard.any()) == (c < C - 1)
        torch.testing.assert_close(feats[valid], flat(t_fused)[written])
    assert sum(present) == C                                    # the last class: present, never queried
    # normaliser: the classes with reliable pixels (valid_seg), as coded, queried or not
    expected = sum(t for t, p in zip(terms, present) if p) / sum(present)
    torch.testing.assert_close(loss.detach(), torch.as_tensor(expected).float().detach())
    assert float(loss.detach()) > 0
    loss.backward()                                             # the queries train the student's features
    assert float(fused.grad.abs().sum()) > 0


def test_tailness_is_zero_with_fewer_than_two_classes() -> None:
    reco = _reco()
    dim = _identity_projections(reco)
    n = N_L + N_U
    g = torch.Generator().manual_seed(0)
    labels = torch.ones(n, S, S, dtype=torch.long)              # one class everywhere
    probs = torch.softmax(torch.randn(n, C, S, S, generator=g), 1)
    fused = torch.randn(n, dim, S, S, generator=g, requires_grad=True)
    loss = reco.tailness(FusedMap(fused), FusedMap(fused.detach()), probs, probs, labels, N_L,
                         StepInfo("train", 0, 10), g)
    assert float(loss.detach()) == 0.0


def test_confident_ce_is_recos_unsupervised_loss() -> None:
    """``train_arco_2d.compute_unsupervised_loss``: per image, the fraction of pixels with confidence
    >= 0.97 weighs its pixel CE; mean over the pixels whose weighted CE is > 0."""
    logits = torch.tensor([[[[2.0, 0.0], [0.0, 1.0]], [[0.0, 3.0], [1.0, 1.0]]],
                           [[[0.5, 0.0], [4.0, 0.0]], [[0.0, 0.0], [0.0, 2.0]]]])      # (2, 2, 2, 2)
    target = torch.tensor([[[0, 1], [1, 0]], [[0, 1], [0, 1]]])
    conf = torch.tensor([[[0.99, 0.5], [0.98, 0.1]], [[0.2, 0.3], [0.97, 0.96]]])
    ce = F.cross_entropy(logits, target, reduction="none")
    weighting = torch.tensor([2 / 4, 1 / 4])
    weighted = weighting[:, None, None] * ce
    expected = weighted[weighted > 0].mean()
    assert float(confident_ce(logits, target, conf, 0.97)) == pytest.approx(float(expected), rel=1e-6)
    # a pixel with zero loss (a perfect prediction) does not count in the mean
    perfect = logits.clone()
    perfect[0, :, 0, 0] = torch.tensor([1e4, -1e4])
    ce_p = F.cross_entropy(perfect, target, reduction="none")
    w_p = weighting[:, None, None] * ce_p
    assert float(confident_ce(perfect, target, conf, 0.97)) == pytest.approx(float(w_p[w_p > 0].mean()), rel=1e-6)


def test_symmetric_equivariance_adds_the_second_direction_of_eq_6() -> None:
    from sslbench.nn.augment import default_generator

    one, both = _reco(), _reco(symmetric_equivariance=True)
    both.load_state_dict(one.state_dict())
    both._student[0].load_state_dict(one.student.state_dict())
    images = torch.rand(3, 1, S, S)
    labels = torch.randint(1, C, (3, S, S))
    conf = torch.ones(3, S, S)
    results = []
    for reco in (one, both):
        logits = reco.student(images)
        torch.manual_seed(5)
        results.append(reco.equivariance(images, logits, labels, conf, default_generator(images.device)))
    assert float(results[1].detach()) > float(results[0].detach()) > 0
    # the one-directional term's target is detached: the original prediction gets no gradient from it
    logits = one.student(images).detach().requires_grad_()
    torch.manual_seed(5)
    one.equivariance(images, logits, labels, conf, default_generator(images.device)).backward()
    assert logits.grad is None or float(logits.grad.abs().sum()) == 0.0
    logits = both.student(images).detach().requires_grad_()
    torch.manual_seed(5)
    both.equivariance(images, logits, labels, conf, default_generator(images.device)).backward()
    assert float(logits.grad.abs().sum()) > 0


@pytest.mark.parametrize("student,teacher", [("weak", "weak"), ("weak", "strong"), ("strong", "weak"),
                                             ("strong", "strong")])
def test_augmentation_pairs_feed_the_networks_what_they_say(student: str, teacher: str) -> None:
    """The teacher's pseudo-label pass sees the loaded batch (weak) or a photometric view (strong);
    the student sees the same batch (weak) or CutMix + deformation + photometric (strong)."""
    reco = _reco(student_aug=student, teacher_aug=teacher)
    seen: dict[str, Tensor] = {}
    def record(name: str, part: slice):  # noqa: ANN202  (a pre-hook returning None leaves the input alone)
        return lambda module, args: None if name in seen else seen.__setitem__(name, args[0][part].clone())

    reco.teacher.module.net.register_forward_pre_hook(record("teacher", slice(None)))
    reco.student.register_forward_pre_hook(record("student", slice(N_L, None)))
    g = torch.Generator().manual_seed(0)
    x_l, y_l = torch.rand(N_L, 1, S, S, generator=g), torch.randint(0, C, (N_L, S, S), generator=g)
    x_u = torch.rand(N_U, 1, S, S, generator=g)
    torch.manual_seed(1)
    reco.losses(x_l, y_l, x_u, StepInfo("train", 0, 10))
    assert torch.equal(seen["teacher"], x_u) == (teacher == "weak")
    assert torch.equal(seen["student"], x_u) == (student == "weak")
    if student == teacher == "strong":
        assert not torch.equal(seen["student"], seen["teacher"])


def test_diversity_uses_the_unlabeled_slices_only() -> None:
    reco = _reco(tailness=False, consistency_loss=False)
    g = torch.Generator().manual_seed(0)
    x_l, y_l = torch.rand(N_L, 1, S, S, generator=g), torch.randint(0, C, (N_L, S, S), generator=g)
    x_u = torch.rand(3, 1, S, S, generator=g)
    first = reco.losses(x_l, y_l, x_u, StepInfo("train", 0, 10))
    assert float(first["loss_diversity"].detach()) == 0.0      # an empty bank contributes nothing
    assert int(reco.knn.count) == 3                            # then holds the three unlabeled slices' keys
    second = reco.losses(x_l, y_l, x_u, StepInfo("train", 1, 10))
    assert float(second["loss_diversity"].detach()) > 0 and int(reco.knn.count) == 6


def test_every_stage_2_term_is_a_positive_loss_with_its_weight() -> None:
    """CE, InfoNCE, KL and 2 - 2 cos are >= 0: each term, times its λ, is positive once banks hold keys."""
    reco = _reco(query_threshold=0.0, unsup_threshold=0.0, eqv_confidence=0.0)
    g = torch.Generator().manual_seed(0)
    x_l, y_l = torch.rand(N_L, 1, S, S, generator=g), torch.randint(0, C, (N_L, S, S), generator=g)
    x_u = torch.rand(N_U, 1, S, S, generator=g)
    torch.manual_seed(0)
    reco.losses(x_l, y_l, x_u, StepInfo("train", 0, 10))       # fills the banks
    out = reco.losses(x_l, y_l, x_u, StepInfo("train", 1, 10))
    for key in ("loss_sup", "loss_unsup", "loss_tailness", "loss_consistency", "loss_diversity"):
        assert float(out[key].detach()) > 0, key
    close = lambda a, b: abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(b)))  # noqa: E731
    assert close(out["loss_tailness"].detach(), 0.01 * out["tailness"])


def test_tailness_on_the_factored_map_equals_the_released_full_map() -> None:
    """The FPN's half-resolution map plus the finest stage give the same loss, gradients and bank
    writes as the (B, 496, H, W) map the released code builds."""
    reco = _reco()
    n = N_L + N_U
    g = torch.Generator().manual_seed(7)
    coarse = torch.randn(n, 12, S // 2, S // 2, generator=g, requires_grad=True)
    fine = torch.randn(n, 4, S, S, generator=g, requires_grad=True)
    reco.fpn.out = torch.nn.Conv2d(16, 16, 1, bias=False)
    reco.teacher.module.fpn.out = torch.nn.Conv2d(16, 16, 1, bias=False)
    reco.rep_head = torch.nn.Sequential(torch.nn.Conv2d(16, 16, 1, bias=False))
    reco.bank = type(reco.bank)([64] * C, 16)
    labels = torch.randint(0, C, (n, S, S), generator=g)
    probs = torch.softmax(3 * torch.randn(n, C, S, S, generator=g), 1)
    t_coarse, t_fine = torch.randn(n, 12, S // 2, S // 2, generator=g), torch.randn(n, 4, S, S, generator=g)
    state = {k: v.clone() for k, v in reco.bank.state_dict().items()}
    results = []
    for factored in (True, False):
        reco.bank.load_state_dict(state)
        student, teacher = FusedMap(fine, coarse), FusedMap(t_fine, t_coarse)
        if not factored:
            student, teacher = FusedMap(student.full()), FusedMap(teacher.full())
        loss = reco.tailness(student, teacher, probs, probs, labels, N_L, StepInfo("train", 3, 10),
                             torch.Generator().manual_seed(1))
        grads = torch.autograd.grad(loss, [coarse, fine])
        results.append((loss.detach(), grads, {k: v.clone() for k, v in reco.bank.state_dict().items()}))
    (l1, g1, b1), (l2, g2, b2) = results
    assert float(l1) > 0
    torch.testing.assert_close(l1, l2)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)
    for k in b1:
        torch.testing.assert_close(b1[k], b2[k])
