"""``bench report`` pages and TensorBoard events, checked on records written by hand (``fake_run``):
every run has a page of its own, a report replaces the last one whole (and nothing else), a run page
names the stage and global step of the weights it shows and charts them on the same axis, distances
carry their unit, schedules and tags read as the values they changed, the leaderboard's bootstrap
interval, worst cases and voxel counts; TensorBoard logs the Dice in %, the schedule in its run
name and the hyper-parameters."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sslbench.base.errors import BenchError
from sslbench.base.run_files import RunFiles

from .test_views import fake_run


def _report(root: Path, out: Path) -> Path:
    from sslbench.report.html import write_report

    return write_report(root, out)


def _index_links(out: Path) -> list[str]:
    return re.findall(r'href="(runs/[^"]+)"', (out / "index.html").read_text())


def _edit(path: Path, change: Any) -> None:
    """Rewrite a JSON file of a fake run through ``change(data)`` (the fields ``fake_run`` has no
    argument for)."""
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# ------------------------------------------------------------------ 1: one page per run

TAGS = ("w=0.3", "w-0.3", "w+0.3", "W=0.3", "w 0.3", "w,0.3")  # slug alike but for case, and chars a slug drops


def test_every_run_has_a_page_of_its_own(tmp_path: Path) -> None:
    root = tmp_path / "results"
    for tag in TAGS:
        for seed in (0, 1):
            fake_run(root, "acdc", "mt", 10, seed, 60 + seed, tag=tag, paper_name="MT")
    out = tmp_path / "report"
    _report(root, out)
    pages = sorted(p.name for p in (out / "runs").glob("*.html"))
    assert len(pages) == 2 * len(TAGS) and len({p.lower() for p in pages}) == len(pages)
    links = _index_links(out)
    assert len(links) == len(set(links)) == 2 * len(TAGS)          # no two leaderboard links share a page
    titled = set()
    for link in links:
        text = (out / link).read_text()
        titled.add(re.search(r"<h1>MT \((.*?)\) —", text).group(1))
    assert titled == set(TAGS)                                          # each page is its own run's


def test_page_names_are_unique_by_construction(tmp_path: Path) -> None:
    import pandas as pd

    from sslbench.report.html import page_names

    rows = [{"dataset": "acdc", "profile_key": "quick", "method": "mt", "tag": tag, "ratio": 10.0, "seed": 0,
             "dir": str(tmp_path / f"mt@{tag}")} for tag in TAGS]
    names = page_names(pd.DataFrame(rows), tmp_path)
    assert len(set(names.values())) == len(TAGS)
    assert all(re.fullmatch(r"acdc-mt-[A-Za-z0-9._-]+-r10-s0-[0-9a-f]{10,}", n) for n in names.values())
    assert names == page_names(pd.DataFrame(rows[::-1]), tmp_path)   # stable: the same run, the same page


# ------------------------------------------------------------------ 2: the report folder replaced whole

def test_a_report_replaces_the_last_one_whole(tmp_path: Path) -> None:
    root = tmp_path / "results"
    for seed in (0, 1):
        for tag in ("a", "b"):
            fake_run(root, "acdc", "mt", 10, seed, 60, tag=tag, paper_name="MT")
    out = tmp_path / "report"
    _report(root, out)
    assert len(list((out / "runs").glob("*.html"))) == 4 and (out / ".sslbench-report").is_file()
    other = tmp_path / "results2"
    fake_run(other, "acdc", "unet-l", 10, 0, 55, paper_name="UNet-L")
    _report(other, out)
    assert len(list((out / "runs").glob("*.html"))) == 1                 # no page of the last report lingers
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "results", "results2"]  # no temporary left


def test_a_folder_that_is_not_a_report_is_refused_and_left_untouched(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from sslbench.cli import main

    root = tmp_path / "results"
    fake_run(root, "acdc", "mt", 10, 0, 60)
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("keep me\n")
    (mine / "index.html").write_text("my page\n")
    with pytest.raises(BenchError, match="not a report written by `bench report`"):
        _report(root, mine)
    result = CliRunner().invoke(main, ["report", "--results", str(root), "-o", str(mine)])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "error:" in result.output
    assert sorted(p.name for p in mine.iterdir()) == ["chapter1.tex", "index.html"]
    assert (mine / "index.html").read_text() == "my page\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results", "thesis"]
    empty = tmp_path / "empty"
    empty.mkdir()
    _report(root, empty)                                                   # an empty folder is fine
    assert (empty / "index.html").is_file()
    link = tmp_path / "link"
    link.symlink_to(empty, target_is_directory=True)
    with pytest.raises(BenchError, match="is a symbolic link"):
        _report(root, link)
    assert link.is_symlink()
    inner = empty / "results"                                              # a report replaced whole would take it
    fake_run(inner, "acdc", "mt", 10, 0, 60)
    with pytest.raises(BenchError, match="holds the results folder"):
        _report(inner, empty)
    assert (inner / "acdc").is_dir()


def test_an_earlier_versions_report_without_a_marker_is_replaced(tmp_path: Path) -> None:
    root = tmp_path / "results"
    fake_run(root, "acdc", "mt", 10, 0, 60)
    out = tmp_path / "report"
    (out / "runs").mkdir(parents=True)
    (out / "figures").mkdir()
    (out / "index.html").write_text("old\n")
    (out / "runs" / "acdc-quick-mt--r10-s0.html").write_text("old\n")
    (out / "figures" / "acdc-quick-ratio.png").write_bytes(b"png")
    _report(root, out)
    assert not (out / "runs" / "acdc-quick-mt--r10-s0.html").exists() and (out / ".sslbench-report").is_file()


def test_a_failure_midway_leaves_the_old_report_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sslbench.report import html

    root = tmp_path / "results"
    for seed in (0, 1):
        fake_run(root, "acdc", "mt", 10, seed, 60 + seed)
    out = tmp_path / "report"
    _report(root, out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for seed in (0, 1):                                                    # new numbers: every page would change
        fake_run(root, "acdc", "mt", 10, seed, 70 + seed)
    real, calls = html._run_page, []

    def second_page_fails(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(*args, **kwargs)

    monkeypatch.setattr(html, "_run_page", second_page_fails)
    with pytest.raises(OSError):
        _report(root, out)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "results"]


# ------------------------------------------------------------------ 3: which weights, which iteration

def _two_stage(root: Path) -> Path:
    """A run pre-trained for 20 iterations, then trained for 40; selected at iteration 20 of training."""
    folder = fake_run(root, "acdc", "mona", 10, 0, 62.0, paper_name="MONA", units="voxels", last_dsc=58.0)
    _edit(folder / "run.json", lambda r: r.update(
        stage_iterations={"pretrain": 20, "train": 40}, selection={"rule": "best", "iteration": 20, "val_dice": 0.64},
        last={**r["last"], "iteration": 40}))
    lines = [{"stage": "pretrain", "iteration": it, "loss": 2.0 / it} for it in (10, 20)]
    for it in (10, 20, 30, 40):
        lines += [{"stage": "train", "iteration": it, "loss": 1.0 / it},
                  {"stage": "train", "iteration": it, "val_dice": 0.5 + it / 200}]
    (folder / "train_log.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return folder


def test_a_run_page_names_stage_and_global_step_and_charts_them_alike(tmp_path: Path) -> None:
    from sslbench.report.run_charts import LEFT, RIGHT, WIDTH

    root = tmp_path / "results"
    _two_stage(root)
    out = tmp_path / "report"
    _report(root, out)
    page = next((out / "runs").glob("*.html")).read_text()
    cells = dict(re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td></tr>", page))
    assert cells["selected weights"] == "iteration 20 of stage &#39;train&#39; (global step 40)"
    assert cells["last weights"] == "iteration 40 of stage &#39;train&#39; (global step 60)"
    assert cells["selected weights&#39; Dice on the test split [%]"] == "62.00"   # the selected weights' test Dice
    assert cells["last weights&#39; Dice [%]"] == "58.00" and cells["validation Dice [%]"] == "64.00"
    charts = re.findall(r"<svg class=\"chart\".*?</svg>", page, re.DOTALL)
    assert len(charts) == 2

    def x(step: float) -> str:                          # the loss chart spans global steps 10..60
        return f"{round(LEFT + (step - 10) / (60 - 10) * (WIDTH - LEFT - RIGHT), 1)}"

    loss = charts[0]
    assert re.search(rf'<line x1="{x(20)}" [^>]*class="stage"', loss)              # training begins at step 20
    assert re.search(rf'<line x1="{x(40)}" [^>]*class="mark" data-label="selected"', loss)
    assert re.search(rf'<line x1="{x(60)}" [^>]*class="mark" data-label="last"', loss)
    xs = [float(p.split(",")[0]) for p in re.search(r'points="([^"]+)"', loss).group(1).split()]
    assert xs[2] == float(x(30))                        # iteration 10 of training is drawn at global step 30
    assert "global step (pretrain then train)" in page


def test_log_curves_place_stages_by_the_records_lengths() -> None:
    from sslbench.report.run_charts import log_curves

    items = [{"stage": "pretrain", "iteration": 15, "loss": 1.0},      # last log line before the stage's end
             {"stage": "train", "iteration": 5, "loss": 0.5, "val_dice": 0.4},
             {"stage": "other", "iteration": 2, "loss": 0.1}, {"stage": "train", "iteration": "x", "loss": 1.0}]
    long = log_curves(items, {"pretrain": 20, "train": 10})
    assert long[long.what == "loss"].step.tolist() == [15, 25, 32]     # an unnamed stage follows the others
    assert long[long.what == "val_dice"].value.tolist() == [40.0]


# ------------------------------------------------------------------ 4, 6, 7, 8 on one small report

@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("labelled")
    root = base / "results"
    for seed in (0, 1):
        fake_run(root, "acdc", "mt", 10, seed, 60 + 2 * seed, paper_name="MT", units="voxels", cases=7)
        fake_run(root, "acdc", "unet-l", 10, seed, 55 + seed, paper_name="UNet-L", units="voxels", cases=7)
    hostile = 'x<script>alert("$|")</script>'
    fake_run(root, "acdc", "mt", 10, 0, 50, paper_name="MT", units="voxels", tag="w=0.3", iterations=40,
             overrides=("train.iterations=40", "method.consistency=0.3", f"method.note={hostile}"))
    out = base / "report"
    _report(root, out)
    return root, out


def test_every_distance_states_its_unit(labelled: tuple[Path, Path]) -> None:
    _, out = labelled
    index = (out / "index.html").read_text()
    assert "<th>HD95 [voxels]</th>" in index and "<th>ASD [voxels]</th>" in index and "<th>HD95</th>" not in index
    page = next((out / "runs").glob("*mt--r10-s0*.html")).read_text()
    assert "<th>HD95 [voxels]</th>" in page and "<th>ASSD [voxels]</th>" in page


def test_schedules_and_tags_read_as_the_values_they_changed(labelled: tuple[Path, Path]) -> None:
    _, out = labelled
    index = (out / "index.html").read_text()
    headings = re.findall(r"<h2>(.*?)</h2>", index)
    assert "acdc — quick (train.iterations=40)" in headings and "acdc — quick" in headings
    assert not any("+" in h for h in headings)                               # never the bare hash as a heading
    legend = re.search(r'<ul class="legend caption">(.*?)</ul>', index, re.DOTALL).group(1)
    assert "MT (w=0.3): <code>--set train.iterations=40; method.consistency=0.3; method.note=" in legend
    assert re.search(r'<td title="--set train.iterations=40; method.consistency=0.3; [^"]*">MT \(w=0.3\)</td>', index)
    page = next((out / "runs").glob("*mt-w-0.3*.html")).read_text()
    assert "quick (train.iterations=40)" in re.search(r"<h1>(.*?)</h1>", page).group(1)
    assert '<code class="overrides">train.iterations=40; method.consistency=0.3; method.note=' in page
    for text in [index, page]:                                               # inert: escaped, never markup
        assert "<script>alert" not in text and "x&lt;script&gt;alert(&#34;$|&#34;)&lt;/script&gt;" in text


def test_the_leaderboard_has_a_seeded_bootstrap_interval(labelled: tuple[Path, Path]) -> None:
    from sslbench.report.html import bootstrap_ci

    root, out = labelled
    pooled = []
    for seed in (0, 1):
        metrics = json.loads((root / "acdc/quick/mt/ratio-10" / f"seed-{seed}" / "metrics.json").read_text())
        pooled += [100 * np.mean([m["dice"] for m in c["metrics"].values()]) for c in metrics["metric_per_case"]]
    lo, hi = bootstrap_ci(pooled)
    assert lo < np.mean(pooled) < hi and bootstrap_ci(pooled) == (lo, hi)    # deterministic
    boards = "".join(re.findall(r'<table class="leaderboard.*?</table>', (out / "index.html").read_text(), re.DOTALL))
    rows = re.findall(r"<tr><td[^>]*>(MT)</td><td[^>]*>([^<]*)</td><td[^>]*>([^<]*)</td>", boards)
    assert rows == [("MT", "61.0 ± 1.4†", f"[{lo:.1f}, {hi:.1f}]")]       # beside mean ± sd over seeds
    assert bootstrap_ci([70.0] * 5) == (70.0, 70.0) and bootstrap_ci([1.0]) is None
    many = np.random.default_rng(1).normal(60, 5, 5000)                      # resampled in blocks: the same answer
    assert bootstrap_ci(many) == bootstrap_ci(list(many))


def test_a_run_page_lists_its_worst_cases(labelled: tuple[Path, Path]) -> None:
    _, out = labelled
    page = next((out / "runs").glob("*mt--r10-s0*.html")).read_text()
    table = re.search(r'<table class="sortable worst">(.*?)</table>', page, re.DOTALL).group(1)
    assert re.findall(r"<th>(.*?)</th>", table) == ["case", "DSC [%]", "RV DSC [%]", "Myo DSC [%]", "LV DSC [%]"]
    rows = re.findall(r"<tr><td>(case\d)</td><td>([\d.]+)</td>", table)
    assert [case for case, _ in rows] == ["case0", "case1", "case2", "case3", "case4"]   # fake_run: Dice rises with k
    assert rows[0][1] == f"{100 * (0.60 - 0.015):.2f}"
    assert "not stored: this run's metrics.json has no per-case voxel counts" in page


def test_voxel_counts_come_from_the_stored_counts(tmp_path: Path) -> None:
    from sslbench.report.html import voxel_counts

    root = tmp_path / "results"
    folder = fake_run(root, "acdc", "mt", 10, 0, 60, cases=2)
    counts = {"RV": (90, 110, 80), "Myo": (0, 0, 0), "LV": (10, 40, 5)}   # |pred|, |ref|, TP per case

    def add_counts(metrics: dict[str, Any]) -> None:
        for case in metrics["metric_per_case"]:
            for cls, (n_pred, n_ref, tp) in counts.items():
                case["metrics"][cls].update(n_pred=n_pred, n_ref=n_ref, dice=2 * tp / (n_pred + n_ref) if n_pred + n_ref else 1.0)

    _edit(folder / "metrics.json", add_counts)
    metrics = RunFiles(folder).read_metrics()
    assert voxel_counts(metrics) == [{"cls": "RV", "tp": 160, "fp": 20, "fn": 60}, {"cls": "Myo", "tp": 0, "fp": 0, "fn": 0},
                                     {"cls": "LV", "tp": 10, "fp": 10, "fn": 70}]
    out = tmp_path / "report"
    _report(root, out)
    page = next((out / "runs").glob("*.html")).read_text()
    assert "<tr><td>RV</td><td>160</td><td>20</td><td>60</td></tr>" in page
    metrics["metric_per_case"][0]["metrics"]["RV"]["dice"] = 0.123456        # counts that do not fit: none shown
    assert voxel_counts(metrics) is None


# ------------------------------------------------------------------ 5: TensorBoard

def _config(folder: Path, overrides: list[str]) -> RunFiles:
    """config.json as the run layer writes it (with the schedule it resolved: ``run.lifecycle``)."""
    from sslbench.run.specs import RunSpec, overrides_hash, protocol_overrides

    protocol = protocol_overrides(RunSpec("synthetic-cardiac", "mt", 5.0, 0, "quick", tuple(overrides), "w=0.3"))
    files = RunFiles(folder)
    files.create()
    files.write(RunFiles.CONFIG, {"hash": "x", "schedule_key": {
        "protocol_overrides": protocol, "profile_key": "quick" + (f"+{overrides_hash(protocol)}" if protocol else "")}, "spec": {
        "dataset": "synthetic-cardiac", "method": "mt", "ratio": 5.0, "seed": 0, "profile": "quick",
        "overrides": overrides, "tag": "w=0.3"}, "train": {"iterations": 40, "lr": 0.01, "milestones": [1, 2]},
        "data": {"split": None}, "method": {"consistency": 0.3}})
    return files


def test_tensorboard_logs_dice_in_percent_with_the_schedule_and_hyperparameters(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    from sslbench.run.specs import RunSpec, overrides_hash, protocol_overrides
    from sslbench.train.logbook import LossLog

    overrides = ["train.iterations=40", "method.consistency=0.3"]
    files = _config(tmp_path / "run", overrides)
    log = LossLog(files, "mt")
    log.add({"loss": 0.5})
    log.flush("train", 10, 0.01)
    for it, dice in ((10, 0.5), (20, 0.75), (30, 0.625)):
        log.write({"stage": "train", "iteration": it, "val_dice": dice})
    log.close()
    protocol = protocol_overrides(RunSpec("synthetic-cardiac", "mt", 5.0, 0, "quick", tuple(overrides), "w=0.3"))
    assert protocol == ["train.iterations=40"]
    (run,) = (tmp_path / "run" / "tb").iterdir()                             # TensorBoard's run name: the schedule
    assert run.name == f"quick+{overrides_hash(protocol)}_train.iterations=40"
    events = EventAccumulator(str(run))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/val_dice_percent")] == [(10, 50.0), (20, 75.0), (30, 62.5)]
    assert "train/val_dice" not in events.Tags()["scalars"]                  # never a fraction beside the %
    assert [e.value for e in events.Scalars("hparams/best_val_dice_percent")] == [75.0]
    assert [e.value for e in events.Scalars("hparams/last_val_dice_percent")] == [62.5]
    text = events.Tensors("run/config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "schedule: quick+" in text and '"consistency": 0.3' in text
    start = plugin_data_pb2.HParamsPluginData.FromString(
        events.PluginTagToContent("hparams")["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["method.consistency"].number_value == 0.3
    assert start.hparams["profile_key"].string_value == f"quick+{overrides_hash(protocol)}"
    assert start.hparams["train.milestones"].string_value == "[1, 2]"


def test_tensorboard_absent_or_a_planted_link_writes_no_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from sslbench.train.logbook import LossLog

    files = _config(tmp_path / "run", [])
    (tmp_path / "run" / "tb").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "run" / "tb" / "quick").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    log = LossLog(files, "mt")
    log.write({"stage": "train", "iteration": 10, "val_dice": 0.5})
    log.close()
    assert not list((tmp_path / "elsewhere").iterdir())                     # never written through a link
    real_import = builtins.__import__

    def no_tensorboard(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith(("torch.utils.tensorboard", "tensorboard")):
            raise ImportError("no tensorboard here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    files = _config(tmp_path / "bare", [])
    log = LossLog(files, "mt")
    log.write({"stage": "train", "iteration": 10, "val_dice": 0.5})
    log.close()
    assert not (tmp_path / "bare" / "tb").exists() and len(files.read_log()) == 1
    assert os.listdir(tmp_path / "bare")                                    # the log still written


def test_what_a_killed_report_left_beside_its_folder_is_removed_by_the_next(tmp_path: Path) -> None:
    """kill -9 during `bench report` leaves its half-built folder (and, mid-swap, the replaced one)
    beside the output; the next report of that folder removes them under its lock, and nothing else."""
    from sslbench.report.html import write_report

    root = tmp_path / "r"
    fake_run(root, "synthetic-cardiac", "mt", 5, 0, 60)
    out = tmp_path / "rep"
    leftovers = [tmp_path / ".rep.new+abc123", tmp_path / ".rep.old+def456"]
    for folder in leftovers:
        (folder / "runs").mkdir(parents=True)
        (folder / "runs" / "x.html.tmp").write_text("half")
    other = tmp_path / ".other.new+abc123"
    other.mkdir()
    write_report(root, out)
    assert not any(f.exists() for f in leftovers) and other.is_dir() and (out / "index.html").is_file()
