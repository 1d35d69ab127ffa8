"""``--executor slurm`` and ``bench status`` against a real SLURM cluster (no mock).

Start one with ``tests/slurm/start-cluster.sh`` (as root; ``.ci/run`` does) and export the
``SLURM_CONF`` it prints; without a cluster that answers, every test here is skipped with the reason.
Runs are tiny (seconds) except the two that need a run to outlive SLURM's one-minute minimum time
limit. Array tasks get one CPU each and the local baselines run with one thread, so records compare
bit for bit.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from .conftest import TINY_RUN
from .test_cli import bench

pytestmark = pytest.mark.slurm

# a run long enough (~80 s of training on one core here) to outlive a one-minute time limit: with
# signal_delay_s = 30 the warning comes at slurmctld's first limit check (every 30 s) after 30 s of
# running, i.e. 30-60 s in (a delay of 59 s would be reached at once; and a requeued task starts a
# few seconds before a check, so it would get ~3 s a time)
LONG_RUN = ("--set", "train.iterations=5400", "--set", "train.image_size=48", "--set", "train.batch_size=4",
            "--set", "train.labeled_bs=2", "--set", "train.val_every=200", "--set", "train.log_every=10",
            "--set", "train.base_width=4")


def _cluster_problem() -> str:
    for tool in ("sbatch", "squeue", "sinfo", "scancel"):
        if shutil.which(tool) is None:
            return f"{tool} not found (apt-get install slurm-wlm munge; tests/slurm/start-cluster.sh)"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"sinfo failed ({exc})"
    if out.returncode != 0 or not out.stdout.strip():
        return f"no SLURM controller answers (start tests/slurm/start-cluster.sh, export SLURM_CONF): {out.stderr.strip()}"
    return ""


@pytest.fixture(scope="module", autouse=True)
def cluster() -> None:
    problem = _cluster_problem()
    if problem:
        pytest.skip(f"SLURM tests skipped: {problem}")


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _records(root: Path) -> dict[str, tuple[dict, dict, str]]:
    """run id -> (summary, per-case metrics, training log) of every finished run."""
    out = {}
    for path in root.rglob("run.json"):
        record = json.loads(path.read_text())
        metrics = json.loads((path.parent / "metrics.json").read_text())
        out[record["id"]] = (record["summary"], metrics["metric_per_case"], (path.parent / "train_log.jsonl").read_text())
    return out


def _status(root: Path) -> dict[str, dict]:
    code, out, err = bench("status", "--results", str(root), "--format", "json")
    assert code == 0, err
    return {r["run"]: r for r in json.loads(out)["runs"]}


def _queue() -> list[str]:
    return subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True, check=True).stdout.split()


def _wait_gone(job: str, timeout: float = 60) -> None:
    end = time.time() + timeout
    while job in _queue():
        assert time.time() < end, f"job {job} still queued after {timeout} s"
        time.sleep(1)


def _slurm_run(root: Path, *args: str) -> tuple[int, str, str]:
    return bench("run", "--results", str(root), "--quiet", "--executor", "slurm", "--cpus-per-task", "1", *args)


def test_array_sweep_finishes_with_records_equal_to_a_local_run(tmp_path: Path, cache_dir: Path, one_thread: None) -> None:
    sweep = ("--methods", "unet-l,mt", "--seeds", "0,1", *TINY_RUN)
    code, _, err = bench("run", "--results", str(tmp_path / "local"), "--quiet", "--no-table", *sweep)
    assert code == 0, err
    code, out, err = _slurm_run(tmp_path / "slurm", *sweep, "--wait")
    assert code == 0, err
    assert "as SLURM job array" in err and "(4 task(s), 1 run(s) per task)" in err
    assert "| MT" in out and "| UNet-L" in out                # --wait prints the table at the end
    local, slurm = _records(tmp_path / "local"), _records(tmp_path / "slurm")
    assert len(local) == 4 and local == slurm
    states = _status(tmp_path / "slurm")
    assert {r["state"] for r in states.values()} == {"done"}
    assert all(r["job_id"] and "_" in r["job_id"] for r in states.values())  # one array task each
    # the same sweep again: all done, nothing submitted
    code, _, err = _slurm_run(tmp_path / "slurm", *sweep)
    assert code == 0 and "4 run(s) already done: not submitted again" in err and "nothing submitted" in err


def test_two_runs_per_task_share_one_task(tmp_path: Path, cache_dir: Path, one_thread: None) -> None:
    sweep = ("--methods", "unet-l", "--seeds", "0,1", *TINY_RUN)
    code, _, err = bench("run", "--results", str(tmp_path / "local"), "--quiet", "--no-table", *sweep)
    assert code == 0, err
    code, _, err = _slurm_run(tmp_path / "slurm", *sweep, "--runs-per-task", "2", "--cpus-per-task", "2",
                              "--wait", "--no-table")
    assert code == 0, err
    assert "(1 task(s), 2 run(s) per task)" in err
    assert _records(tmp_path / "local") == _records(tmp_path / "slurm")
    assert len({r["job_id"] for r in _status(tmp_path / "slurm").values()}) == 1


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path, one_thread: None) -> dict:
    root = tmp_path_factory.mktemp("uninterrupted")
    code, _, err = bench("run", "--methods", "mt", "--results", str(root), "--quiet", "--no-table", *LONG_RUN)
    assert code == 0, err
    return _records(root)


def test_time_limit_requeues_and_finishes_as_an_uninterrupted_run(tmp_path: Path, uninterrupted: dict) -> None:
    config = tmp_path / "cluster.toml"
    config.write_text("[slurm]\ntime_min = 2\nsignal_delay_s = 30\n")  # the warning comes 30-90 s in
    code, _, err = _slurm_run(tmp_path / "r", "--methods", "mt", *LONG_RUN, "--executor-config", str(config),
                              "--wait", "--no-table")
    assert code == 0, err
    record = json.loads(next((tmp_path / "r").rglob("run.json")).read_text())
    assert record["timing"]["resumed_from"] is not None           # it was cut and resumed ...
    logs = "".join(p.read_text() for p in (tmp_path / "r" / "slurm-logs").rglob("*_log.out"))
    assert "Requeued job" in logs and "stopped at iteration" in logs
    assert _records(tmp_path / "r") == uninterrupted               # ... and ended as if it never was


def test_scancel_then_bench_run_again_resumes(tmp_path: Path, uninterrupted: dict) -> None:
    root = tmp_path / "r"
    code, _, err = _slurm_run(root, "--methods", "mt", *LONG_RUN)
    assert code == 0, err
    folder = next(iter(root.glob("*/*/mt/ratio-*/seed-*")))
    job = json.loads((folder / "slurm.json").read_text())["job_id"]
    end = time.time() + 90
    while True:  # until a checkpoint exists and the run has gone past it
        row = next(iter(_status(root).values()))
        if row["state"] == "running" and (row["iteration"] or 0) >= 450:
            break
        assert time.time() < end, row
        time.sleep(0.5)
    assert row["stage"] == "train" and row["total"] == 5400 and row["it_s"] > 0 and row["eta_s"] > 0
    assert row["host"] and row["job_id"] == job and row["slurm_state"] == "RUNNING"
    subprocess.run(["scancel", job], check=True)
    _wait_gone(job)
    row = next(iter(_status(root).values()))
    assert row["state"] == "abandoned", row                        # killed: its lock outlived it
    code, out, _ = bench("status", "--results", str(root))
    assert "abandoned" in out and "1 run(s): 1 abandoned" in out
    code, _, err = _slurm_run(root, "--methods", "mt", *LONG_RUN, "--wait", "--no-table")
    assert code == 0, err
    record = json.loads((folder / "run.json").read_text())
    assert record["timing"]["resumed_from"] >= 400
    assert _records(root) == uninterrupted


def test_a_second_submission_while_queued_submits_nothing(tmp_path: Path, cache_dir: Path) -> None:
    root = tmp_path / "r"
    sweep = ("--methods", "unet-l", "--seeds", "0,1", *TINY_RUN, "--slurm", "begin=now+300")  # held back
    code, _, err = _slurm_run(root, *sweep)
    assert code == 0, err
    before = _queue()
    jobs = {r["job_id"] for r in _status(root).values()}
    try:
        assert len(jobs) == 2 and jobs <= set(before)
        rows = _status(root).values()
        assert {(r["state"], r["slurm_state"]) for r in rows} == {("pending", "PENDING")}
        code, _, err = _slurm_run(root, *sweep)
        assert code == 0 and "2 run(s) already queued: not submitted again" in err and "nothing submitted" in err
        assert _queue() == before
    finally:
        subprocess.run(["scancel", *sorted(jobs)], check=False)


def test_a_failing_run_shows_as_failed_with_its_error(tmp_path: Path, cache_dir: Path, monkeypatch) -> None:  # noqa: ANN001
    (tmp_path / "failplug_mod.py").write_text(
        "from sslbench.method import register_method\nfrom sslbench.methods.supervised import UNetL\n\n\n"
        "@register_method('fail-plug')\nclass FailPlug(UNetL):\n"
        "    def training_step(self, batch, info):\n"
        "        if info.iteration == 3:\n"
        "            raise RuntimeError('deliberate failure at iteration 3')\n"
        "        return super().training_step(batch, info)\n")
    from sslbench.method import METHODS

    monkeypatch.setattr(METHODS, "_entries", dict(METHODS._entries))  # the plugin is forgotten afterwards
    monkeypatch.delitem(sys.modules, "failplug_mod", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("BENCH_PLUGINS", "failplug_mod")
    root = tmp_path / "r"
    code, _, err = _slurm_run(root, "--methods", "fail-plug,unet-l", *TINY_RUN, "--wait", "--no-table")
    assert code == 1 and "1 run(s) did not finish" in err
    rows = {r["run"].split("/")[2]: r for r in _status(root).values()}
    assert rows["unet-l"]["state"] == "done"
    assert rows["fail-plug"]["state"] == "failed"
    assert rows["fail-plug"]["error"] == "RuntimeError: deliberate failure at iteration 3"
    code, out, _ = bench("status", "--results", str(root))
    assert "failed    RuntimeError: deliberate failure at iteration 3" in out and "1 done, 1 failed" in out
