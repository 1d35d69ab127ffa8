"""Training curves of any logged key: the trainer logs the learning rate and the step time at each log
line, `bench plot curves --key` draws any logged key (the plotted series are the logged values, a stage
boundary sits at the global step the stage starts, labelled with its name, a figure holds one dataset,
profile and ratio, the caption states each key's unit), and the report's run pages chart the learning
rate and the step time where the log has them. Logs are written by hand, except the tiny trainings
that check what the trainer logs."""
from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from sslbench.method import Batch, Losses, StepInfo
from sslbench.methods.supervised import UNetL
from sslbench.testing import TINY, build

from .test_cli import bench
from .test_views import fake_run

LENGTHS = {"warmup": 100, "pretrain": 200, "train": 300}   # stages start at global steps 0, 100 and 300


def _lr(stage: str, it: int) -> float:
    return {"warmup": 0.001, "pretrain": 0.01, "train": 0.005}[stage] * (1 - it / 1000)


def _lines() -> list[dict[str, Any]]:
    """A three-stage log: loss lines every 50 iterations of each stage, validation twice in the last."""
    lines = []
    for stage, length in LENGTHS.items():
        for it in range(50, length + 1, 50):
            lines.append({"stage": stage, "iteration": it, "lr": _lr(stage, it), "step_s": 0.01 + it / 10_000,
                          "loss": 2.0 - it / 1000, "loss_sup": 1.0 - it / 1000, "cons_weight": it / 1000})
    lines += [{"stage": "train", "iteration": it, "val_dice": 0.3 + it / 1000} for it in (150, 300)]
    return lines


def _write(folder: Path, lines: list[dict[str, Any]], lengths: dict[str, int] | None = None) -> None:
    (folder / "train_log.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    if lengths is not None:
        record = json.loads((folder / "run.json").read_text())
        (folder / "run.json").write_text(json.dumps({**record, "stage_iterations": lengths}))


@pytest.fixture
def staged(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    _write(fake_run(root, "acdc", "mona", 5, 0, 60, paper_name="MONA"), _lines(), LENGTHS)
    return root


def _figures(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, str]]:
    """Every (figure, caption) ``plot_curves`` saves."""
    from sslbench.report import plots

    saved: list[tuple[Any, str]] = []
    original = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, out, caption: (saved.append((fig, caption)),
                                                                   original(fig, out, caption))[1])
    return saved


def _series(ax: Any) -> list[tuple[list[float], list[float]]]:
    """The curves drawn on ``ax`` (solid lines), as (x, y)."""
    return [(list(map(float, line.get_xdata())), list(map(float, line.get_ydata())))
            for line in ax.lines if line.get_linestyle() == "-" and len(line.get_xdata()) > 0]


def _boundaries(ax: Any) -> list[float]:
    return sorted(float(line.get_xdata()[0]) for line in ax.lines if line.get_linestyle() == "--")


# ------------------------------------------------------------------------------ the figure's series
def test_the_plotted_series_are_the_logged_values_on_the_global_step(staged: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from sslbench.report.plots import plot_curves

    saved = _figures(monkeypatch)
    plot_curves(staged, tmp_path / "c", keys=["loss_sup", "cons_weight", "lr", "step_s", "val_dice"])
    ((fig, caption),) = saved
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.get_ylabel()]
    assert [ax.get_ylabel() for ax in axes] == ["loss_sup", "consistency weight", "learning rate", "step time [s]",
                                                "validation DSC [%]"]
    offset = {"warmup": 0, "pretrain": 100, "train": 300}
    losses = [x for x in _lines() if "loss" in x]
    steps = [offset[x["stage"]] + x["iteration"] for x in losses]
    for ax, key in zip(axes[:4], ["loss_sup", "cons_weight", "lr", "step_s"]):
        ((xs, ys),) = _series(ax)
        assert xs == steps and ys == pytest.approx([x[key] for x in losses]), key
    ((xs, ys),) = _series(axes[4])
    assert xs == [450, 600] and ys == pytest.approx([45.0, 60.0])              # val_dice in %
    for ax in axes:                                                            # each panel marks both starts
        assert _boundaries(ax) == [100, 300]
    labels = sorted((round(t.get_position()[0]), t.get_text().strip()) for t in axes[0].texts)
    assert labels == [(100, "pretrain"), (300, "train")]
    assert axes[0].get_xlabel() == "global step (stages in order)"
    assert "stage boundaries (dashed): MONA: pretrain from iteration 100, train from iteration 300" in caption
    units = next(line for line in caption.splitlines() if line.startswith("units: "))
    assert units == ("units: loss_sup: unitless; cons_weight (consistency weight): unitless; lr (learning rate): "
                     "unitless; step_s (step time): s (mean wall time of a training step between two log lines); "
                     "val_dice (validation DSC): %")


