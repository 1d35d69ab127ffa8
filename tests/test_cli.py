"""End to end through the `bench` CLI on the embedded phantom with a tiny schedule."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from sslbench.cli import main

from .conftest import TINY_RUN

pytestmark = pytest.mark.slow


def bench(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), prog_name="bench")
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> tuple[Path, str, str]:
    root = tmp_path_factory.mktemp("results")
    code, out, err = bench("run", "--methods", "unet-f,unet-l,mt", "--ratios", "5,10", "--seeds", "0,1",
                           "--results", str(root), "--quiet", *TINY_RUN)
    assert code == 0, err
    return root, out, err


def test_run_writes_records_and_prints_the_table(sweep: tuple[Path, str, str]) -> None:
    root, out, err = sweep
    assert "[10/10]" in err                      # unet-f once per seed, the others per ratio and seed
    assert "(sweep: 1/10, ETA" in err              # the sweep's ETA after each finished run
    for name in ("UNet-F", "UNet-L", "MT"):
        assert f"| {name}" in out
    records = [json.loads(p.read_text()) for p in root.rglob("run.json")]
    assert len(records) == 10
    rec = next(r for r in records if r["method"] == "mt")
    for key in ("summary", "per_class", "selection", "timing", "env", "metric_policy", "config_hash",
                "labeled_cases", "inference_net", "method_source"):
        assert key in rec
    assert 0.0 <= rec["summary"]["dice"] <= 1.0 and rec["summary"]["assd"] >= 0.0
    assert rec["env"]["torch"] == torch.__version__
    folder = next(root.rglob("mt/ratio-5/seed-0"))
    for name in ("config.json", "metrics.json", "train_log.jsonl", "DONE", "ckpt/last.pt"):
        assert (folder / name).exists(), name
    metrics = json.loads((folder / "metrics.json").read_text())
    assert len(metrics["metric_per_case"]) == rec["n_eval_volumes"]
    assert "both_empty" in metrics["policy"]


def test_second_run_is_a_no_op(sweep: tuple[Path, str, str]) -> None:
    root, _, _ = sweep
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("run.json")}
    code, out, err = bench("run", "--methods", "unet-f,unet-l,mt", "--ratios", "5,10", "--seeds", "0,1",
                           "--results", str(root), "--quiet", *TINY_RUN)
    assert code == 0
    assert "nothing to do: all 10 run(s) already done" in err
    assert stamps == {p: p.stat().st_mtime_ns for p in root.rglob("run.json")}


def test_changed_config_needs_force(sweep: tuple[Path, str, str]) -> None:
    root, _, _ = sweep
    code, _, err = bench("run", "--methods", "unet-l", "--ratios", "5", "--results", str(root), "--quiet",
                         *TINY_RUN, "--set", "train.lr=0.02")
    assert code == 2 and "another configuration" in err and "--force" in err
    assert "train.lr 0.01 -> 0.02" in err                          # the key that differs, both values


def test_a_shipped_sweep_by_name(tmp_path: Path) -> None:
    from sslbench.base.errors import BenchError
    from sslbench.run.sweeps import find_sweep, shipped_sweeps

    assert {"table1", "beyond", "acdc-cpu", "smoke"} <= set(shipped_sweeps())
    assert find_sweep("table1").name == "table1.toml" and find_sweep("table1.toml").name == "table1.toml"
    mine = tmp_path / "mine.toml"
    mine.write_text("[sweep]\nmethods = ['mt']\ndatasets = ['synthetic-cardiac']\n")
    assert find_sweep(str(mine)) == mine
    with pytest.raises(BenchError, match="nor a shipped sweep .*table1"):
        find_sweep("tabel1")


def test_table_formats(sweep: tuple[Path, str, str]) -> None:
    root, _, _ = sweep
    code, latex, _ = bench("table", "--results", str(root), "--format", "latex")
    assert code == 0 and "\\begin{tabular}" in latex and "UNet-L" in latex and "$\\pm$" in latex
    code, text, _ = bench("table", "--results", str(root), "--format", "csv")
    assert code == 0
    df = pd.read_csv(io.StringIO(text))
    assert list(df.Method) == ["UNet-F", "UNet-L", "MT"]         # the paper's row order
    assert list(df.columns[:7]) == ["dataset", "profile_key", "profile", "eval_split", "checkpoint", "dsc_unit", "asd_unit"]
    assert list(df.columns[8:]) == [f"{r}% {m} {s}" for r in (5, 10) for m in ("DSC", "ASD") for s in ("mean", "sd", "n")]
    assert df.loc[0, "5% DSC mean"] == df.loc[0, "10% DSC mean"]  # UNet-F fills every ratio column
    mean, std = float(df.loc[1, "5% DSC mean"]), float(df.loc[1, "5% DSC sd"])   # numbers, not "a ± b" strings
    records = [json.loads(p.read_text()) for p in root.rglob("unet-l/ratio-5/*/run.json")]
    dsc = [100 * r["summary"]["dice"] for r in records]
    assert mean == pytest.approx(sum(dsc) / 2, abs=1e-3)
    assert std == pytest.approx(abs(dsc[0] - dsc[1]) / 2**0.5, abs=1e-3)
    out = root / "t.md"
    assert bench("table", "--results", str(root), "-o", str(out))[0] == 0 and "| MT" in out.read_text()


@pytest.mark.parametrize("args, message", [
    (("run", "--methods", "nope"), "unknown method 'nope'"),
    (("run", "--dataset", "nope"), "unknown dataset 'nope'"),
    (("run", "--set", "train.nope=1"), "--set train.nope: unknown key"),
    (("run", "--profile", "nope"), "unknown profile 'nope'"),
    (("run", "--ratios", "0"), "label ratio"),
    (("run", "--plugin", "no_such_plugin_module"), "cannot import plugin module"),
    (("table", "--results", "/nonexistent/sslbench"), "no such results folder"),
])
def test_bad_input_exits_2_with_one_line(args: tuple[str, ...], message: str, tmp_path: Path) -> None:
    code, out, err = bench(*args, "--results", str(tmp_path / "r")) if args[0] == "run" else bench(*args)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert not (tmp_path / "r").exists()                            # nothing half written


def test_methods_and_datasets_listing() -> None:
    code, out, _ = bench("methods")
    assert code == 0
    for name in ("unet-f", "unet-l", "mt", "built-in", "sslbench.methods.mean_teacher.MeanTeacher"):
        assert name in out
    code, out, _ = bench("datasets")
    assert code == 0 and "synthetic-cardiac" in out and "RV, Myo, LV" in out


def test_killed_run_resumes_from_its_checkpoint(tmp_path: Path, cache_dir: Path) -> None:
    args = [sys.executable, "-m", "sslbench.cli", "run", "--methods", "unet-l", "--results", str(tmp_path),
            "--quiet", "--no-table", *TINY_RUN, "--set", "train.iterations=600", "--set", "train.val_every=10"]
    env = {**os.environ, "SSLBENCH_CACHE": str(cache_dir), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = tmp_path / "synthetic-cardiac/quick/unet-l/ratio-5/seed-0/ckpt/last.pt"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and ckpt.stat().st_size > 0:
            state = torch.load(ckpt, weights_only=True)
            if state["iteration"] >= 20:
                break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(ckpt, weights_only=True)["iteration"]
    assert 20 <= killed_at < 600
    assert not (ckpt.parent.parent / "DONE").exists()
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    assert f"resumed unet-l synthetic-cardiac 5% seed 0 at iteration {killed_at}" in result.stderr
    record = json.loads((ckpt.parent.parent / "run.json").read_text())
    assert record["timing"]["resumed_from"] == killed_at
    logged = [json.loads(x) for x in (ckpt.parent.parent / "train_log.jsonl").read_text().splitlines()]
    val_iters = [x["iteration"] for x in logged if "val_dice" in x]
    assert val_iters == list(range(10, 601, 10))          # no duplicates from the killed attempt


def test_jobs_run_in_worker_processes(tmp_path: Path, cache_dir: Path) -> None:
    code, out, err = bench("run", "--methods", "unet-l,mt", "--ratios", "5", "--results", str(tmp_path),
                           "--jobs", "2", "--no-table", *TINY_RUN)
    assert code == 0, err
    assert len(list(tmp_path.rglob("DONE"))) == 2
    assert "[2/2]" in err


def test_threads_set_this_runs_threads_and_come_back_after(tmp_path: Path, cache_dir: Path) -> None:
    """--threads sets torch's threads for the runs of this process (recorded in run.json's env) and
    gives the caller's setting back; on SLURM it is one error line (the task's CPUs decide there).
    The record splits its training time (validation passes, checkpoint writes)."""
    import torch

    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    code, _, err = bench("run", "--methods", "unet-l", "--ratios", "5", "--results", str(tmp_path), "--quiet",
                         "--no-table", "--threads", str(wanted), *TINY_RUN)
    assert code == 0, err
    record = json.loads(next(tmp_path.rglob("run.json")).read_text())
    assert record["env"]["threads"] == wanted
    assert torch.get_num_threads() == before
    timing = record["timing"]  # the training seconds split: validation passes and checkpoint writes within
    assert 0 < timing["val_s"] and 0 < timing["checkpoint_s"] and timing["val_s"] + timing["checkpoint_s"] < timing["train_s"]
    code, _, err = bench("run", "--executor", "slurm", "--threads", "1", "--results", str(tmp_path / "s"))
    assert code == 2 and "--threads is for the local executor" in err


def test_prepare_command(cache_dir: Path) -> None:
    code, out, _ = bench("prepare", "synthetic-cardiac", "--cache", str(cache_dir))
    assert code == 0 and "40 train, 8 val, 20 test volumes" in out
    code, _, err = bench("prepare", "synthetic-cardiac", "--raw", "/nonexistent/raw")
    assert code == 2 and "no such folder" in err


def test_every_baseline_runs_and_shows_in_the_table(tmp_path: Path, cache_dir: Path) -> None:
    names = "em,cct,dan,urpc,dct,ict,uamt,cps"
    code, out, err = bench("run", "--methods", names, "--results", str(tmp_path), "--quiet", *TINY_RUN)
    assert code == 0, err
    rows = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| ")][1:]
    assert rows == ["EM", "CCT", "DAN", "URPC", "DCT", "ICT", "UAMT", "CPS"]      # the paper's order
    cps = json.loads(next(tmp_path.rglob("cps/*/*/run.json")).read_text())
    assert cps["inference_net"] == "model1"
    log = (next(tmp_path.rglob("dan/*/*/train_log.jsonl"))).read_text()
    assert "disc/loss_disc" in log                                      # the extra optimiser's loss is logged


def test_a_failing_run_does_not_stop_the_sweep(tmp_path: Path, cache_dir: Path, monkeypatch) -> None:  # noqa: ANN001
    from sslbench.base.errors import TrainingDiverged
    from sslbench.methods.supervised import UNetL

    def explode(self, batch, step):  # noqa: ANN001, ANN202
        raise TrainingDiverged("loss_sup became NaN/Inf")

    monkeypatch.setattr(UNetL, "training_step", explode)     # unet-f inherits it too; mt does not
    code, out, err = bench("run", "--methods", "unet-l,mt", "--results", str(tmp_path), "--quiet", *TINY_RUN)
    assert code == 1
    assert "unet-l synthetic-cardiac 5% seed 0: FAILED: loss_sup became NaN/Inf" in err
    assert "| MT" in out and len(list(tmp_path.rglob("DONE"))) == 1


def test_paper_table_layout_vs_paper_and_cost(sweep: tuple[Path, str, str]) -> None:
    root, _, _ = sweep
    code, text, err = bench("table", "--results", str(root), "--table", "1", "--dataset", "synthetic-cardiac",
                            "--vs-paper", "--paper-dataset", "acdc", "--format", "csv")
    assert code == 0, err
    assert "warning: table 1, synthetic-cardiac" in err and "EM 5%" in err        # missing rows are flagged
    df = pd.read_csv(io.StringIO(text))
    assert list(df.Method[:4]) == ["UNet-F", "UNet-L", "EM", "CCT"] and list(df.Method[-1:]) == ["MONA"]
    unet_l = df[df.Method == "UNet-L"].iloc[0]
    assert unet_l["5% DSC paper"] == 51.7 and unet_l["10% DSC paper"] == 74.4   # ACDC, Table 1
    assert unet_l["5% DSC Δ"] == pytest.approx(unet_l["5% DSC mean"] - 51.7, abs=1e-3)
    assert df[df.Method == "EM"].iloc[0]["5% DSC n"] == 0 and pd.isna(df[df.Method == "EM"].iloc[0]["5% DSC mean"])
    code, md, _ = bench("table", "--results", str(root), "--table", "1", "--dataset", "synthetic-cardiac")
    assert code == 0 and md.count("**") >= 4                                         # best per column in bold
    code, md, err = bench("table", "--results", str(root), "--table", "1", "--vs-paper", "--dataset", "acdc")
    unet_l_acdc = next(line for line in md.splitlines() if line.startswith("| UNet-L"))
    assert code == 0 and "| 14.5 " in unet_l_acdc and "| 74.4 " in unet_l_acdc   # ACDC UNet-L 1 % / 10 % published
    code, md, _ = bench("table", "--results", str(root), "--cost", "--format", "csv")
    cost = pd.read_csv(io.StringIO(md))
    assert set(cost.Method) == {"UNet-F", "UNet-L", "MT"} and (cost["params [M]"] > 0).all()
    assert (cost.precision == "fp32").all()                  # CPU runs never autocast
    assert set(cost.iterations.astype(str)) == {"12"}       # one stage of 12 iterations
    assert bench("table", "--results", str(root), "--vs-paper")[0] == 2


def test_sweep_files(tmp_path: Path, cache_dir: Path) -> None:
    from sslbench.base.config import configs_dir, resolve_config
    from sslbench.method import METHODS
    from sslbench.run.sweeps import load_sweep

    warnings: list[str] = []
    specs = load_sweep(configs_dir() / "sweeps" / "table1.toml", warn=warnings.append)
    assert {s.dataset for s in specs} == {"acdc", "lits"} and {s.profile for s in specs} == {"paper"}
    assert len({(s.method, s.ratio) for s in specs if s.method == "mt"}) == 3 and len({s.seed for s in specs}) == 3
    assert len([s for s in specs if s.method == "unet-f"]) == 2 * 3                 # once per dataset and seed
    assert not warnings and {"gcl", "scs", "plc", "mona"} <= {s.method for s in specs}
    for name in ("table2", "table3", "table4", "table5", "smoke"):
        for spec in load_sweep(configs_dir() / "sweeps" / f"{name}.toml", warn=warnings.append):
            cls = METHODS.get(spec.method)   # every ablation / variant key exists on its method's config
            resolve_config(cls.Config, spec.profile, spec.dataset, spec.method, spec.overrides)
    assert not warnings
    table5 = load_sweep(configs_dir() / "sweeps" / "table5.toml")
    tuned = {s.method for s in table5 if s.tag == "with fine-tuning"}
    assert tuned == {"mocov2-ft", "knn-moco-ft", "simclr-ft", "byol-ft", "isd-ft", "mona"}
    assert all(METHODS.get(s.method).stages == ("pretrain", "train") for s in table5 if s.tag == "with fine-tuning")
    sweep = tmp_path / "mini.toml"
    sets = ", ".join(f'"{v}"' for v in TINY_RUN[1::2])
    sweep.write_text(f'[sweep]\nmethods = ["mt"]\ndatasets = ["synthetic-cardiac"]\nratios = [5]\nseeds = [0]\n'
                     f'profile = "quick"\nset = [{sets}]\n[[variant]]\ntag = "a"\n[[variant]]\ntag = "b"\n'
                     f'set = ["method.consistency=0.5"]\n')
    code, out, err = bench("run", "--sweep", str(sweep), "--results", str(tmp_path / "r"), "--quiet")
    assert code == 0, err
    assert "| MT (a)" in out and "| MT (b)" in out
    sweep.write_text("[sweep]\nmethods = 3\n")
    assert bench("run", "--sweep", str(sweep), "--results", str(tmp_path / "r"))[0] == 2


def test_every_paper_table_and_per_class(sweep: tuple[Path, str, str]) -> None:
    root, _, _ = sweep
    for n in range(1, 6):
        code, out, err = bench("table", "--results", str(root), "--table", str(n))
        assert code == 0 and out.strip(), err
    code, out, _ = bench("table", "--results", str(root), "--table", "2")
    assert "w/ tailness" in out and "—" in out
    assert bench("table", "--results", str(root), "--table", "9")[0] == 2
    code, text, _ = bench("table", "--results", str(root), "--per-class", "--format", "csv")
    df = pd.read_csv(io.StringIO(text))
    assert {"5% RV DSC mean", "5% Myo DSC mean", "5% LV DSC sd", "10% LV ASD n"} <= set(df.columns)


def test_mona_ablation_and_fine_tuning_rows_fill_the_paper_tables(tmp_path: Path, cache_dir: Path) -> None:
    """A Table 2 / Table 5 style sweep of tiny two-stage runs: each tagged variant fills its row, and
    the records keep per-stage time and peak memory."""
    sets = ", ".join(f'"{v}"' for v in [*TINY_RUN[1::2], "train.pretrain_iterations=4"])
    sweep = tmp_path / "ablation.toml"
    sweep.write_text(
        f'[sweep]\nmethods = ["mona"]\ndatasets = ["synthetic-cardiac"]\nratios = [5]\nseeds = [0]\n'
        f'profile = "quick"\nset = [{sets}]\n'
        '[[variant]]\ntag = "Vanilla"\n'
        'set = ["method.tailness=false", "method.consistency_loss=false", "method.diversity=false"]\n'
        '[[variant]]\ntag = "all three"\n'
        '[[variant]]\ntag = "with fine-tuning"\nmethods = ["simclr-ft"]\nset = []\n')
    root = tmp_path / "r"
    code, _, err = bench("run", "--sweep", str(sweep), "--results", str(root), "--quiet", "--no-table")
    assert code == 0, err
    records = [json.loads(p.read_text()) for p in root.rglob("run.json")]
    assert {(r["method"], r["variant"]) for r in records} == {
        ("mona", "Vanilla"), ("mona", "all three"), ("simclr-ft", "with fine-tuning")}
    for rec in records:
        assert set(rec["timing"]["stage_s"]) == {"pretrain", "train"}
        assert set(rec["timing"]["stage_peak_mem_mb"]) == {"pretrain", "train"}
    code, out, err = bench("table", "--results", str(root), "--table", "2", "--format", "csv")
    assert code == 0, err
    df = pd.read_csv(io.StringIO(out))
    row = {v: df[df.Variant == v].iloc[0] for v in ("Vanilla", "all three", "w/ tailness")}
    assert row["Vanilla"]["5% DSC n"] > 0 and row["all three"]["5% DSC n"] > 0
    assert row["w/ tailness"]["5% DSC n"] == 0 and pd.isna(row["w/ tailness"]["5% DSC mean"])  # not run: missing
    code, out, err = bench("table", "--results", str(root), "--table", "5", "--format", "csv")
    df = pd.read_csv(io.StringIO(out))
    tuned = df[(df.Method == "SimCLR") & (df.Variant == "with fine-tuning")].iloc[0]
    assert tuned["5% DSC n"] > 0
    code, out, err = bench("table", "--results", str(root), "--cost", "--format", "csv")
    cost = pd.read_csv(io.StringIO(out))
    assert set(cost.iterations) == {"4 + 12"}          # two-stage rows: pre-training + training steps


def test_every_run_scores_its_last_weights_too(sweep: tuple[Path, str, str]) -> None:
    """Both ends of the checkpoint protocol: the selected weights (metrics.json, record summary) and the
    last ones (metrics-last.json, record "last"); the same numbers when the best was the last."""
    root, _, _ = sweep
    for record_path in root.rglob("run.json"):
        rec = json.loads(record_path.read_text())
        last = json.loads((record_path.parent / "metrics-last.json").read_text())
        assert rec["last"]["iteration"] == 12 and rec["last"]["summary"] == last["foreground_mean"]
        assert rec["schedule"]["image_size"] == 32 and rec["protocol_overrides"] and rec["overrides_hash"]
        if rec["selection"]["iteration"] == 12:
            assert rec["summary"] == rec["last"]["summary"]


def test_a_dry_run_lists_the_runs_and_writes_nothing(sweep: tuple[Path, str, str]) -> None:
    root, _, _ = sweep
    before = sorted(p for p in root.rglob("*"))
    code, out, err = bench("run", "--methods", "unet-l,mt", "--ratios", "5,20", "--seeds", "0", "--results", str(root),
                           "--dry-run", *TINY_RUN)
    assert code == 0, err
    lines = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ") and "state" not in line}
    assert "| done" in lines["unet-l synthetic-cardiac 5% seed 0"]
    assert "| to train" in lines["mt synthetic-cardiac 20% seed 0"]
    assert "4 run(s): 2 done, 2 to train or resume; about" in out          # estimated from the finished runs
    assert sorted(p for p in root.rglob("*")) == before                    # nothing written


def test_bench_predict_writes_a_finished_runs_predictions_from_its_stored_weights(sweep: tuple[Path, str, str],
                                                                                   cache_dir: Path) -> None:
    """No retraining: the predictions of the stored best weights, whose Dice per case and class is the
    one the run's metrics.json recorded."""
    import numpy as np

    from sslbench.cache import prepare

    root, _, _ = sweep
    folder = next(root.rglob("mt/ratio-5/seed-0"))
    code, _, err = bench("run", "--methods", "mt", "--ratios", "5", "--seeds", "0", "--results", str(root), "--quiet",
                         "--no-table", "--save-predictions", *TINY_RUN)
    assert code == 0 and f"bench predict {folder}" in err           # a finished run: saying how, not silently
    metrics = {c["case"]: c["metrics"] for c in json.loads((folder / "metrics.json").read_text())["metric_per_case"]}
    picked = sorted(metrics)[:2]
    code, _, err = bench("predict", str(folder), "--cases", ",".join(picked))
    assert code == 0, err
    ds = prepare("synthetic-cardiac", cache_root=cache_dir)
    for case in picked:
        pred = np.load(folder / "predictions" / f"{case}.npy")
        label = np.asarray(ds.volume(case)[1])
        for k, cls in enumerate(ds.classes[1:], 1):
            p, g = pred == k, label == k
            dice = 2 * (p & g).sum() / (p.sum() + g.sum()) if p.sum() + g.sum() else 1.0
            assert dice == pytest.approx(metrics[case][cls]["dice"], abs=1e-9)
    assert bench("predict", str(folder), "--cases", "nope")[0] == 2


