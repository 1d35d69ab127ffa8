"""The pieces of the SLURM executor that need no cluster: the stop request a signal raises, the
executor settings, and ``bench status``'s reading of run folders (tests/test_slurm.py runs the whole
thing against a real cluster)."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
from pathlib import Path

import pytest
import torch

from sslbench.base.atomic import write_json
from sslbench.base.errors import BenchError
from sslbench.base.locks import FolderLock, probe
from sslbench.base.run_files import RunFiles
from sslbench.run.queue import queued_job
from sslbench.run.slurm import SlurmSettings, load_settings
from sslbench.run.status import collect, render, summary_line
from sslbench.testing import TINY, build
from sslbench.train import interrupt

from .test_cli import bench


@pytest.fixture(autouse=True)
def no_stop_request() -> None:
    interrupt.clear()
    yield
    interrupt.clear()


def _log(folder: Path) -> list[dict]:
    """The training log without its wall-clock keys (``step_s``: never the same twice)."""
    from sslbench.train.logbook import TIMING_KEYS

    return [{k: v for k, v in json.loads(x).items() if k not in TIMING_KEYS}
            for x in (folder / "train_log.jsonl").read_text().splitlines()]


def test_a_stop_request_checkpoints_between_steps_and_resumes_to_the_same_log(tmp_path: Path) -> None:
    cfg = dataclasses.replace(TINY, iterations=12, val_every=6, log_every=4)
    for name in ("full", "cut"):
        (tmp_path / name).mkdir()
    full = build("mt", cfg=cfg, folder=tmp_path / "full")
    full.validate = (lambda: 0.5)
    full.fit()

    cut = build("mt", cfg=cfg, folder=tmp_path / "cut")
    cut.validate = (lambda: 0.5)
    steps = cut.train_step

    def step_then_signal():  # noqa: ANN202 - the signal arrives in the middle of a log interval
        out = steps()
        if cut.iteration == 11:
            os.kill(os.getpid(), signal.SIGUSR2)
        return out

    cut.train_step = step_then_signal
    previous = interrupt.stop_on_signals(["USR2"])
    try:
        with pytest.raises(interrupt.Interrupted, match=r"stopped at iteration 11 of stage 'train' \(signal SIGUSR2\)"):
            cut.fit()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    state = torch.load(tmp_path / "cut" / "ckpt" / "last.pt", weights_only=True)
    assert state["iteration"] == 11 and state["log_acc_n"] == 3   # iterations 9-11 not yet logged
    interrupt.clear()
    again = build("mt", seed=5, cfg=cfg, folder=tmp_path / "cut")
    again.validate = (lambda: 0.5)
    result = again.fit()
    assert result.resumed_from == 11
    assert _log(tmp_path / "cut") == _log(tmp_path / "full")       # same lines, same losses
    for k, v in full.method.state_dict().items():
        assert torch.equal(v, again.method.state_dict()[k]), k


def test_a_stop_requested_before_a_run_starts_none(tmp_path: Path, cache_dir: Path) -> None:
    from sslbench.run.executors import execute
    from sslbench.run.specs import RunOptions, expand

    specs = expand(["unet-l"], ["synthetic-cardiac"], [5], [0, 1], "quick",
                   ["train.iterations=4", "train.image_size=32", "train.base_width=4"])
    interrupt.request_stop("test")
    outcomes = execute(specs, RunOptions(results=tmp_path, progress=False), log=lambda m: None)
    assert [o.status for o in outcomes] == ["interrupted", "interrupted"]
    assert not list(tmp_path.rglob("config.json"))


def test_settings_file_then_flags(tmp_path: Path) -> None:
    f = tmp_path / "cluster.toml"
    f.write_text('[slurm]\npartition = "gpu"\ngpus_per_task = 1\nmem_gb = 32\ntime_min = 120\n'
                 'setup = ["module load cuda"]\n[slurm.sbatch]\nconstraint = "a100"\n')
    s = load_settings(f, ["mail-type=END"], partition="debug", qos=None, runs_per_task=2)
    assert (s.partition, s.gpus_per_task, s.mem_gb, s.time_min, s.runs_per_task) == ("debug", 1, 32.0, 120, 2)
    assert s.sbatch == {"constraint": "a100", "mail-type": "END"} and s.setup == ("module load cuda",)
    p = s.sbatch_parameters()
    assert p["partition"] == "debug" and p["gpus_per_task"] == 1 and p["mem"] == "32768M" and p["time"] == 120
    assert p["additional_parameters"] == {"constraint": "a100", "mail-type": "END"} and "qos" not in p
    assert SlurmSettings().sbatch_parameters()["signal_delay_s"] == 120


@pytest.mark.parametrize("text, message", [
    ("[slurm]\npartiton = 'gpu'\n", "unknown key slurm.partiton"),
    ("[slurm]\ntime_min = 'long'\n", "slurm.time_min = 'long' is not an int"),
    ("[slurm]\ngpus_per_task = 1.5\n", "slurm.gpus_per_task = 1.5 is not an int"),
    ("[slurm]\ngpus_per_task = -2\n", "gpus_per_task must be >= 0, got -2"),
    ("[slurm]\ncpus_per_task = 0\n", "cpus_per_task must be >= 1, got 0"),
    ("[slurm]\npartition = ['a', 'b']\n", "slurm.partition = ['a', 'b'] is not a str"),
    ("[slurm]\nmem_gb = -4\n", "mem_gb must be >= 0.001"),
    ("[slurm]\ntime_min = 1\nsignal_delay_s = 30\n", "keep time_min * 60 >= signal_delay_s + 90"),
    ("partition = 'gpu'\n", "expected one [slurm] table"),
    ("[slurm\n", "unreadable executor config"),
])
def test_bad_settings_files_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "cluster.toml"
    f.write_text(text)
    with pytest.raises(BenchError) as info:
        load_settings(f)
    assert str(info.value).startswith(f"{f}: ") and message in str(info.value)


def test_bad_settings_flags() -> None:
    with pytest.raises(BenchError, match="expected KEY=VALUE"):
        load_settings(None, ["constraint"])
    with pytest.raises(BenchError, match="runs_per_task must be >= 1"):
        load_settings(None, runs_per_task=0)


def test_slurm_options_need_the_slurm_executor(tmp_path: Path) -> None:
    code, _, err = bench("run", "--results", str(tmp_path), "--partition", "gpu")
    assert code == 2 and "--partition needs --executor slurm" in err
    code, _, err = bench("run", "--results", str(tmp_path), "--executor", "slurm", "--jobs", "2")
    assert code == 2 and "--runs-per-task" in err
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_slurm_without_sbatch_is_one_clear_error(tmp_path: Path, cache_dir: Path, monkeypatch) -> None:  # noqa: ANN001
    import sslbench.run.slurm as slurm

    monkeypatch.setattr(slurm.shutil, "which", lambda name: None)
    code, _, err = bench("run", "--results", str(tmp_path / "r"), "--executor", "slurm")
    assert code == 2 and "sbatch not found" in err and not (tmp_path / "r").exists()


def _folder(root: Path, method: str, seed: int = 0) -> Path:
    folder = root / "ds" / "quick" / method / "ratio-5" / f"seed-{seed}"
    folder.mkdir(parents=True)
    write_json(folder / "config.json", {"hash": "x"})
    return folder


def test_status_shows_an_evaluation_after_training_not_a_finished_eta(tmp_path: Path) -> None:
    """A run whose training is over and whose test set is being predicted (an LA set takes tens of
    minutes on a CPU): which weights, how many volumes, this pass's time left from its pace."""
    running = _folder(tmp_path, "running")
    write_json(running / "progress.json", {
        "stage": "train", "iteration": 100, "stages": {"train": 100}, "it_s": 10.0, "host": "node7",
        "updated": 1000.0, "evaluation": {"weights": "last", "done": 5, "cases": 20, "started": 900.0}})
    finished = _folder(tmp_path, "unet-l")  # its evaluation time is no part of a pass under way
    write_json(finished / "run.json", {
        "dataset": "ds", "profile": "quick", "method": "unet-l", "paper_name": "UNet-L", "ratio": 5, "seed": 0,
        "summary": {"dice": 0.8, "assd": 1.5, "hd95": 3.0}, "selection": {"rule": "last", "iteration": 10},
        "timing": {"wall_s": 100.0, "eval_s": 1000.0}})
    (finished / "DONE").write_text("")
    left = _folder(tmp_path, "left")  # interrupted while evaluating: no evaluation is going on
    write_json(left / "progress.json", {
        "stage": "train", "iteration": 100, "stages": {"train": 100},
        "evaluation": {"weights": "selected", "done": 3, "cases": 20, "started": 900.0}})
    with FolderLock(running / ".lock"):
        states = {s.run.split("/")[2]: s for s in collect(tmp_path, None)}
    r = states["running"]
    assert r.evaluating == "evaluating the last weights: 5/20 volumes"
    assert r.eta_s == 300.0                                        # 15 volumes left at 20 s a volume
    assert states["left"].state == "pending" and states["left"].evaluating is None
    text = render([r])
    assert "evaluating the last weights: 5/20 volumes; ETA 5m00s (this pass); on node7" in text
    assert "train 100/100" not in text
    write_json(running / "progress.json", {  # a pace from a damaged file: no ETA of millennia
        "stage": "train", "iteration": 100, "stages": {"train": 100}, "updated": 9e8,
        "evaluation": {"weights": "last", "done": 1, "cases": 10**7, "started": 1.0}})
    with FolderLock(running / ".lock"):
        (r,) = [s for s in collect(tmp_path, None) if s.run.split("/")[2] == "running"]
    assert r.evaluating == "evaluating the last weights: 1/10000000 volumes" and r.eta_s is None
    for bad in ({"weights": "best", "done": 1, "cases": 2, "started": 1.0},
                {"weights": "last", "done": 3, "cases": 2, "started": 1.0},
                {"weights": "last", "done": 1, "cases": 2}):
        write_json(running / "progress.json", {"stage": "train", "iteration": 1, "stages": {"train": 2},
                                               "evaluation": bad})
        (state,) = [s for s in collect(tmp_path, None) if s.run.split("/")[2] == "running"]
        assert state.note is not None and state.note.startswith("progress.json damaged"), bad


