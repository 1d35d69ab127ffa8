"""MONA's losses, heads and banks on small hand-checked cases, its stages and ablation switches."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sslbench.methods.mona._banks import ClassMemoryBank
from sslbench.methods.mona._heads import FeatureExtractor, WindowHead
from sslbench.nn.losses import knn_positive_loss, nearest_neighbour_loss, prototype_contrast, relational_kl
from sslbench.method import METHODS
from sslbench.methods.contrastive import FINETUNE_CONFORMANCE
from sslbench.methods.mona.glcon import MONA
from sslbench.testing import build, check_gradients


def test_acf_with_a_known_prototype() -> None:
    """A query equal to its class prototype, negatives orthogonal to it: -log(e^(1/τ) / (e^(1/τ) + M))."""
    tau, m = 0.5, 4
    proto = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0])
    negs = torch.eye(5)[1:]  # (M, D), all orthogonal to the prototype
    loss = prototype_contrast(proto[None], proto, negs, tau)
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + m))
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    # per-query negatives give the same value; a query away from its prototype costs more
    assert float(prototype_contrast(proto[None], proto, negs[None], tau)) == pytest.approx(expected, rel=1e-6)
    away = torch.tensor([[0.6, 0.8, 0.0, 0.0, 0.0]])
    assert float(prototype_contrast(away, proto, negs, tau)) > expected
    # weights select the queries that count; PLC's variant leaves the positive out of the denominator
    both = torch.stack([proto, away[0]])
    assert float(prototype_contrast(both, proto, negs, tau, weight=torch.tensor([True, False]))) == pytest.approx(expected)
    assert float(prototype_contrast(proto[None], proto, negs, tau, include_positive=False)) == pytest.approx(
        -(1 / tau - math.log(m)), rel=1e-6)


def test_isd_kl_direction_and_temperatures() -> None:
    g = torch.Generator().manual_seed(0)
    q, k, bank = torch.randn(3, 8, generator=g), torch.randn(3, 8, generator=g), F.normalize(torch.randn(5, 8, generator=g), dim=1)
    tau_s, tau_t = 0.1, 0.01
    p_t = torch.softmax(F.normalize(k, dim=1) @ bank.t() / tau_t, dim=1)
    log_p_s = torch.log_softmax(F.normalize(q, dim=1) @ bank.t() / tau_s, dim=1)
    expected = (p_t * (p_t.log() - log_p_s)).sum(1).mean()  # KL(p_t ‖ p_s): the teacher is the target
    assert float(relational_kl(q, k, bank, tau_s, tau_t)) == pytest.approx(float(expected), rel=1e-5)
    p_s = log_p_s.exp()
    reverse = (p_s * (log_p_s - p_t.log())).sum(1).mean()
    assert float(expected) != pytest.approx(float(reverse), rel=1e-2)
    p_t_at_tau_s = torch.softmax(F.normalize(k, dim=1) @ bank.t() / tau_s, dim=1)
    entropy = lambda p: -(p * p.clamp(min=1e-30).log()).sum(1)  # noqa: E731
    assert bool((entropy(p_t) < entropy(p_t_at_tau_s)).all())  # tau_t = 0.01 makes the target sharper
    swapped = relational_kl(q, k, bank, tau_t, tau_s)  # which temperature goes where matters
    assert float(swapped) != pytest.approx(float(expected), rel=1e-2)
    # identical embeddings and temperatures: zero; the teacher side carries no gradient
    assert float(relational_kl(q, q, bank, 0.1, 0.1)) == pytest.approx(0.0, abs=1e-6)
    q.requires_grad_(True)
    k.requires_grad_(True)
    relational_kl(q, k, bank, tau_s, tau_t).backward()
    assert q.grad is not None and k.grad is None
    # per-position (local windows): each window against the bank's same window
    ql, kl, bl = torch.randn(2, 3, 4), torch.randn(2, 3, 4), torch.randn(6, 3, 4)
    per_pos = [relational_kl(ql[:, p], kl[:, p], F.normalize(bl[:, p], dim=1), tau_s, tau_t) for p in range(3)]
    assert float(relational_kl(ql, kl, F.normalize(bl, dim=-1), tau_s, tau_t)) == pytest.approx(
        float(torch.stack(per_pos).mean()), rel=1e-5)


def test_knn_loss_decreases_toward_the_neighbours_and_has_gradient() -> None:
    bank = F.normalize(torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 0.0, 1.0]]), dim=1)
    teacher = torch.tensor([[1.0, 0.05, 0.0]])  # its two nearest entries are rows 0 and 1
    losses = []
    for t in torch.linspace(0, 1, 5):
        student = ((1 - t) * torch.tensor([0.0, 0.0, 1.0]) + t * torch.tensor([1.0, 0.05, 0.0]))[None]
        losses.append(float(nearest_neighbour_loss(student, teacher, bank, k=2)))
    assert all(a > b for a, b in zip(losses, losses[1:])), losses
    s = torch.tensor([[0.0, 1.0, 0.0]], requires_grad=True)
    nearest_neighbour_loss(s, teacher, bank, k=2).backward()
    assert s.grad is not None and float(s.grad.abs().sum()) > 0


def test_knn_moco_auxiliary_loss() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    neighbours = torch.tensor([[1, 2]])
    log_p = torch.log_softmax(logits, dim=1)[0]
    assert float(knn_positive_loss(logits, neighbours)) == pytest.approx(float(-(log_p[1] + log_p[2]) / 2))


def test_class_memory_bank_is_a_fifo_per_class() -> None:
    bank = ClassMemoryBank([3, 2], dim=2, dtype=torch.float32)
    assert torch.equal(bank.sample(0, (4,)), torch.zeros(4, 2))  # U2PL: a single zero vector at first
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    bank.push(0, feats, torch.tensor([True, False, True]))
    assert int(bank.count[0]) == 3 and int(bank.ptr[0]) == 0
    assert torch.allclose(bank.queue(0)[:3], torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.7071, 0.7071]]), atol=1e-4)
    bank.push(0, feats[1:2], torch.tensor([True]))  # overwrites the oldest row (the zero vector)
    assert torch.allclose(bank.queue(0)[0], torch.tensor([0.0, 1.0]))
    drawn = bank.sample(0, (200,), torch.Generator().manual_seed(0))
    assert {tuple(round(float(a), 3) for a in v) for v in drawn} == {(0.0, 1.0), (1.0, 0.0), (0.707, 0.707)}
    assert int(bank.count[1]) == 1  # other classes untouched


def test_window_head_equals_pooling_every_window() -> None:
    torch.manual_seed(0)
    head = WindowHead(3)
    x = torch.randn(2, 3, 64, 64)
    got = head(x)
    assert got.shape == (2, 49, 3 * 64)
    windows = [x[:, :, r:r + 16, c:c + 16] for r in range(0, 49, 8) for c in range(0, 49, 8)]
    expected = torch.stack([head.proj(F.adaptive_avg_pool2d(w, 8)).flatten(1) for w in windows], dim=1)
    assert torch.allclose(got, expected, atol=1e-5)


def test_feature_extractor_fuses_every_decoder_stage() -> None:
    from sslbench.nn.unet import build_unet

    net = build_unet(1, 4, 16)
    out = net(torch.randn(2, 1, 64, 64), features=True)
    fpn = FeatureExtractor(net.widths)
    rep = fpn([out.bottleneck, *out.decoder])
    assert fpn.channels == 496 and rep.shape == (2, 496, 64, 64)  # MONA's 496 = 256+128+64+32+16


def _mona_trainer(**overrides: object) -> object:
    cls = type("MonaVariant", (MONA,), {"conformance_config": {**FINETUNE_CONFORMANCE, **overrides},
                                         "name": "mona-variant"})
    return build(cls)


@pytest.mark.parametrize("switches,expected", [
    ({"tailness": False, "consistency_loss": False, "diversity": False}, {"loss_sup", "loss_unsup"}),
    ({"tailness": True, "consistency_loss": False, "diversity": False}, {"loss_sup", "loss_unsup", "loss_tailness"}),
    ({"tailness": False, "consistency_loss": True, "diversity": True},
     {"loss_sup", "loss_unsup", "loss_consistency", "loss_diversity"}),
])
def test_ablation_switches_select_the_terms(switches: dict, expected: set) -> None:  # type: ignore[type-arg]
    trainer = _mona_trainer(**switches)
    trainer.stage_index = 1  # the fine-tuning stage
    out = trainer.train_step()
    assert {k for k in out if k.startswith("loss_")} == expected


@pytest.mark.parametrize("student,teacher", [("weak", "weak"), ("weak", "strong"), ("strong", "strong")])
def test_augmentation_pairs_train(student: str, teacher: str) -> None:
    trainer = _mona_trainer(student_aug=student, teacher_aug=teacher)
    trainer.stage_index = 1
    out = trainer.train_step()
    assert all(torch.isfinite(torch.as_tensor(v)) for v in out.values())


def test_bad_augmentation_name_is_a_config_error() -> None:
    from sslbench.base.errors import ConfigError

    with pytest.raises(ConfigError, match="student_aug"):
        _mona_trainer(student_aug="medium")


def test_fine_tuning_stage_resumes_exactly() -> None:
    import copy

    a = _mona_trainer()
    a.stage_index = 1
    for _ in range(2):
        a.train_step()
    state = copy.deepcopy(a.state_dict())
    expected = {k: float(v) for k, v in a.train_step().items()}
    b = _mona_trainer()
    b.load_state_dict(state)
    assert {k: float(v) for k, v in b.train_step().items()} == expected


def test_the_first_pass_is_backpropagated_before_the_equivariance_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fine-tuning step backpropagates its first student pass before the equivariance pass runs
    (that pass reads only detached logits; the first pass's activations are freed: the paper's batch
    in less memory), and a step so split moves the networks as one backward of the whole does."""
    import copy

    split, whole = _mona_trainer(), _mona_trainer()
    split.stage_index = 1
    split.train_step()                                         # into the stage (its teacher and banks set up)
    state = copy.deepcopy(split.state_dict())
    start = [p.detach().clone() for p in split.method.parameters()]
    order: list[str] = []
    reco = type(split.method.reco)
    equivariance = reco.equivariance
    monkeypatch.setattr(reco, "equivariance", lambda self, *a: order.append("equivariance") or equivariance(self, *a))
    monkeypatch.setattr(split, "backward", lambda loss: order.append("backward") or type(split).backward(split, loss))
    monkeypatch.setattr(whole, "backward", None)   # no hook: every term backpropagated at the end
    got = {k: float(v) for k, v in split.train_step().items()}
    assert order == ["backward", "equivariance"]
    order.clear()
    whole.load_state_dict(state)   # the same networks, data and generators (the global one too)
    assert {k: float(v) for k, v in whole.train_step().items()} == got
    assert order == ["equivariance"]
    for (name, a), b in zip(split.method.named_parameters(), whole.method.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7, msg=name)
    assert any(not torch.equal(a, b) for a, b in zip(split.method.parameters(), start))   # the step did move them


