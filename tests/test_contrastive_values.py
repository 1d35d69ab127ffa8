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

from sslbench.method import METHODS, Batch, SSLMethod, StepInfo

from .conftest import tiny_method

C = 3
STEP = StepInfo("train", 3, 10)


def view_a(x: Tensor, g: Any = None) -> Tensor:
    return (0.8 * x + 0.1).flip(-1)


def view_b(x: Tensor, g: Any = None) -> Tensor:
    return (1.2 * x).clamp(0, 1).transpose(-1, -2)


def make(name: str, **cfg: Any) -> tuple[SSLMethod, Batch]:
    method = tiny_method(name, C, **cfg)
    with torch.no_grad():  # EMA copies that differ from the online network: using the wrong one shows
        for name in ("teacher", "key_encoder", "target"):
            ema = getattr(method, name, None)
            for p in (ema.parameters() if isinstance(ema, nn.Module) else ()):
                p.add_(0.05 * torch.randn_like(p))
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
    sim = cos(z, z) / 0.5                                             # SCS's medical setting
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
    method.after_step(STEP, out)
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
    method.after_step(STEP, out)
    assert int(method.queue.count) == int(method.backbone_queue.count) == 11   # both queues got the 4 keys


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
    from sslbench.methods.mona._heads import WindowHead
    from sslbench.methods.mona import glcon as mona

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
    from sslbench.methods.mona._heads import WindowHead, window_predictor

    for c in (3, 4):
        head = WindowHead(c)
        assert [(m.in_channels, m.out_channels) for m in head.proj] == [(c, 2 * c), (2 * c, c)]
        assert [(m.in_channels, m.out_channels) for m in window_predictor(c)] == [(c, c), (c, c)]


def test_fpn_on_fixed_weights_as_released() -> None:
    """MONA's ``FeatureExtractor``: every conv without bias; x = conv(x) + x, bilinear (align_corners)
    to the next stage, concatenate, ... and a last conv (no residual) on the 496-channel concat."""
    from sslbench.methods.mona._heads import FeatureExtractor

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
    from sslbench.methods.mona._heads import pointwise, representation_head

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
    method.after_step(STEP, out)
    assert int(method.queue.count) == 4 and not math.isclose(float(method.training_step(batch, STEP)["loss_contrast"].detach()), 0.0)


def _alternating(*views):  # noqa: ANN001, ANN202
    """A stand-in for a random view function: returns the given views in turn."""
    state = {"i": 0}

    def view(x: Tensor, g: Any = None, *args: Any, **kwargs: Any) -> Tensor:
        out = views[state["i"] % len(views)](x)
        state["i"] += 1
        return out

    return view


def _pretrain_batch(method: SSLMethod, batch: Batch) -> Batch:
    positions = torch.tensor([0.1, 0.3, 0.6, 0.9, 0.15, 0.8])            # partitions 0, 1, 2, 3, 0, 3
    return dataclasses.replace(batch, positions=positions)


def _info_nce_terms(anchor: Tensor, pos: Tensor, negs: Tensor, tau: float) -> Tensor:
    """-log(e^{s+/τ} / (e^{s+/τ} + Σ e^{s-/τ})) with cosine similarities; anchor, pos (D,), negs (M, D)."""
    s_pos = F.cosine_similarity(anchor, pos, dim=0) / tau
    s_neg = F.cosine_similarity(anchor[None], negs, dim=1) / tau
    return -(s_pos - torch.logsumexp(torch.cat([s_pos[None], s_neg]), 0))


def test_gcl_pretraining_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """Global G^D-: positives are the other samples of the same volume partition (and the other view),
    the denominator drops same-partition samples; local: 13 regions, positive the same region of the
    other view, negatives all other regions of both views; τ = 0.1."""
    from sslbench.methods import gcl

    monkeypatch.setattr(gcl, "strong_view", _alternating(view_a, view_b))
    monkeypatch.setattr(gcl, "photometric", _alternating(view_b, view_a))
    method, batch = make("gcl")
    batch = _pretrain_batch(method, batch)
    out = method.training_step(batch, StepInfo("pretrain", 0, 10))
    x = batch.joint()
    z = torch.cat([method.global_head(method.student(view_a(x), features=True).bottleneck),
                   method.global_head(method.student(view_b(x), features=True).bottleneck)])
    groups = (batch.positions * 4).long().repeat(2)
    terms = []
    for i in range(len(z)):
        for j in range(len(z)):
            if i != j and groups[i] == groups[j]:
                negs = z[groups != groups[i]]
                terms.append(_info_nce_terms(z[i], z[j], negs, 0.1))
    close(out["loss_global"], torch.stack(terms).mean(), rtol=1e-4)
    e1, e2 = method.regions(view_b(x)), method.regions(view_a(x))
    local = []
    for a, p in ((e1, e2), (e2, e1)):
        local.append(torch.stack([_info_nce_terms(a[b, i], p[b, i], torch.cat([a[b, [j for j in range(13) if j != i]],
                                                                                p[b, [j for j in range(13) if j != i]]]), 0.1)
                                  for b in range(len(x)) for i in range(13)]).mean())
    close(out["loss_local"], 0.5 * (local[0] + local[1]), rtol=1e-4)
    fine = method.training_step(batch, StepInfo("train", 0, 10))
    close(fine["loss_sup"], 0.5 * ce_plus_dice(method.student(batch.x_l), batch.y_l))