def test_a_training_runs_eta_adds_the_evaluation_its_dataset_took(tmp_path: Path) -> None:
    """Training left plus the mean test-set evaluation of finished runs of the same dataset and
    profile; another dataset's evaluation is not its own."""
    def done(method: str, dataset: str, eval_s: float) -> None:
        folder = tmp_path / dataset / "quick" / method / "ratio-5" / "seed-0"
        folder.mkdir(parents=True)
        write_json(folder / "config.json", {"hash": "x"})
        write_json(folder / "run.json", {
            "dataset": dataset, "profile": "quick", "method": method, "paper_name": method.upper(), "ratio": 5,
            "seed": 0, "summary": {"dice": 0.8, "assd": 1.5, "hd95": 3.0}, "selection": {"rule": "last", "iteration": 10},
            "timing": {"wall_s": 100.0, "eval_s": eval_s}})
        (folder / "DONE").write_text("")

    done("unet-l", "ds", 20.0)
    done("mt", "ds", 40.0)
    done("mt", "other", 500.0)
    running = _folder(tmp_path, "uamt")
    write_json(running / "progress.json", {"stage": "train", "iteration": 300, "stages": {"train": 1000},
                                           "it_s": 10.0})
    with FolderLock(running / ".lock"):
        (r,) = [s for s in collect(tmp_path, None) if s.state == "running"]
    assert r.eta_s == 70.0 + 30.0                                   # 700 iterations at 10 it/s, then ~30 s