def test_the_symmetric_equivariance_keeps_one_backward() -> None:
    """Both directions of Eq. 6 read the first pass's graph (``T(f(x))`` trains the first pass), so
    that pass is not backpropagated early there: the fine-tuning step runs and trains through it."""
    trainer = _mona_trainer(symmetric_equivariance=True)
    trainer.stage_index = 1
    for _ in range(2):
        out = trainer.train_step()
    assert "loss_consistency" in out and all(torch.isfinite(torch.as_tensor(v)) for v in out.values())


def test_teacher_heads_follow_by_ema_only() -> None:
    trainer = build("mona")
    method = trainer.method
    trained = {id(p) for p in method.optim_parameters()}
    assert not any(id(p) in trained or p.requires_grad for p in method.teacher.parameters())
    assert not any(id(p) in trained for p in method.reco.teacher.parameters())


class DeadDiversityMONA(MONA):
    """The released kNN loss: teacher distances at indices chosen by the student, all without gradient."""

    name = "dead-knn-mona"
    conformance_config = FINETUNE_CONFORMANCE

    def training_step(self, batch, step):  # type: ignore[no-untyped-def]
        out = super().training_step(batch, step)
        if step.stage == "train":
            with torch.no_grad():
                t = torch.randn(batch.x_l.shape[0], self.reco.knn.bank.shape[1])
                d = 2 - 2 * F.normalize(t, dim=1) @ self.reco.knn.bank.t()
            out["loss_diversity"] = d.topk(5, largest=False).values.mean().requires_grad_()
        return out


