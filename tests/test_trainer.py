"""Trainer mechanics: schedules, NaN guard, checkpoint files, best-model selection."""
from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest
import torch

from sslbench.base.errors import TrainingDiverged
from sslbench.nn.losses import ce_dice_loss
from sslbench.method import Batch, Losses, SSLMethod, StepInfo
from sslbench.methods.supervised import UNetL
from sslbench.testing import TINY, build


def test_poly_and_step_schedules() -> None:
    t = build("unet-l", cfg=dataclasses.replace(TINY, iterations=100, lr=0.01))
    assert t.lr_at(0) == pytest.approx(0.01)
    assert t.lr_at(50) == pytest.approx(0.01 * 0.5**0.9)
    t = build("unet-l", cfg=dataclasses.replace(TINY, iterations=100, lr_schedule="step", lr_step=30))
    assert [t.lr_at(i) for i in (0, 29, 30, 61)] == pytest.approx([0.01, 0.01, 0.001, 0.0001])
    t = build("unet-l", cfg=dataclasses.replace(TINY, iterations=100, lr=0.02, lr_schedule="constant", lr_step=10))
    assert [t.lr_at(i) for i in (0, 50, 99)] == [0.02, 0.02, 0.02]   # neither poly's nor step's values


def test_bcp_and_abd_train_at_their_releases_constant_rate_unless_told_otherwise() -> None:
    """Both releases build SGD(lr=0.01) and never change the rate; the method layer says so, in every
    profile, and an explicit --set still wins. UniMatch's release decays (poly), as the profile."""
    from sslbench.base.config import resolve_config
    from sslbench.method import METHODS

    for profile in ("quick", "ssl4mis", "paper"):
        for name in ("bcp", "abd"):
            cfg = resolve_config(METHODS.get(name).Config, profile, "acdc", name)
            assert cfg.train.lr_schedule == "constant" and f"configs/methods/{name}.toml" in cfg.sources
        assert resolve_config(METHODS.get("unimatch").Config, profile, "acdc", "unimatch").train.lr_schedule != "constant"
    told = resolve_config(METHODS.get("bcp").Config, "ssl4mis", "acdc", "bcp", ["train.lr_schedule=poly"])
    assert told.train.lr_schedule == "poly"


class ExplodingUNet(UNetL):
    def training_step(self, batch: Batch, step: StepInfo) -> Losses:
        loss = ce_dice_loss(self.student(batch.x_l), batch.y_l)
        return {"loss_sup": loss * (float("nan") if step.iteration == 5 else 1.0)}


def test_nan_guard_names_the_loss(tmp_path: Path) -> None:
    t = build(ExplodingUNet, cfg=dataclasses.replace(TINY, iterations=12, val_every=4, log_every=2), folder=tmp_path)
    t.validate = lambda: 0.5
    with pytest.raises(TrainingDiverged, match=r"loss_sup.*NaN/Inf between iterations 4 and 6"):
        t.fit()
    state = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=True)
    assert state["iteration"] == 4                     # the last good checkpoint is kept


class DetachedUNet(UNetL):
    """A step whose every loss term is cut from the graph (a bug): it would train nothing."""

    def training_step(self, batch: Batch, step: StepInfo) -> Losses:
        return {"loss_sup": ce_dice_loss(self.student(batch.x_l), batch.y_l).detach()}


class EarlyUNet(UNetL):
    """The whole loss backpropagated early through ``step.backward_now``: nothing left for the end."""

    def training_step(self, batch: Batch, step: StepInfo) -> Losses:
        return step.backward_now({"loss_sup": ce_dice_loss(self.student(batch.x_l), batch.y_l)})


