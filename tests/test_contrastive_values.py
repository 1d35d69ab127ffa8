"""Loss values of the contrastive frameworks and GLCon on fixed views, against their definitions
written out here with plain torch (the released code where there is one: MONA ``pretrain_2D.py`` /
``model_2D.py``, kNN-MoCo ``builder_ours.py: pull_topk``, ISD ``train_isd_plus.py``; BYOL's and
SimCLR's papers otherwise).

The networks are black boxes; the views are fixed (the random view functions are replaced), queues
hold a few keys and otherwise empty slots, so each test pins which network sees which view, what is
detached, which temperature goes where, which slots count and how the terms add up.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sslbench.method import METHODS, Batch, MethodContext, SSLMethod, StepInfo

C = 3
STEP = StepInfo("train", 3, 10)


def view_a(x: Tensor, g: Any = None) -> Tensor:
    return (0.8 * x + 0.1).flip(-1)


def view_b(x: Tensor, g: Any = None) -> Tensor:
    return (1.2 * x).clamp(0, 1).transpose(-1, -2)


def make(name: str, **cfg: Any) -> tuple[SSLMethod, Batch]:
    cls = METHODS.get(name)
    torch.manual_seed(0)
    ctx = MethodContext(in_channels=1, num_classes=C, image_size=32, device=torch.device("cpu"), base_width=4,
                        stage_iterations={"train": 10, "pretrain": 10})
    method = cls(dataclasses.replace(cls.Config(), **cfg), ctx)
    for m in method.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.p = 0.0
    method.train()
    g = torch.Generator().manual_seed(1)
    batch = Batch(torch.rand(2, 1, 32, 32, generator=g), torch.randint(0, C, (2, 32, 32), generator=g),
                  torch.rand(4, 1, 32, 32, generator=g))
    return method, batch


def close(got: Tensor | float, expected: Tensor | float, rtol: float = 2e-5) -> None:
    torch.testing.assert_close(torch.as_tensor(got, dtype=torch.float32).detach(),
                               torch.as_tensor(expected, dtype=torch.float32).detach(), rtol=rtol, atol=1e-6)


def ce_plus_dice(logits: Tensor, y: Tensor) -> Tensor:
    """MONA's ``supervised_loss = loss_dice + loss_ce`` (SSL4MIS's DiceLoss, no 0.5)."""
    p = torch.softmax(logits, dim=1)
    dice = sum(1 - (2 * (p[:, c] * (y == c)).sum() + 1e-5) / ((p[:, c] ** 2).sum() + (y == c).sum() + 1e-5)
               for c in range(p.shape[1])) / p.shape[1]
    return F.cross_entropy(logits, y) + dice


def cos(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise cosine similarities (N, D) x (K, D) -> (N, K)."""
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).t()


def fill(queue: Any, n: int, seed: int = 7) -> Tensor:
    keys = torch.randn(n, *queue.bank.shape[1:], generator=torch.Generator().manual_seed(seed))
    queue.push(keys)
    return F.normalize(keys, dim=-1)


@pytest.mark.parametrize("name", ["glcon", "mona", "simclr", "mocov2", "knn-moco", "byol", "isd"])
def test_supervised_scale_is_the_released_one(name: str) -> None:
    """Both MONA scripts use CE + Dice (no 0.5): every Table 5 row and MONA's stage 2 default to it."""
    assert METHODS.get(name).Config().sup_weight == 1.0


def test_simclr_value_and_sup_weight(monkeypatch: pytest.MonkeyPatch) -> None:
    from sslbench.methods import contrastive

    monkeypatch.setattr(contrastive, "contrastive_views", lambda x, g=None: (view_a(x), view_b(x)))
    method, batch = make("simclr")
    out = method.training_step(batch, STEP)
    z = torch.cat([method.embedder(view_a(batch.x_u)), method.embedder(view_b(batch.x_u))])
    sim = cos(z, z) / method.cfg.tau
    n = batch.x_u.shape[0]
    terms = []
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        terms.append(-(sim[i, pos] - torch.logsumexp(torch.cat([sim[i, :i], sim[i, i + 1:]]), 0)))
    close(out["loss_contrast"], torch.stack(terms).mean())
    close(out["loss_sup"], ce_plus_dice(method.student(batch.x_l), batch.y_l))
    half, _ = make("simclr", sup_weight=0.5)
    close(half.training_step(batch, STEP)["loss_sup"], 0.5 * ce_plus_dice(half.student(batch.x_l), batch.y_l))


