"""Hand-checkable cases of each baseline's characteristic loss (the conformance kit covers the rest)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sslbench.methods.dan import FCDiscriminator
from sslbench.nn.losses import entropy_map
from sslbench.methods.cct import cross_consistency
from sslbench.methods.cps import cross_pseudo_losses
from sslbench.methods.dct import rotation_consistency
from sslbench.methods.uamt import masked_consistency
from sslbench.methods.urpc import rectified_pyramid_consistency
from sslbench.methods.ict import beta_lambdas, mix_halves
from sslbench.nn.augment import feature_dropout, feature_noise
from sslbench.testing import build
from sslbench.methods.uamt import mc_entropy


def logits_of(probs: torch.Tensor) -> torch.Tensor:
    return torch.log(probs)


def test_em_entropy_is_normalised() -> None:
    uniform = torch.full((1, 4, 2, 2), 0.25)
    assert torch.allclose(entropy_map(uniform), torch.ones(1, 2, 2), atol=1e-5)
    confident = F.one_hot(torch.zeros(1, 2, 2, dtype=torch.long), 4).permute(0, 3, 1, 2).float()
    assert entropy_map(confident).abs().max() < 1e-4


def test_cct_cross_consistency_hand_case() -> None:
    main = torch.tensor([0.5, 0.5]).view(1, 2, 1, 1)
    aux = [torch.tensor([0.5, 0.5]).view(1, 2, 1, 1), torch.tensor([0.9, 0.1]).view(1, 2, 1, 1)]
    got = cross_consistency(logits_of(main), [logits_of(a) for a in aux])
    assert float(got) == pytest.approx((0.0 + 0.16) / 2, rel=1e-5)   # ((0.4² + 0.4²) / 2) averaged with 0


def test_cct_perturbations() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 4, 4)
    noisy = feature_noise(x)
    ratio = (noisy / x - 1)
    assert ratio.abs().max() <= 0.3 + 1e-6 and torch.allclose(ratio[0], ratio[1], atol=1e-5)  # shared u
    x = torch.zeros(1, 2, 1, 3)
    x[0, :, 0] = torch.tensor([[1.0, 0.5, 0.95], [1.0, 0.5, 0.95]])
    for _ in range(20):  # γ in [0.7, 0.9]: the positions at >= 0.9 of the peak always go, 0.5 always stays
        kept = feature_dropout(x)
        assert kept[0, 0, 0, 0] == 0.0 and kept[0, 0, 0, 1] == 0.5 and kept[0, 0, 0, 2] == 0.0
    # SSL4MIS: x * (attention < γ max): on ReLU-like features only the most active few % are zeroed,
    # per sample (each sample's own maximum)
    feats = torch.relu(torch.randn(3, 8, 32, 32))
    feats[1] *= 10
    dropped = (feature_dropout(feats) == 0) & (feats != 0)
    frac = dropped.any(dim=1).float().mean(dim=(1, 2))
    assert (frac > 0).all() and (frac < 0.2).all()


def test_urpc_rectified_term() -> None:
    same = [logits_of(torch.tensor([0.7, 0.3]).view(1, 2, 1, 1))] * 4
    assert float(rectified_pyramid_consistency(same)) == pytest.approx(0.0, abs=1e-7)
    p = [torch.tensor([0.8, 0.2]), torch.tensor([0.4, 0.6])]
    mean = (p[0] + p[1]) / 2
    expected = 0.0
    for q in p:
        kl = float((mean * (mean.log() - q.log())).sum())
        sq = float(((mean - q) ** 2).mean())                       # mean over the class channel
        expected += sq * math.exp(-kl) / (math.exp(-kl) + 1e-8) + kl
    got = rectified_pyramid_consistency([logits_of(q.view(1, 2, 1, 1)) for q in p])
    assert float(got) == pytest.approx(expected / 2, rel=1e-5)


def test_dct_rotation_consistency_zero_for_an_equivariant_map() -> None:
    x = torch.rand(2, 1, 6, 6)
    f = lambda t: torch.cat([t, 1 - t], dim=1) * 3            # pixel-wise: commutes with rotation # noqa: E731
    for k in range(4):
        assert float(rotation_consistency(f(torch.rot90(x, k, (2, 3))), f(x), k)) == pytest.approx(0, abs=1e-7)
    shift = lambda t: f(torch.roll(t, 1, dims=3))            # not rotation-equivariant # noqa: E731
    assert float(rotation_consistency(shift(torch.rot90(x, 1, (2, 3))), shift(x), 1)) > 1e-4


def test_ict_mixed_target() -> None:
    lam = torch.tensor([0.25]).view(1, 1, 1, 1)
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(2, 2, 1, 1)
    assert torch.allclose(mix_halves(probs, lam).flatten(), torch.tensor([0.75, 0.25]))
    torch.manual_seed(0)
    lams = beta_lambdas(10000, 0.2, probs).flatten()
    assert 0 <= float(lams.min()) and float(lams.max()) <= 1
    assert float(lams.mean()) == pytest.approx(0.5, abs=0.02)
    assert float(((lams < 0.1) | (lams > 0.9)).float().mean()) > 0.5   # Beta(0.2, 0.2) is U-shaped


def test_uamt_masked_consistency_and_mc_entropy() -> None:
    dist = torch.tensor([1.0, 3.0, 5.0, 7.0]).view(1, 1, 2, 2)
    unc = torch.tensor([0.1, 0.9, 0.2, 0.8]).view(1, 1, 2, 2)
    cons, certain = masked_consistency(dist, unc, 0.5)
    assert float(cons) == pytest.approx((1 + 5) / (2 * 2))
    assert float(certain) == 0.5
    net = torch.nn.Conv2d(1, 3, 1)
    x = torch.rand(2, 1, 4, 4)
    mean, ent = mc_entropy(net, x, 8, lambda t: t)
    p = torch.softmax(net(x), dim=1)
    assert torch.allclose(mean, p, atol=1e-6)
    assert torch.allclose(ent, -(p * torch.log(p + 1e-6)).sum(1, keepdim=True), atol=1e-5)


def test_cps_cross_pseudo_labels() -> None:
    l1 = torch.tensor([[2.0, 0.0], [0.0, 1.0]]).view(2, 2, 1, 1)    # argmax 0, 1
    l2 = torch.tensor([[0.0, 3.0], [0.0, 1.0]]).view(2, 2, 1, 1)    # argmax 1, 1
    ps1, ps2 = cross_pseudo_losses(l1.requires_grad_(), l2.requires_grad_())
    assert float(ps1.detach()) == pytest.approx(float(F.cross_entropy(l1.detach(), torch.tensor([[[1]], [[1]]]))))
    assert float(ps2.detach()) == pytest.approx(float(F.cross_entropy(l2.detach(), torch.tensor([[[0]], [[1]]]))))
    g = torch.autograd.grad(ps1, [l1, l2], allow_unused=True)
    assert g[1] is None                                             # the pseudo labels are detached


def test_dan_discriminator_and_its_step() -> None:
    d = FCDiscriminator(num_classes=4)
    for size in (32, 64, 256):
        assert d(torch.rand(2, 4, size, size), torch.rand(2, 1, size, size)).shape == (2, 2)
    trainer = build("dan")
    method = trainer.method
    batch = trainer.next_batch()
    out = method.extra_step("disc", batch, trainer.step_info())
    out["loss_disc"].backward()
    assert all(p.grad is None for p in method.student.parameters())            # D step: segmenter frozen
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.disc.parameters())
    main_params = {id(p) for p in method.optim_parameters()}
    assert not main_params & {id(p) for p in method.disc.parameters()}          # D has its own optimiser
    assert type(trainer.extra["disc"]).__name__ == "Adam"


def test_cct_detach_switch() -> None:
    main = torch.tensor([0.6, 0.4]).view(1, 2, 1, 1).log().requires_grad_()
    aux = torch.tensor([0.2, 0.8]).view(1, 2, 1, 1).log().requires_grad_()
    g_main, _ = torch.autograd.grad(cross_consistency(main, [aux]), [main, aux])
    assert g_main.abs().sum() > 0                                          # SSL4MIS default
    g_main, g_aux = torch.autograd.grad(cross_consistency(main, [aux], detach_main=True), [main, aux],
                                        allow_unused=True)
    assert g_main is None and g_aux.abs().sum() > 0


def test_paired_wilcoxon(tmp_path) -> None:  # noqa: ANN001
    import json

    from sslbench.report.significance import paired_values, per_case_dice, wilcoxon_p

    def run(name: str, offset: float) -> str:
        folder = tmp_path / name
        folder.mkdir()
        distances = {"assd": 1.0, "hd95": 2.0}
        cases = [{"case": f"c{i}", "metrics": {"a": {"dice": 0.5 + 0.01 * i + offset, **distances},
                                               "b": {"dice": 0.5, **distances}}} for i in range(12)]
        (folder / "metrics.json").write_text(json.dumps({"metric_per_case": cases}))
        return str(folder)

    better, worse = run("better", 0.1), run("worse", 0.0)
    assert per_case_dice(better)["c0"] == pytest.approx(0.55)
    a, b = paired_values({0: better}, {0: worse, 1: worse})
    assert len(a) == 12 and (a > b).all()
    assert wilcoxon_p(a, b) < 0.01
    assert wilcoxon_p(a, a) == 1.0 and wilcoxon_p(a[:3], b[:3]) == 1.0