def test_status_reads_every_state_from_the_folders(tmp_path: Path) -> None:
    done = _folder(tmp_path, "done")
    write_json(done / "run.json", {
        "dataset": "synthetic-cardiac", "profile": "quick", "method": "mt", "paper_name": "MT", "ratio": 5, "seed": 0,
        "summary": {"dice": 0.8, "assd": 1.5, "hd95": 3.0}, "selection": {"rule": "best", "iteration": 10},
        "timing": {"wall_s": 100.0}})
    (done / "DONE").write_text("now\n")
    running = _folder(tmp_path, "running")
    write_json(running / "progress.json", {"stage": "train", "iteration": 300, "stages": {"pretrain": 100, "train": 1000},
                                           "it_s": 10.0, "host": "node7", "pid": 1})
    failed = _folder(tmp_path, "failed")
    write_json(failed / "failed.json", {"error": "RuntimeError: out of memory", "host": "node3"})
    stale = _folder(tmp_path, "stale")
    (stale / ".lock").write_text(json.dumps({"host": "node9", "pid": 4242, "since": "2026-01-01T00:00:00"}))
    pending = _folder(tmp_path, "pending")
    write_json(pending / "slurm.json", {"job_id": "77_3"})
    resumable = _folder(tmp_path, "resumable")
    (resumable / "ckpt").mkdir()
    (resumable / "ckpt" / "last.pt").write_bytes(b"")
    write_json(resumable / "progress.json", {"stage": "train", "iteration": 50, "stages": {"train": 100},
                                             "checkpoint": {"stage": "train", "iteration": 40}})
    (tmp_path / "slurm-logs" / "77_3").mkdir(parents=True)                  # not a run folder

    with FolderLock(running / ".lock"):
        assert probe(running / ".lock")[0] == "held"
        states = {s.run.split("/")[2]: s for s in collect(tmp_path, {"77_3": "PENDING"})}
    assert {k: s.state for k, s in states.items()} == {
        "done": "done", "running": "running", "failed": "failed", "stale": "abandoned", "pending": "pending",
        "resumable": "pending"}
    r = states["running"]
    assert (r.stage, r.iteration, r.total, r.it_s, r.host) == ("train", 300, 1000, 10.0, "node7")
    assert r.eta_s == 70.0                                          # 700 iterations left at 10 it/s
    assert states["failed"].error == "RuntimeError: out of memory"
    assert states["stale"].note == "lock left by pid 4242 on node9 since 2026-01-01T00:00:00"
    assert (states["pending"].job_id, states["pending"].slurm_state) == ("77_3", "PENDING")
    assert states["resumable"].note == "interrupted; resumes at iteration 40 of stage 'train'"  # last.pt's, not 50
    assert probe(stale / ".lock")[0] == "stale" and (stale / ".lock").exists()   # status never removes it
    text = render(list(states.values()))
    assert "ETA 1m10s" in text and "on node7" in text and "job 77_3 PENDING" in text
    assert "Dice 80.0  ASSD 1.50" in text                          # a finished run shows its score
    # the sweep's ETA, one process: the running run's 70 s + 3 pending or abandoned runs x 100 s (the done run's wall)
    assert text.endswith("6 run(s): 1 done, 1 running, 2 pending, 1 failed, 1 abandoned; ETA 6m10s (one process)")
    assert summary_line([]) == "0 run(s): none"
    # once the job has left the queue, the run is no longer queued; a failure shows again
    pending_files = RunFiles(pending)
    assert queued_job(pending_files, {}) is None
    assert queued_job(pending_files, {"77_3": "RUNNING"}) == ("77_3", "RUNNING")


def test_bench_status_command(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "mt")
    write_json(folder / "failed.json", {"error": "boom"})
    code, out, _ = bench("status", "--results", str(tmp_path), "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["runs"][0]["state"] == "failed" and data["summary"] == "1 run(s): 1 failed"
    code, _, err = bench("status", "--results", str(tmp_path / "nowhere"))
    assert code == 2 and "no such results folder" in err