def test_scs_pretraining_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """SimCLR (τ 0.5) on every slice + SupCon (τ 0.1) on stride-4 pixels of two photometric views of the
    labeled slices: positives share the label, anchors are foreground pixels."""
    from sslbench.methods import scs

    monkeypatch.setattr(scs, "strong_view", _alternating(view_a, view_b))
    monkeypatch.setattr(scs, "photometric", _alternating(view_b, view_a))
    method, batch = make("scs")
    out = method.training_step(batch, StepInfo("pretrain", 0, 10))
    x = batch.joint()
    z = torch.cat([method.global_head(method.student(view_a(x), features=True).bottleneck),
                   method.global_head(method.student(view_b(x), features=True).bottleneck)])
    n = len(x)
    sim = cos(z, z) / 0.5
    nt = torch.stack([-(sim[i, (i + n) % (2 * n)] - torch.logsumexp(torch.cat([sim[i, :i], sim[i, i + 1:]]), 0))
                      for i in range(2 * n)]).mean()
    close(out["loss_global"], nt, rtol=1e-4)
    feats = []
    for view in (view_b, view_a):
        fmap = method.local_head(method.student(view(batch.x_l), features=True).decoder[-1])[:, :, ::4, ::4]
        feats.append(fmap.permute(0, 2, 3, 1).reshape(-1, fmap.shape[1]))
    f = torch.cat(feats)
    lab = batch.y_l[:, ::4, ::4].flatten().repeat(2)
    s = cos(f, f) / 0.1
    per_anchor = []
    for i in range(len(f)):
        pos = [j for j in range(len(f)) if j != i and lab[j] == lab[i]]
        if lab[i] == 0 or not pos:
            continue
        denom = torch.logsumexp(torch.cat([s[i, :i], s[i, i + 1:]]), 0)
        per_anchor.append(-torch.stack([s[i, j] - denom for j in pos]).mean())
    close(out["loss_local"], torch.stack(per_anchor).mean(), rtol=1e-4)


def test_plc_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dice (background included) on labeled slices + 0.1 L_local: per view, image and foreground class,
    anchors of the class against its mean in the same view and in the other view (positives), the other
    classes' means in the same view as negatives (a class absent from the image: a zero mean, cosine
    0), τ = 0.1; pseudo-labels from the labeller."""
    from sslbench.methods import plc
    from sslbench.nn.mask_sampling import pick_where

    class Flip:
        def apply(self, t: Tensor, kind: str = "image") -> Tensor:
            return t.flip(-1)

    monkeypatch.setattr(plc, "random_spatial", lambda *a, **k: Flip())
    monkeypatch.setattr(plc, "photometric", _alternating(view_a, view_b))
    picks = []
    monkeypatch.setattr(plc, "pick_where", lambda mask, k, g: picks.append(pick_where(mask, k, g)) or picks[-1])
    method, batch = make("plc")
    out = method.training_step(batch, STEP)
    with torch.no_grad():
        pseudo = method.labeller(batch.x_u).argmax(1).flip(-1)
    embs = [method.head(method.student(view(batch.x_u.flip(-1)), features=True).decoder[-1]) for view in (view_a, view_b)]
    onehot = F.one_hot(pseudo, C).permute(0, 3, 1, 2).flatten(2).float()        # (B, C, HW), both views alike
    means = [torch.einsum("bch,bdh->bcd", onehot, e.flatten(2)) / onehot.sum(2, keepdim=True).clamp(min=1) for e in embs]
    groups = []
    for v, e in enumerate(embs):
        idx, valid = picks[v]
        flat = e.flatten(2)
        for c in range(1, C):
            for pos_mean in (means[v], means[1 - v]):
                terms = [_info_nce_terms(flat[b, :, idx[b, c, a]], pos_mean[b, c],
                                         means[v][b, [k for k in range(C) if k != c]], 0.1)
                         for b in range(len(e)) for a in range(idx.shape[-1])
                         if valid[b, c, a] and onehot[b, c].sum() > 0]
                if terms:
                    groups.append(torch.stack(terms).mean())
    close(out["loss_local"], 0.1 * torch.stack(groups).mean(), rtol=1e-4)
    p = torch.softmax(method.student(batch.x_l), 1)
    dice = sum(1 - (2 * (p[:, c] * (batch.y_l == c)).sum() + 1e-5) / ((p[:, c] ** 2).sum() + (batch.y_l == c).sum() + 1e-5)
               for c in range(C)) / C
    close(out["loss_sup"], dice)


def test_plc_labeller_takes_the_students_weights_at_its_refresh_points() -> None:
    method, _ = make("plc")
    every = 10 // method.cfg.refresh
    with torch.no_grad():
        for p in method.student.parameters():
            p.add_(1.0)
    method.after_step(StepInfo("train", every - 2, 10), {})
    assert not torch.equal(method.labeller.decoder.head.weight, method.student.decoder.head.weight)
    method.after_step(StepInfo("train", every - 1, 10), {})
    assert all(torch.equal(a, b) for a, b in zip(method.labeller.state_dict().values(),
                                                  method.student.state_dict().values()))