def test_a_step_whose_terms_carry_no_gradient_is_refused_unless_backpropagated_early() -> None:
    from sslbench.base.errors import BenchError

    with pytest.raises(BenchError, match="no '\\*loss\\*' term carries a gradient"):
        build(DetachedUNet, cfg=dataclasses.replace(TINY, iterations=4)).train_step()
    early, whole = (build(EarlyUNet, cfg=dataclasses.replace(TINY, iterations=4)) for _ in range(2))
    whole.backward = None                                  # no hook: the loss backpropagated at the end
    state = copy.deepcopy(early.state_dict())
    before = [p.detach().clone() for p in early.method.parameters()]
    loss = float(early.train_step()["loss"])
    whole.load_state_dict(state)                           # the same start, generators included
    assert float(whole.train_step()["loss"]) == loss
    for a, b, c in zip(early.method.parameters(), whole.method.parameters(), before):
        torch.testing.assert_close(a, b)                   # the same step, backpropagated at once
    assert any(not torch.equal(a, c) for a, c in zip(early.method.parameters(), before))


def test_fit_selects_best_and_logs(tmp_path: Path) -> None:
    scores = iter([0.2, 0.9, 0.4])
    t = build("unet-l", cfg=dataclasses.replace(TINY, iterations=12, val_every=4, log_every=4), folder=tmp_path)
    t.validate = lambda: next(scores)
    result = t.fit()
    assert (result.selected, result.best_iteration, result.best_score) == ("best", 8, 0.9)
    best = torch.load(tmp_path / "ckpt" / "best.pt", weights_only=True)
    assert (best["iteration"], best["val_dice"]) == (8, 0.9)              # tagged with what it holds
    assert best["weights"].keys() == t.method.inference_net().state_dict().keys()
    assert all(torch.equal(v, best["weights"][k]) for k, v in t.method.inference_net().state_dict().items())
    lines = [json.loads(x) for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [x["val_dice"] for x in lines if "val_dice" in x] == [0.2, 0.9, 0.4]
    assert all("loss_sup" in x for x in lines if "val_dice" not in x)


def test_a_nan_validation_score_is_logged_as_null_and_selects_nothing(tmp_path: Path) -> None:
    """NaN is no JSON: the log stays strict JSON, and the finite score is the one selected."""
    scores = iter([float("nan"), 0.3, float("nan")])
    t = build("unet-l", cfg=dataclasses.replace(TINY, iterations=12, val_every=4, log_every=4), folder=tmp_path)
    t.validate = lambda: next(scores)
    result = t.fit()
    assert (result.best_iteration, result.best_score) == (8, 0.3)

    def strict(token: str) -> float:
        raise AssertionError(f"non-JSON constant {token} in the log")

    lines = [json.loads(x, parse_constant=strict) for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [x["val_dice"] for x in lines if "val_dice" in x] == [None, 0.3, None]


def test_resume_from_file_continues_identically(tmp_path: Path) -> None:
    cfg = dataclasses.replace(TINY, iterations=8, val_every=4, log_every=4)
    full = build("mt", cfg=cfg)
    full.validate = lambda: 0.0
    reference = [ {k: float(v) for k, v in full.train_step().items()} for _ in range(8)]

    first = build("mt", cfg=cfg, folder=tmp_path)
    for _ in range(4):
        first.train_step()
    first.checkpoint()
    second = build("mt", seed=99, cfg=cfg, folder=tmp_path)
    assert second.resume() == 4
    rest = [{k: float(v) for k, v in second.train_step().items()} for _ in range(4)]
    assert rest == reference[4:]


class NoLoss(SSLMethod):
    uses_unlabeled = False

    def training_step(self, batch: Batch, step: StepInfo) -> Losses:
        return {"dice": self.student(batch.x_l).mean()}


def test_a_method_without_loss_terms_is_rejected() -> None:
    with pytest.raises(Exception, match="no '\\*loss\\*' tensor term"):
        build(NoLoss).train_step()


class _Payload:
    """Pickles to a call of ``os.system``: what a crafted ``last.pt`` would run under weights_only=False."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_crafted_checkpoint_runs_no_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / "ckpt").mkdir()
    torch.save({"iteration": 3, "evil": _Payload(marker)}, tmp_path / "ckpt" / "last.pt")
    t = build("unet-l", folder=tmp_path)
    warnings: list[str] = []
    t.warn = warnings.append
    assert t.resume() is None              # refused, moved aside, the run starts over
    assert not marker.exists()
    assert len(warnings) == 1 and "unusable checkpoint" in warnings[0]
    assert not (tmp_path / "ckpt" / "last.pt").exists()
    assert len(list((tmp_path / "ckpt").glob("last.pt.unusable-*"))) == 1


def test_hooks_see_the_outputs() -> None:
    moco = build("mocov2")
    seen: list[set[str]] = []
    original = moco.method.after_step
    moco.method.after_step = lambda step, outputs=None: (seen.append(set(outputs or {})), original(step, outputs))[1]
    logged = moco.train_step()
    assert "_keys" in seen[0] and "loss_contrast" in seen[0]          # the hook got the step's keys
    assert not any(k.startswith("_") for k in logged)                  # never logged
    assert int(moco.method.queue.count) == moco.cfg.batch_size - moco.cfg.labeled_bs


def test_methods_draw_their_augmentations_from_the_trainers_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    """Noise, views and samples come from the trainer's seeded, checkpointed generator (StepInfo.rng),
    not from the global one."""
    from sslbench.methods import contrastive, mean_teacher
    from sslbench.nn import augment

    seen: list[object] = []

    def spy(real):  # noqa: ANN001, ANN202
        def wrapped(x, *args, **kwargs):  # noqa: ANN001, ANN202
            seen.append(kwargs.get("g", args[-1] if args else None))
            return real(x, *args, **kwargs)
        return wrapped

    monkeypatch.setattr(mean_teacher, "gaussian_noise", spy(augment.gaussian_noise))
    monkeypatch.setattr(contrastive, "contrastive_views", spy(augment.contrastive_views))
    for name in ("mt", "simclr"):
        seen.clear()
        t = build(name)
        t.train_step()
        assert seen and all(g is t.generator for g in seen), name


def test_cct_and_urpc_perturbations_draw_from_the_trainers_generator() -> None:
    for name, attribute in (("cct", "perturbations"), ("urpc", "aux_perturbations")):
        t = build(name)
        seen: list[object] = []
        net = t.method.student
        setattr(net, attribute, tuple((lambda f, g=None, p=p: (seen.append(g), p(f, g=g))[1])
                                      for p in getattr(net, attribute)))
        t.train_step()
        assert seen and all(g is t.generator for g in seen), name


def test_parallel_evaluation_gives_the_same_metrics(cardiac) -> None:  # noqa: ANN001
    from sslbench.report.evaluation import evaluate

    t = build("unet-l")
    ids = [c.id for c in cardiac.eval_cases("val")][:3]
    device = torch.device("cpu")
    one = evaluate(t.method, cardiac, ids, 32, device, False, None, workers=0)
    two = evaluate(t.method, cardiac, ids, 32, device, False, None, workers=1)
    assert one == two and [c["case"] for c in two["metric_per_case"]] == ids


def test_training_curves_go_to_tensorboard_when_it_is_installed(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """With tensorboard installed the log's values are also TensorBoard scalars in <run>/tb; without it
    nothing else changes (the same train_log.jsonl)."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = dataclasses.replace(TINY, iterations=8, val_every=4, log_every=2)
    t = build("unet-l", cfg=cfg, folder=tmp_path / "with")
    t.validate = lambda: 0.5
    t.fit()
    (run,) = (tmp_path / "with" / "tb").iterdir()               # one TensorBoard run, named by its schedule
    events = EventAccumulator(str(run))
    events.Reload()
    assert {"train/loss", "train/lr", "train/val_dice_percent"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("train/val_dice_percent")] == [4, 8]
    assert [round(e.value, 6) for e in events.Scalars("train/val_dice_percent")] == [50.0, 50.0]   # %, as every view

    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if name.startswith("torch.utils.tensorboard") or name.startswith("tensorboard"):
            raise ImportError("no tensorboard here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    t = build("unet-l", cfg=cfg, folder=tmp_path / "without")
    t.validate = lambda: 0.5
    t.fit()
    assert not (tmp_path / "without" / "tb").exists()
    log = lambda p: [json.loads(x) for x in (p / "train_log.jsonl").read_text().splitlines()]  # noqa: E731
    assert [r.keys() for r in log(tmp_path / "without")] == [r.keys() for r in log(tmp_path / "with")]