def test_gradient_check_catches_the_released_knn_loss() -> None:
    with pytest.raises(AssertionError, match="loss_diversity"):
        check_gradients(DeadDiversityMONA)


def test_all_contrastive_names_are_registered() -> None:
    names = set(METHODS.names())
    assert {"mocov2", "knn-moco", "simclr", "byol", "isd", "glcon", "mona", "gcl", "scs", "plc"} <= names


@pytest.mark.parametrize("name", ["simclr", "mocov2", "knn-moco", "byol", "isd", "glcon"])
def test_fine_tuned_variants_are_declared_methods_that_run_what_they_list(name: str) -> None:
    """Each framework's "with fine-tuning" row is a registered method whose class lists both stages
    (what ``bench methods`` shows is what runs) and whose config holds the framework's keys plus
    stage 2's, nothing else; the plain framework has no stage-2 key. (The conformance kit runs every
    registered method, the variants included.)"""
    from sslbench.base.config import config_keys
    from sslbench.methods.mona._anatomy import ReconstructionConfig

    plain = METHODS.get(name)
    tuned = METHODS.get("mona" if name == "glcon" else f"{name}-ft")
    assert plain.stages == ("train",) and tuned.stages == ("pretrain", "train")
    assert build(tuned).stages == ["pretrain", "train"] and build(plain).stages == ["train"]
    assert tuned.paper_name == ("MONA" if name == "glcon" else plain.paper_name)
    stage2 = config_keys(ReconstructionConfig) - {"sup_weight"}
    assert not config_keys(plain.Config) & (stage2 - {"ema_decay"})    # ema_decay: every EMA's name
    extra = {"pretrain_ema_decay"} if "ema_decay" in config_keys(plain.Config) else set()
    assert config_keys(tuned.Config) == config_keys(plain.Config) | stage2 | {"sup_weight"} | extra
    if extra:   # the framework's own decay keeps its value under its pre-training name
        assert tuned.Config().pretrain_ema_decay == plain.Config().ema_decay