def test_bench_predict_builds_the_network_its_run_stored_not_todays_profile(sweep: tuple[Path, str, str],
                                                                            tmp_path: Path) -> None:
    """The run's config.json, not today's TOML files, decides the network: with its --set items gone
    from the stored spec, the profile would give a UNet of width 16 that the width-4 weights do not fit."""
    import shutil

    root, _, _ = sweep
    folder = tmp_path / "run"
    shutil.copytree(next(root.rglob("unet-l/ratio-5/seed-0")), folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["train"]["base_width"] == 4
    config["spec"]["overrides"] = []
    (folder / "config.json").write_text(json.dumps(config))
    code, _, err = bench("predict", str(folder))
    assert code == 0, err
    assert sorted(p.name for p in (folder / "predictions").iterdir())
    config["train"]["no_such_key"] = 1                                  # a key this code does not know
    (folder / "config.json").write_text(json.dumps(config))
    code, _, err = bench("predict", str(folder))
    assert code == 2 and "config.json: not a run configuration this code can load" in err, err


def test_a_sweep_shows_its_own_bar_above_each_runs(tmp_path: Path, cache_dir: Path) -> None:
    """Sweep-level progress: the sweep's bar (runs finished, ETA) and each run's bar with Dice in %."""
    code, _, err = bench("run", "--methods", "unet-l", "--seeds", "0,1", "--results", str(tmp_path), "--no-table",
                         *TINY_RUN)
    assert code == 0, err
    assert "sweep: 0/2 runs" in err and "2/2 runs" in err
    assert "(sweep: 1/2, ETA" in err and "sweep (ETA " in err  # the ETA after the first run: its line and the bar
    code, _, err = bench("run", "--methods", "unet-l", "--seeds", "0", "--results", str(tmp_path / "one"),
                         "--no-table", *TINY_RUN)
    assert code == 0 and "sweep:" not in err.replace("(sweep:", "")  # one run: no sweep bar