def test_the_series_builder_offsets_each_stage_by_the_ones_before(staged: Path) -> None:
    from sslbench.report.plots import curve_frame, select_runs, stage_starts

    long = curve_frame(select_runs(staged).assign(name="MONA"), None)
    step = long[long.what == "step_s"]
    assert step.step.tolist() == [50, 100, 150, 200, 250, 300, 350, 400, 450, 500, 550, 600]
    assert step.value.tolist() == pytest.approx([x["step_s"] for x in _lines() if "step_s" in x])
    assert stage_starts(long) == {"MONA": [(100, "pretrain"), (300, "train")]}
    assert set(long.what) == {"loss", "loss_sup", "cons_weight", "lr", "step_s", "val_dice"}


def test_a_figure_never_mixes_datasets_profiles_or_ratios(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sslbench.report.plots import plot_curves

    root = tmp_path / "results"
    runs = [("acdc", "quick", 5), ("acdc", "quick", 10), ("synthetic-cardiac", "quick", 5), ("acdc", "paper", 5)]
    for k, (dataset, profile, ratio) in enumerate(runs):   # each run's lr says which run it is
        folder = fake_run(root, dataset, "mt", ratio, 0, 60, profile=profile, paper_name="MT")
        _write(folder, [{"stage": "train", "iteration": it, "loss": 1.0, "lr": float(k + 1)} for it in (100, 200)])
    saved = _figures(monkeypatch)
    plot_curves(root, tmp_path / "c", keys=["lr"])
    assert len(saved) == len(runs)
    seen = []
    for fig, caption in saved:
        ((_, ys),) = _series(fig.axes[0])
        assert len(set(ys)) == 1                                                 # one run per figure
        k = int(ys[0]) - 1
        dataset, profile, ratio = runs[k]
        assert f"dataset: {dataset}\n" in caption and f"schedule: {profile}\n" in caption
        assert f"at {ratio:g} % labels" in caption
        seen.append(k)
    assert sorted(seen) == [0, 1, 2, 3]


# ------------------------------------------------------------------------------------- the command
def _err(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_key_is_repeatable_or_a_list_and_an_unknown_key_lists_the_logged_ones(staged: Path, tmp_path: Path) -> None:
    code, out, err = bench("plot", "curves", "--results", str(staged), "-o", str(tmp_path / "a"),
                           "--key", "lr", "--key", "step_s,val_dice")
    assert code == 0, err
    caption = next(Path(p) for p in out.split() if p.endswith(".txt")).read_text()
    assert caption.startswith("figure: lr, step_s, val_dice against the global step")
    code, out, err = bench("plot", "curves", "--results", str(staged), "-o", str(tmp_path / "b"), "--keys", "grad")
    assert code == 2 and not out
    assert _err(err) == ("error: --keys grad: not in the training logs of these runs (logged: cons_weight, loss, "
                         "loss_sup, lr, step_s, val_dice)")
    assert not list(tmp_path.glob("b*"))
    code, _, err = bench("plot", "ratio", "--results", str(staged), "-o", str(tmp_path / "r"), "--key", "lr")
    assert code == 2 and "--key/--keys (for curves)" in _err(err)


def test_a_log_written_before_step_time_still_plots(tmp_path: Path) -> None:
    root = tmp_path / "results"
    fake_run(root, "acdc", "mt", 5, 0, 60, paper_name="MT")              # loss and val_dice only
    code, out, err = bench("plot", "curves", "--results", str(root), "-o", str(tmp_path / "old"))
    assert code == 0, err
    caption = next(Path(p) for p in out.split() if p.endswith(".txt")).read_text()
    assert caption.startswith("figure: loss, val_dice against the global step")     # today's default
    code, _, err = bench("plot", "curves", "--results", str(root), "-o", str(tmp_path / "x"), "--key", "step_s")
    assert code == 2 and _err(err).endswith("(logged: loss, val_dice)")


# ------------------------------------------------------------------------------------ the run pages
def test_run_pages_chart_lr_and_step_time_where_logged(tmp_path: Path) -> None:
    import pandas as pd

    from sslbench.report.html import write_report
    from sslbench.report.run_charts import log_curves, run_charts

    long = log_curves(_lines(), LENGTHS)
    lr = long[long.what == "lr"]
    assert lr.step.tolist()[:3] == [50, 100, 150] and lr.value.tolist() == [x["lr"] for x in _lines() if "lr" in x]
    charts = run_charts(long, LENGTHS)
    assert [c["title"] for c in charts] == ["training loss", "validation DSC", "learning rate", "step time"]
    old = run_charts(log_curves([{k: v for k, v in x.items() if k not in ("lr", "step_s")} for x in _lines()],
                                LENGTHS), LENGTHS)
    assert [c["title"] for c in old] == ["training loss", "validation DSC"]
    assert run_charts(pd.DataFrame(columns=["stage", "step", "what", "value"])) == []

    root = tmp_path / "results"
    _write(fake_run(root, "acdc", "mona", 5, 0, 60, paper_name="MONA"), _lines(), LENGTHS)
    write_report(root, tmp_path / "report")
    page = next((tmp_path / "report" / "runs").glob("*.html")).read_text()
    svgs = re.findall(r"<svg class=\"chart\".*?</svg>", page, re.DOTALL)
    assert len(svgs) == 4 and "learning rate" in svgs[2] and "step time" in svgs[3]
    assert len(re.search(r'points="([^"]+)"', svgs[3]).group(1).split()) == 12   # one point per loss line


# ------------------------------------------------------------------------- what the trainer logs
class SlowUNet(UNetL):
    """A step that takes at least ``PAUSE`` seconds."""
    PAUSE = 0.05

    def training_step(self, batch: Batch, step: StepInfo) -> Losses:
        time.sleep(self.PAUSE)
        return super().training_step(batch, step)


def _log(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (folder / "train_log.jsonl").read_text().splitlines()]


def test_a_tiny_training_logs_the_rate_and_a_positive_step_time_at_each_line(tmp_path: Path) -> None:
    t = build("unet-l", cfg=dataclasses.replace(TINY, iterations=8, val_every=4, log_every=2), folder=tmp_path)
    t.validate = lambda: 0.5
    t.fit()
    lines = _log(tmp_path)
    losses = [x for x in lines if "val_dice" not in x]
    assert len(lines) == 6 and [x["iteration"] for x in losses] == [2, 4, 6, 8]
    assert all(isinstance(x["step_s"], float) and x["step_s"] > 0 for x in losses)
    assert [x["lr"] for x in losses] == pytest.approx([t.lr_at(it - 1) for it in (2, 4, 6, 8)])
    assert not any("step_s" in x for x in lines if "val_dice" in x)


def test_the_step_time_is_the_steps_not_the_validation(tmp_path: Path) -> None:
    t = build(SlowUNet, cfg=dataclasses.replace(TINY, iterations=6, val_every=2, log_every=2), folder=tmp_path)
    t.validate = lambda: (time.sleep(0.5), 0.5)[1]   # counted, it would add 0.25 s to each step after it
    t.fit()
    step_s = [x["step_s"] for x in _log(tmp_path) if "step_s" in x]
    assert len(step_s) == 3 and all(SlowUNet.PAUSE <= s < 0.25 for s in step_s), step_s


def test_a_resume_between_log_lines_logs_the_same_values_but_the_time(tmp_path: Path) -> None:
    from sslbench.train.logbook import TIMING_KEYS

    cfg = dataclasses.replace(TINY, iterations=8, val_every=4, log_every=4)
    full = build("unet-l", cfg=cfg, folder=tmp_path / "full")
    full.validate = lambda: 0.5
    full.fit()
    first = build("unet-l", cfg=cfg, folder=tmp_path / "cut")
    for _ in range(2):
        first.train_step()
    first.checkpoint()
    second = build("unet-l", cfg=cfg, folder=tmp_path / "cut")
    second.validate = lambda: 0.5
    second.fit()
    cut, whole = _log(tmp_path / "cut"), _log(tmp_path / "full")
    assert [{k: v for k, v in x.items() if k not in TIMING_KEYS} for x in cut] == \
        [{k: v for k, v in x.items() if k not in TIMING_KEYS} for x in whole]
    assert all(x["step_s"] > 0 for x in cut if "val_dice" not in x)