def test_mask_samplers_draw_only_true_entries() -> None:
    from sslbench.nn.mask_sampling import pick_where, sample_where

    g = torch.Generator().manual_seed(0)
    mask = torch.tensor([False, True, False, True, False])
    idx, valid = sample_where(mask, 50, g)
    assert set(idx.tolist()) == {1, 3} and bool(valid.all())
    idx, valid = pick_where(mask, 3, g)  # two true entries, then one filler marked invalid
    assert set(idx[:2].tolist()) == {1, 3} and valid.tolist() == [True, True, False]
    _, valid = sample_where(torch.zeros(4, dtype=torch.bool), 5, g)
    assert not bool(valid.any())


def test_table3_compares_the_default_run_with_table_1s_number(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Our default (released code: weak teacher, strong student) meets the published 88.8 / 67.3 of
    Table 1 in Table 3 too, via the teacher / student reading of Table 3's columns."""
    from sslbench.report.paper import paper_cells, published_variant
    from sslbench.report.tables import paper_table

    cfg = METHODS.get("mona").Config()
    default = f"student {cfg.student_aug} / teacher {cfg.teacher_aug}"
    assert default == "student strong / teacher weak"
    cells = paper_cells()
    for ds in ("acdc", "lits"):
        t1 = cells[(cells.table == 1) & (cells.dataset == ds) & (cells.method == "MONA") & (cells.ratio == 5)]
        t3 = cells[(cells.table == 3) & (cells.dataset == ds) & (cells.variant == published_variant(3, default))]
        assert (float(t3.dsc.iloc[0]), float(t3.asd.iloc[0])) == (float(t1.dsc.iloc[0]), float(t1.asd.iloc[0]))
    assert published_variant(3, "student weak / teacher weak") == "student weak / teacher weak"
    assert published_variant(1, "anything") == "anything"
    text = paper_table(tmp_path / "none", 3, vs_paper=True)
    assert "teacher / student" in text and "| student strong / teacher weak" in text
    assert "| 88.8 " in next(line for line in text.splitlines() if "student strong / teacher weak" in line)


def test_a_fine_tuned_framework_pre_trains_with_its_own_decay() -> None:
    """In a two-stage variant ``pretrain_ema_decay`` drives the framework's EMA copy and ``ema_decay``
    stage 2's teacher; in the plain framework ``ema_decay`` is the framework's."""
    from .conftest import tiny_method

    moco = tiny_method("mocov2-ft", 3, pretrain_ema_decay=0.9, ema_decay=0.5)
    assert moco.key_encoder.momentum == 0.9 and moco.reco.teacher.momentum == 0.5
    mona = tiny_method("mona", 3, pretrain_ema_decay=0.8, ema_decay=0.6)
    assert mona.teacher.momentum == 0.8 and mona.reco.teacher.momentum == 0.6
    assert tiny_method("mocov2", 3, ema_decay=0.7).key_encoder.momentum == 0.7