def test_mocov2_value_with_a_partly_filled_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    from sslbench.methods import contrastive

    monkeypatch.setattr(contrastive, "contrastive_views", lambda x, g=None: (view_a(x), view_b(x)))
    method, batch = make("mocov2", queue=16)
    keys = fill(method.queue, 5)
    out = method.training_step(batch, STEP)
    q = method.embedder(view_a(batch.x_u))
    with torch.no_grad():
        k = method.key_encoder.module(view_b(batch.x_u))
    logits = torch.cat([(F.normalize(q, dim=1) * F.normalize(k, dim=1)).sum(1, keepdim=True), cos(q, keys)], 1)
    expected = F.cross_entropy(logits / 0.2, torch.zeros(4, dtype=torch.long))  # the 11 empty slots: no logit
    close(out["loss_contrast"], expected)
    method.after_step(STEP)
    assert int(method.queue.count) == 9                                     # this step's 4 keys went in


def test_knn_moco_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """``CE_moco + 0.4 L_aux``; L_aux's log-softmax runs over the queue entries only (``pull_topk`` on
    ``l_neg``), over k = 5 neighbours found in the backbone queue, never in an empty slot."""
    from sslbench.methods import contrastive

    monkeypatch.setattr(contrastive, "contrastive_views", lambda x, g=None: (view_a(x), view_b(x)))
    method, batch = make("knn-moco", queue=16)
    assert method.cfg.knn == 5
    keys, backbone = fill(method.queue, 7, seed=7), fill(method.backbone_queue, 7, seed=8)
    out = method.training_step(batch, STEP)
    feat = method.student(view_a(batch.x_u), features=True).bottleneck
    q = method.embedder.head(feat)
    with torch.no_grad():
        key_net = method.key_encoder.module
        k = key_net.head(key_net.net(view_b(batch.x_u), features=True).bottleneck)
    l_pos = (F.normalize(q, dim=1) * F.normalize(k, dim=1)).sum(1, keepdim=True)
    l_neg = cos(q, keys)
    moco = F.cross_entropy(torch.cat([l_pos, l_neg], 1) / 0.2, torch.zeros(4, dtype=torch.long))
    knn = cos(feat.mean(dim=(2, 3)), backbone).topk(5, dim=1).indices
    log_prob = torch.log_softmax(l_neg / 0.2, dim=1)
    aux = -log_prob.gather(1, knn).mean()
    close(out["loss_contrast"], moco + 0.4 * aux)


def test_byol_sums_its_two_symmetric_terms(monkeypatch: pytest.MonkeyPatch) -> None:
    from sslbench.methods import contrastive

    monkeypatch.setattr(contrastive, "contrastive_views", lambda x, g=None: (view_a(x), view_b(x)))
    method, batch = make("byol")
    out = method.training_step(batch, STEP)
    v1, v2 = view_a(batch.x_u), view_b(batch.x_u)
    with torch.no_grad():
        t1, t2 = method.target.module(v1), method.target.module(v2)
    p1, p2 = method.predictor(method.embedder(v1)), method.predictor(method.embedder(v2))
    regress = lambda p, z: (2 - 2 * F.cosine_similarity(p, z, dim=1)).mean()  # noqa: E731
    close(out["loss_contrast"], regress(p1, t2) + regress(p2, t1))


def test_isd_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """Teacher: the weak (trainer-augmented) batch at τ_t = 0.01; student: a strong view through the
    predictor at τ_s = 0.1; KL(p_t ‖ p_s) over the filled queue slots."""
    from sslbench.methods import contrastive

    monkeypatch.setattr(contrastive, "strong_view", lambda x, g=None: view_a(x))
    method, batch = make("isd", queue=16)
    keys = fill(method.queue, 6)
    out = method.training_step(batch, STEP)
    with torch.no_grad():
        k = method.teacher.module(batch.x_u)
    q = method.predictor(method.embedder(view_a(batch.x_u)))
    p_t = torch.softmax(cos(k, keys) / 0.01, dim=1)
    log_p_s = torch.log_softmax(cos(q, keys) / 0.1, dim=1)
    close(out["loss_contrast"], (p_t * (p_t.log() - log_p_s)).sum(1).mean(), rtol=1e-4)


