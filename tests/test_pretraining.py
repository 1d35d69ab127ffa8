"""Losses of the pre-training baselines (GCL, SCS, PLC) on hand-checked cases, and slice positions."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sslbench.nn.losses import grouped_nt_xent, nt_xent, supcon


def test_grouped_nt_xent_reduces_to_simclr_and_uses_partitions() -> None:
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    assert float(grouped_nt_xent(z1, z2, torch.arange(4), 0.1)) == pytest.approx(float(nt_xent(z1, z2, 0.1)), rel=1e-5)
    # two slices of one partition: pulling them together lowers the loss
    groups = torch.tensor([0, 0, 1, 2])
    far = grouped_nt_xent(z1, z2, groups, 0.1)
    z1b, z2b = z1.clone(), z2.clone()
    z1b[1], z2b[1] = z1[0], z2[0]
    assert float(grouped_nt_xent(z1b, z2b, groups, 0.1)) < float(far)


def test_grouped_nt_xent_by_hand() -> None:
    """Three samples, groups (0, 0, 1), unit vectors: one anchor's terms written out."""
    e = torch.eye(3)
    z1, z2 = e, e  # the two views are identical
    tau = 1.0
    loss = grouped_nt_xent(z1, z2, torch.tensor([0, 0, 1]), tau)
    # views: [e0, e1, e2, e0, e1, e2]; anchor e0 (group 0) has positives e1, e0', e1' and negatives e2, e2'
    s = lambda a, b: float(a @ b) / tau  # noqa: E731
    neg0 = math.log(2 * math.exp(s(e[0], e[2])))
    pair = lambda sp, neg: -sp + math.log(math.exp(sp) + math.exp(neg))  # noqa: E731
    a0 = [pair(s(e[0], e[1]), neg0), pair(s(e[0], e[0]), neg0), pair(s(e[0], e[1]), neg0)]
    # anchor e2 (group 1): positive e2' only, negatives: the four group-0 views
    neg2 = math.log(4 * math.exp(0.0))
    a2 = [pair(1.0, neg2)]
    expected = (4 * sum(a0) + 2 * sum(a2)) / (4 * 3 + 2 * 1)  # e0, e1 and their copies alike; e2 and e2'
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_supcon_by_hand() -> None:
    f = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([1, 1, 0])
    tau = 0.5
    z = F.normalize(f, dim=1)
    sim = z @ z.t() / tau
    # anchor 0: positive 1, others {1, 2}
    a0 = -(sim[0, 1] - torch.logsumexp(sim[0, [1, 2]], 0))
    # anchor 2 (background) has no positive; with anchor_mask it is excluded anyway
    assert float(supcon(f, labels, tau)) == pytest.approx(float(a0), rel=1e-5)  # anchors 0 and 1 alike
    assert float(supcon(f, labels, tau, anchor_mask=labels != 0)) == pytest.approx(float(a0), rel=1e-5)


def test_train_data_positions_follow_the_volumes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from sslbench.cache import prepare
    from sslbench.splits import split_labeled
    from sslbench.run.job import build_train_data

    ds = prepare("synthetic-cardiac", cache_root=tmp_path)
    lab, unl = split_labeled(ds, 10, 0, "paper")
    data = build_train_data(ds, lab, unl, 32, torch.device("cpu"))
    _, _, owner = ds.train_slices(32)
    owner = np.asarray(owner)
    pos = data.positions.numpy()
    for case in np.unique(owner)[:3]:
        p = pos[owner == case]
        depth = len(p)
        assert np.allclose(p, (np.arange(depth) + 0.5) / depth)


def test_gcl_local_loss_contrasts_each_region_with_the_other_regions_of_both_views() -> None:
    """By hand: anchor region i of one view, positive region i of the other view, negatives every
    other region of both views; -log(e^{s+/τ} / (e^{s+/τ} + Σ e^{s-/τ})), mean, both directions."""
    from sslbench.methods.gcl import other_indices
    from sslbench.testing import build

    assert other_indices(4, torch.device("cpu")).tolist() == [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]]
    method = build("gcl").method
    torch.manual_seed(0)
    e1, e2 = torch.randn(2, 5, 6), torch.randn(2, 5, 6)
    tau = method.cfg.tau
    cos = lambda u, v: float(F.cosine_similarity(u, v, dim=0))  # noqa: E731
    directions = []
    for a, p in ((e1, e2), (e2, e1)):
        terms = []
        for b in range(2):
            for i in range(5):
                pos = math.exp(cos(a[b, i], p[b, i]) / tau)
                neg = sum(math.exp(cos(a[b, i], v[b, j]) / tau) for v in (a, p) for j in range(5) if j != i)
                terms.append(-math.log(pos / (pos + neg)))
        directions.append(sum(terms) / len(terms))
    assert float(method.local_loss(e1, e2)) == pytest.approx(0.5 * sum(directions), rel=1e-5)
