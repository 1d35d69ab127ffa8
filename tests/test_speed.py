"""`bench speed` runs on tiny sizes and reports what it promises (a benchmark, not a timed test)."""
from __future__ import annotations

import json

import pytest

from .test_cli import bench

TINY = ("--steps", "2", "--warmup", "1", "--set", "train.image_size=32", "--set", "train.batch_size=4",
        "--set", "train.labeled_bs=2", "--set", "train.base_width=4", "--set", "train.pretrain_iterations=4")


def test_bench_speed_reports_every_stage_against_unet_l() -> None:
    code, out, err = bench("speed", "--methods", "mt,glcon,mona", "--format", "json", "--device", "cpu", *TINY)
    assert code == 0, err
    report = json.loads(out)
    rows = {(r["method"], r["stage"]): r for r in report["rows"]}
    assert set(rows) == {("mt", "train"), ("glcon", "train"), ("mona", "pretrain"), ("mona", "train")}
    for row in rows.values():
        for key in ("step_s", "it_s", "peak_mem_mb", "ratio_to_unet_l", "outside_share"):
            assert row[key] > 0 or key == "outside_share", key
        assert abs(row["it_s"] * row["step_s"] - 1) < 1e-9
        assert abs(row["ratio_to_unet_l"] - row["step_s"] / report["baseline"]["step_s"]) < 1e-9
        assert 0 <= row["outside_share"] <= 1 and row["batch"] == 4 and row["image_size"] == 32
    assert report["evaluation"]["eval_slices_per_s"] > 0 and report["evaluation"]["metrics_s_per_volume"] > 0
    code, out, _ = bench("speed", "--methods", "unet-l", "--device", "cpu", *TINY)
    assert code == 0 and "| unet-l" in out and "x UNet-L" in out and "slices/s" in out


def _tiny_trainer(name: str):  # noqa: ANN202
    import torch

    from sslbench.method import METHODS, build_method
    from sslbench.run.specs import resolve
    from sslbench.run.speed import synthetic_data
    from sslbench.train.trainer import Trainer

    cfg = resolve(name, "quick", "synthetic-cardiac", [a for a in TINY[4:] if a != "--set"])
    method = build_method(METHODS.get(name), cfg.method, cfg.train, 4, torch.device("cpu"))
    return Trainer(method, synthetic_data(16, 32, torch.device("cpu")), cfg.train, 0, progress=False)


def test_the_bare_loops_do_the_steps_work_and_the_ratio_is_of_medians() -> None:
    """The bare UNet-L loop trains a copy of the same network on the labeled images (its loss falls
    on a fixed batch, the method's own weights stay), the bare method loop steps the method's own
    parameters and EMA teacher; the ratio is the medians' ratio of the alternating rounds."""
    import torch

    from sslbench.nn import ce_dice_loss
    from sslbench.run.overhead import bare_method_step, bare_unet_step, compare

    torch.manual_seed(0)
    trainer = _tiny_trainer("unet-l")
    batch = trainer.next_batch()
    own = [p.detach().clone() for p in trainer.method.parameters()]
    step = bare_unet_step(trainer, batch)
    copy_net = step.net
    before = float(ce_dice_loss(copy_net(batch.x_l), batch.y_l))
    for _ in range(8):
        step()
    assert float(ce_dice_loss(copy_net(batch.x_l), batch.y_l)) < before
    assert all(torch.equal(a, b) for a, b in zip(own, trainer.method.parameters()))

    mt = _tiny_trainer("mt")
    student = [p.detach().clone() for p in mt.method.optim_parameters()]
    teacher = [p.detach().clone() for p in mt.method.teacher.parameters()]
    bare_method_step(mt, mt.next_batch())()
    assert not all(torch.equal(a, b) for a, b in zip(student, mt.method.optim_parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(teacher, mt.method.teacher.parameters()))

    dan = _tiny_trainer("dan")  # the bare loop steps the extra optimisers too (DAN's discriminator)
    disc = [p.detach().clone() for spec in dan.method.extra_optimizers().values() for p in spec.params]
    bare_method_step(dan, dan.next_batch())()
    moved = [p for spec in dan.method.extra_optimizers().values() for p in spec.params]
    assert disc and not all(torch.equal(a, b) for a, b in zip(disc, moved))

    times = iter([3.0, 2.0, 5.0, 2.0, 4.0, 1.0])  # bench, bare per round: medians 4.0 and 2.0
    out = compare("mt", mt, lambda fn, n: next(times), steps=1, rounds=3, warmup=0)
    assert out["ratio"] == 2.0 and out["bench_step_s"] == 4.0 and out["bare_step_s"] == 2.0


def test_the_bare_step_backpropagates_early_where_the_method_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """MONA's fine-tuning step backpropagates its first pass early (StepInfo.backward_now); the bare
    loop offers it the same hook, so both sides of the overhead ratio do the same work in the same
    memory."""
    import torch

    from sslbench.method import StepInfo
    from sslbench.run.overhead import bare_method_step

    hooked: list[bool] = []
    real = StepInfo.backward_now
    monkeypatch.setattr(StepInfo, "backward_now", lambda self, losses: hooked.append(self.backward is not None)
                        or real(self, losses))
    mona = _tiny_trainer("mona")
    mona.stage_index = 1
    mona.train_step()                                      # into the fine-tuning stage
    before = [p.detach().clone() for p in mona.method.optim_parameters()]
    bare_method_step(mona, mona.next_batch())()
    assert hooked == [True, True]                          # the trainer's step, then the bare one
    assert not all(torch.equal(a, b) for a, b in zip(before, mona.method.optim_parameters()))


def test_bench_speed_vs_bare_reports_the_overhead_of_each_method() -> None:
    """Also with more timed steps than the stage has (the schedule starts over, never runs past it)."""
    code, out, err = bench("speed", "--methods", "mt,dan", "--format", "json", "--device", "cpu", "--vs-bare", "2",
                           *TINY, "--set", "train.iterations=3")
    assert code == 0, err
    overhead = {o["method"]: o for o in json.loads(out)["overhead"]}
    assert set(overhead) == {"unet-l", "mt", "dan"}
    for o in overhead.values():
        assert o["ratio"] == o["bench_step_s"] / o["bare_step_s"] > 0 and o["stage"] == "train"