def test_glcon_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """Global: bottleneck -> MLP -> predictor vs the teacher's MLP; local: the 49 output windows; both
    ``KL(p_t ‖ p_s)`` (τ_t 0.01, τ_s 0.1) over the filled bank slots; supervision CE + Dice."""
    from sslbench.heads import WindowHead
    from sslbench.methods import mona

    monkeypatch.setattr(mona, "photometric", lambda x, g=None: view_a(x))
    method, batch = make("glcon", bank=12)
    g_keys, l_keys = fill(method.global_bank, 5), fill(method.local_bank, 5)
    out = method.training_step(batch, STEP)
    x = batch.joint()
    s = method.student(view_a(x), features=True)
    q_global = method.global_predictor(method.embedder.head(s.bottleneck))
    q_local = method.local(s.logits, method.local_predictor)
    with torch.no_grad():
        body = method.teacher.module
        t = body["net"](x, features=True)
        k_global, k_local = body["global"](t.bottleneck), body["local"](t.logits)

    def kl(qv: Tensor, kv: Tensor, bank: Tensor) -> Tensor:
        if qv.dim() == 2:
            sq, sk = cos(qv, bank), cos(kv, bank)
        else:  # per window position: each against the bank's same window
            sq = torch.einsum("npd,kpd->npk", F.normalize(qv, dim=-1), F.normalize(bank, dim=-1))
            sk = torch.einsum("npd,kpd->npk", F.normalize(kv, dim=-1), F.normalize(bank, dim=-1))
        p_t = torch.softmax(sk / 0.01, dim=-1)
        return (p_t * (torch.log_softmax(sk / 0.01, -1) - torch.log_softmax(sq / 0.1, -1))).sum(-1).mean()

    assert q_local.shape == (6, WindowHead.positions(), C * 64)
    close(out["loss_global"], kl(q_global, k_global, g_keys), rtol=1e-4)
    close(out["loss_local"], kl(q_local, k_local, l_keys), rtol=1e-4)
    close(out["loss_sup"], ce_plus_dice(s.logits[:2], batch.y_l))


def test_glcon_local_head_as_released() -> None:
    """``ProjectionHead``: pooling, 1x1 conv C -> 2C, 1x1 conv 2C -> C; the predictor two 1x1 convs C -> C."""
    from sslbench.heads import WindowHead, window_predictor

    for c in (3, 4):
        head = WindowHead(c)
        assert [(m.in_channels, m.out_channels) for m in head.proj] == [(c, 2 * c), (2 * c, c)]
        assert [(m.in_channels, m.out_channels) for m in window_predictor(c)] == [(c, c), (c, c)]


def test_fpn_on_fixed_weights_as_released() -> None:
    """MONA's ``FeatureExtractor``: every conv without bias; x = conv(x) + x, bilinear (align_corners)
    to the next stage, concatenate, ... and a last conv (no residual) on the 496-channel concat."""
    from sslbench.heads import FeatureExtractor

    fpn = FeatureExtractor((16, 32, 64, 128, 256))
    assert all(m.bias is None for m in fpn.modules() if isinstance(m, nn.Conv2d))
    assert fpn.channels == 496 and sum(p.numel() for p in fpn.parameters()) == sum(
        c * c for c in (256, 384, 448, 480, 496))
    torch.manual_seed(0)
    feats = [torch.randn(1, c, s, s) for c, s in ((256, 2), (128, 4), (64, 8), (32, 16), (16, 32))]
    x = feats[0]
    for conv, nxt in zip(fpn.lateral, feats[1:]):
        x = F.conv2d(x, conv.weight) + x
        x = F.interpolate(x, size=nxt.shape[-2:], mode="bilinear", align_corners=True)
        x = torch.cat([x, nxt], 1)
    torch.testing.assert_close(fpn(feats), F.conv2d(x, fpn.out.weight), rtol=1e-4, atol=1e-5)


def test_pointwise_equals_convolving_then_picking() -> None:
    from sslbench.heads import pointwise, representation_head

    torch.manual_seed(0)
    convs = [nn.Conv2d(6, 5, 1), *representation_head(5)]
    fmap = torch.randn(2, 6, 7, 9)
    full = fmap
    for conv in convs:
        full = conv(full)
    pixels = [(0, 3, 4), (1, 6, 8), (1, 0, 0)]
    picked = torch.stack([fmap[b, :, i, j] for b, i, j in pixels])
    torch.testing.assert_close(pointwise(convs, picked), torch.stack([full[b, :, i, j] for b, i, j in pixels]))
    # and averaging regions commutes with it (the lean kNN key pools first, then projects)
    torch.testing.assert_close(pointwise(convs, fmap.mean(dim=(2, 3))), full.mean(dim=(2, 3)), rtol=1e-5, atol=1e-6)


def test_fill_counts_in_a_real_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """A framework's first step contrasts against nothing (the queue is empty: the term is 0), and its
    keys are then in the queue."""
    from sslbench.methods import contrastive

    monkeypatch.setattr(contrastive, "contrastive_views", lambda x, g=None: (view_a(x), view_b(x)))
    method, batch = make("mocov2", queue=16)
    out = method.training_step(batch, STEP)
    assert float(out["loss_contrast"].detach()) == pytest.approx(0.0, abs=1e-6)
    method.after_step(STEP)
    assert int(method.queue.count) == 4 and not math.isclose(float(method.training_step(batch, STEP)["loss_contrast"].detach()), 0.0)
