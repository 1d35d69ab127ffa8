"""``--executor slurm`` and ``bench status`` against a real SLURM cluster (no mock), and the
submission's own checks against fake ``sbatch``/``squeue`` scripts (no cluster needed).

Start one with ``tests/slurm/start-cluster.sh`` (as root; ``.ci/run`` does) and export the
``SLURM_CONF`` it prints; without a cluster that answers, every ``slurm``-marked test here is skipped
with the reason. Runs are tiny (seconds) except the two that need a run to outlive SLURM's one-minute
minimum time limit. Array tasks get one CPU each and the local baselines run with one thread, so
records compare bit for bit.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from sslbench.train.logbook import TIMING_KEYS
from sslbench.base.errors import BenchError

from .conftest import TINY_RUN
from .test_cli import bench

# a run long enough (~80 s of training on one core here) to outlive a one-minute time limit: with
# signal_delay_s = 30 the warning comes at slurmctld's first limit check (every 30 s) after 30 s of
# running, i.e. 30-60 s in (a delay of 59 s would be reached at once; and a requeued task starts a
# few seconds before a check, so it would get ~3 s a time)
LONG_RUN = ("--set", "train.iterations=5400", "--set", "train.image_size=48", "--set", "train.batch_size=4",
            "--set", "train.labeled_bs=2", "--set", "train.val_every=200", "--set", "train.log_every=10",
            "--set", "train.base_width=4")


@functools.cache
def _cluster_problem() -> str:
    for tool in ("sbatch", "squeue", "sinfo", "scancel"):
        if shutil.which(tool) is None:
            return f"{tool} not found (apt-get install slurm-wlm munge; tests/slurm/start-cluster.sh)"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], check=False, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"sinfo failed ({exc})"
    if out.returncode != 0 or not out.stdout.strip():
        return f"no SLURM controller answers (start tests/slurm/start-cluster.sh, export SLURM_CONF): {out.stderr.strip()}"
    return ""


def _skip_without_cluster() -> None:
    problem = _cluster_problem()
    if problem:
        pytest.skip(f"SLURM tests skipped: {problem}")


@pytest.fixture(autouse=True)
def cluster(request: pytest.FixtureRequest) -> None:
    """A ``slurm``-marked test is skipped, with the reason, where no controller answers."""
    if request.node.get_closest_marker("slurm") is not None:
        _skip_without_cluster()


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _records(root: Path) -> dict[str, tuple[dict, dict, list]]:
    """run id -> (summary, per-case metrics, training log) of every finished run."""
    out = {}
    for path in root.rglob("run.json"):
        record = json.loads(path.read_text())
        metrics = json.loads((path.parent / "metrics.json").read_text())
        log = [{k: v for k, v in json.loads(x).items() if k not in TIMING_KEYS}  # wall clock: never equal
               for x in (path.parent / "train_log.jsonl").read_text().splitlines()]
        out[record["id"]] = (record["summary"], metrics["metric_per_case"], log)
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


@pytest.mark.slurm
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


@pytest.mark.slurm
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
    _skip_without_cluster()  # before the long local run (module fixtures come before the autouse skip)
    root = tmp_path_factory.mktemp("uninterrupted")
    code, _, err = bench("run", "--methods", "mt", "--results", str(root), "--quiet", "--no-table", *LONG_RUN)
    assert code == 0, err
    return _records(root)


@pytest.mark.slurm
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


@pytest.mark.slurm
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


@pytest.mark.slurm
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


@pytest.mark.slurm
def test_a_failing_run_shows_as_failed_with_its_error(tmp_path: Path, cache_dir: Path, monkeypatch) -> None:
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


# --------------------------------------------------------------------------- fake sbatch / squeue
FAKE_SBATCH = """#!/bin/bash
# fake sbatch: keeps the batch script (never runs it), queues its tasks, answers as sbatch does
set -eu
d="$FAKE_SLURM"
sleep "${FAKE_SBATCH_DELAY:-0}"
exec 9>>"$d/lock"
flock 9
n=$(cat "$d/next")
echo $((n + 1)) > "$d/next"
cp "$1" "$d/job-$n.sh"
last=$(sed -n 's/^#SBATCH --array=0-\\([0-9]*\\).*/\\1/p' "$1")
if [ -z "$last" ]; then echo "$n|${FAKE_STATE:-PENDING}" >> "$d/queue"; fi
for i in $(seq 0 "${last:--1}"); do echo "${n}_$i|${FAKE_STATE:-PENDING}" >> "$d/queue"; done
echo "Submitted batch job $n"
"""
# submitit refuses to build its executor where no ``srun`` is on PATH (its "are you on a cluster" test);
# a submission never runs it, so the fakes provide one that only says so
FAKE_SRUN = """#!/bin/bash
echo "fake srun: not run by a submission" >&2
exit 1
"""
FAKE_SQUEUE = """#!/bin/bash
# fake squeue: this user's jobs as 'id|STATE' lines; fails while $FAKE_SLURM/down exists
[ -e "$FAKE_SLURM/down" ] && { echo "squeue: error: slurm_load_jobs error: Unable to contact slurm controller" >&2; exit 1; }
cat "$FAKE_SLURM/queue" 2>/dev/null || true
"""


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``sbatch``, ``squeue`` (and a bare ``srun``) on PATH as scripts over one folder: ``job-N.sh`` (each batch script
    submitted), ``queue`` (what squeue prints)."""
    d = tmp_path / "fake-slurm"
    (d / "bin").mkdir(parents=True)
    (d / "next").write_text("100\n")
    for name, text in (("sbatch", FAKE_SBATCH), ("squeue", FAKE_SQUEUE), ("srun", FAKE_SRUN)):
        (d / "bin" / name).write_text(text)
        (d / "bin" / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{d / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(d))
    return d


def _scripts(d: Path) -> list[str]:
    return [p.read_text() for p in sorted(d.glob("job-*.sh"))]


def _one_error_line(code: int, err: str, *needles: str) -> str:
    lines = [x for x in err.strip().splitlines() if not x.startswith("warning: ")]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], err
    return lines[0]


def _hostile(marker: Path) -> list[tuple[tuple[str, ...], str]]:
    """(bench run arguments, the option the refusal names): each would run ``touch MARKER`` as a line
    of the batch script if it reached it."""
    line = f"touch {marker}"
    return [
        (("--partition", f"debug\n{line}\n#"), "--partition"),
        (("--account", f"lab\r\n{line}\n#"), "--account"),
        (("--qos", f"normal\n{line}"), "--qos"),
        (("--slurm", f"comment=x\n{line}\n#"), "--slurm"),
        (("--slurm", f"comment\n{line}\n#=x"), "--slurm"),
        (("--slurm", f"requeue\n{line}\n#x=1"), "--slurm"),      # ran on a real cluster before the check
        (("--slurm", "comment=x\x1b[2J"), "--slurm"),              # an escape sequence, no line break
        (("--slurm", "comment=x\x85y"), "--slurm"),                # C1 NEL
        (("--slurm", "comment=x\x7fy"), "--slurm"),                # DEL
    ]


def test_control_characters_in_slurm_values_are_one_error_and_nothing_submitted(
        tmp_path: Path, cache_dir: Path, fake_slurm: Path) -> None:
    marker = tmp_path / "PWNED"
    for args, option in _hostile(marker):
        root = tmp_path / "r"
        code, _, err = bench("run", "--results", str(root), "--quiet", "--executor", "slurm", "--methods", "unet-l",
                             *TINY_RUN, *args)
        line = _one_error_line(code, err, option, "control character")
        assert "\n" not in line
        assert not root.exists() and _scripts(fake_slurm) == [], args  # nothing written, nothing submitted
    # a results folder whose path would break the logs' lines of the script
    root = tmp_path / f"r\n{marker}"
    code, _, err = bench("run", "--results", str(root), "--quiet", "--executor", "slurm", "--methods", "unet-l", *TINY_RUN)
    _one_error_line(code, err, "--results", "control character")
    assert not root.exists() and _scripts(fake_slurm) == [] and not marker.exists()


@pytest.mark.parametrize("text, needle", [
    ('[slurm]\npartition = "gpu\\ntouch /tmp/x"\n', "slurm.partition"),
    ('[slurm]\npython = "python3\\ntouch /tmp/x"\n', "slurm.python"),
    ('[slurm]\nsetup = ["module load cuda\\rtouch /tmp/x"]\n', "slurm.setup"),
    ('[slurm.sbatch]\n"x\\ntouch /tmp/x" = "1"\n', "[slurm.sbatch]"),
    ('[slurm.sbatch]\ncomment = "a\\u2028b"\n', "[slurm.sbatch]"),
])
def test_control_characters_in_the_settings_file_name_the_file_and_key(tmp_path: Path, text: str, needle: str) -> None:
    from sslbench.run.slurm import load_settings

    f = tmp_path / "cluster.toml"
    f.write_text(text)
    with pytest.raises(BenchError) as info:
        load_settings(f)
    message = str(info.value)
    assert message.startswith(f"{f}: ") and needle in message and "control character" in message
    assert "\n" not in message and "\u2028" not in message


@pytest.mark.parametrize("item, needle", [
    ("bad key=1", "not an sbatch option name"),
    ("-=1", "not an sbatch option name"),
    ("mail.type=END", "not an sbatch option name"),
    ("array=0-99", "--array is set by bench"),
    ("output=/tmp/elsewhere", "--output is set by bench"),
    ("signal=B:USR1@10", "--signal is set by bench"),
    ("wrap=touch /tmp/x", "--wrap is set by bench"),
])
def test_slurm_items_must_name_an_sbatch_option_bench_does_not_set(tmp_path: Path, cache_dir: Path, fake_slurm: Path,
                                                                  item: str, needle: str) -> None:
    code, _, err = bench("run", "--results", str(tmp_path / "r"), "--executor", "slurm", "--methods", "unet-l",
                         *TINY_RUN, "--slurm", item)
    _one_error_line(code, err, "--slurm", needle)
    assert not (tmp_path / "r").exists() and _scripts(fake_slurm) == []


def test_settings_built_in_code_are_checked_before_submission(tmp_path: Path, cache_dir: Path, fake_slurm: Path) -> None:
    from sslbench.run.slurm import SlurmSettings, submit
    from sslbench.run.specs import RunOptions, expand

    specs = expand(["unet-l"], ["synthetic-cardiac"], [5], [0], "quick", list(TINY_RUN[1::2]))
    opts = RunOptions(results=tmp_path / "r", progress=False)
    for settings in (SlurmSettings(partition="debug\ntouch x"), SlurmSettings(sbatch={"comment": "a\nb"}),
                     SlurmSettings(sbatch={"no such=option": "1"}), SlurmSettings(setup=("ok", "a\x00b"))):
        with pytest.raises(BenchError, match="control character|not an sbatch option name"):
            submit(specs, opts, settings, log=lambda m: None)
    assert not (tmp_path / "r").exists() and _scripts(fake_slurm) == []


def test_ordinary_values_reach_the_script_each_on_its_own_line(tmp_path: Path, cache_dir: Path, fake_slurm: Path) -> None:
    root = tmp_path / "r"
    code, _, err = bench("run", "--results", str(root), "--quiet", "--executor", "slurm", "--methods", "unet-l",
                         "--seeds", "0,1", *TINY_RUN, "--partition", "debug", "--account", "my-lab",
                         "--slurm", "comment=two words", "--slurm", "mail_type=END", "--slurm", "--gres=gpu:1")
    assert code == 0, err
    assert "submitted 2 run(s) as SLURM job array 100 (2 task(s)" in err
    [script] = _scripts(fake_slurm)
    lines = script.splitlines()
    for expected in ("#SBATCH --partition=debug", "#SBATCH --account=my-lab", "#SBATCH --comment='two words'",
                     "#SBATCH --mail-type=END", "#SBATCH --gres=gpu:1", "#SBATCH --array=0-1%2"):
        assert expected in lines, script
    assert {json.loads(p.read_text())["job_id"] for p in root.rglob("slurm.json")} == {"100_0", "100_1"}
    assert not (root / ".submit.lock").exists()                      # released and removed


def test_two_submissions_at_once_submit_each_run_once(tmp_path: Path, cache_dir: Path, fake_slurm: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Both read the queue before either has written slurm.json, unless they take turns: sbatch takes
    a second here, as a busy controller may."""
    monkeypatch.setenv("FAKE_SBATCH_DELAY", "1")
    results = _concurrent_submissions(tmp_path / "r")
    assert len(_scripts(fake_slurm)) == 1                            # one array, not two
    assert (fake_slurm / "queue").read_text().split() == ["100_0|PENDING", "100_1|PENDING"]
    first, second = sorted(results, key=lambda r: len(r[0].job_ids), reverse=True)
    assert first[0].job_ids == ["100_0", "100_1"] and second[0].job_ids == []
    assert len(second[0].skipped["queued"]) == 2
    assert any("waiting for another submission" in m for m in second[1])
    jobs = sorted(json.loads(p.read_text())["job_id"] for p in (tmp_path / "r").rglob("slurm.json"))
    assert jobs == ["100_0", "100_1"]
    # and through the command line: it says how many it left alone
    code, _, err = bench("run", "--results", str(tmp_path / "r"), "--quiet", "--executor", "slurm", "--methods",
                         "unet-l", "--seeds", "0,1", *TINY_RUN)
    assert code == 0 and "2 run(s) already queued: not submitted again" in err and "nothing submitted" in err, err
    assert len(_scripts(fake_slurm)) == 1


def _concurrent_submissions(root: Path, *sbatch: str) -> list[tuple]:
    """Two submissions of the same two runs to ``root`` from two threads started together:
    [(Submission, log lines)] of each."""
    from sslbench.cache import prepare
    from sslbench.run.slurm import load_settings, submit
    from sslbench.run.specs import RunOptions, expand

    prepare("synthetic-cardiac")  # once, before the threads
    specs = expand(["unet-l"], ["synthetic-cardiac"], [5], [0, 1], "quick", list(TINY_RUN[1::2]))
    opts = RunOptions(results=root, progress=False)
    settings = load_settings(None, sbatch, cpus_per_task=1)
    start = threading.Barrier(2)
    results: list[tuple] = []
    errors: list[BaseException] = []

    def one() -> None:
        logs: list[str] = []
        start.wait()
        try:
            results.append((submit(specs, opts, settings, log=logs.append), logs))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(results) == 2
    return results


def test_a_job_running_in_slurm_is_not_submitted_again(tmp_path: Path, cache_dir: Path, fake_slurm: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "r"
    monkeypatch.setenv("FAKE_STATE", "RUNNING")  # started, its run not yet locked (the task is loading)
    code, _, err = bench("run", "--results", str(root), "--quiet", "--executor", "slurm", "--methods", "unet-l",
                         *TINY_RUN)
    assert code == 0, err
    code, _, err = bench("run", "--results", str(root), "--quiet", "--executor", "slurm", "--methods", "unet-l",
                         *TINY_RUN)
    assert code == 0 and "1 run(s) being trained now: not submitted again" in err, err
    assert len(_scripts(fake_slurm)) == 1


def test_a_queue_that_does_not_answer_submits_no_run_twice(tmp_path: Path, cache_dir: Path, fake_slurm: Path) -> None:
    root = tmp_path / "r"
    code, _, err = bench("run", "--results", str(root), "--quiet", "--executor", "slurm", "--methods", "unet-l",
                         *TINY_RUN)
    assert code == 0, err
    (fake_slurm / "down").touch()
    code, _, err = bench("run", "--results", str(root), "--quiet", "--executor", "slurm", "--methods", "unet-l",
                         *TINY_RUN)
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith("error: squeue did not answer") and "1 run(s)" in last, err
    assert len(_scripts(fake_slurm)) == 1


# --------------------------------------------------------------------------- the same on the real cluster
@pytest.mark.slurm
def test_hostile_values_never_run_on_the_cluster_and_ordinary_ones_do(tmp_path: Path, cache_dir: Path) -> None:
    marker = tmp_path / "PWNED"
    before = _queue()
    for args, option in _hostile(marker):
        code, _, err = _slurm_run(tmp_path / "r", "--methods", "unet-l", *TINY_RUN, *args)
        _one_error_line(code, err, option, "control character")
        assert _queue() == before and not (tmp_path / "r").exists()
    code, _, err = _slurm_run(tmp_path / "ok", "--methods", "unet-l", *TINY_RUN, "--partition", "debug",
                              "--slurm", "comment=an ordinary comment", "--wait", "--no-table")
    assert code == 0, err
    assert {r["state"] for r in _status(tmp_path / "ok").values()} == {"done"}
    assert not marker.exists()


@pytest.mark.slurm
def test_two_submissions_at_once_on_the_cluster_submit_once(tmp_path: Path, cache_dir: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The real sbatch behind a one-second delay (a busy controller): one array of two tasks, held
    back with begin=now+300 so that the queue can be read, then cancelled."""
    slow = tmp_path / "bin"
    slow.mkdir()
    (slow / "sbatch").write_text(f"#!/bin/sh\nsleep 1\nexec {shutil.which('sbatch')} \"$@\"\n")
    (slow / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{slow}{os.pathsep}{os.environ['PATH']}")
    before = set(_queue())
    results = _concurrent_submissions(tmp_path / "r", "begin=now+300")
    submitted = [job for sub, _ in results for job in sub.job_ids]
    try:
        new = set(_queue()) - before
        assert len(submitted) == 2 and set(submitted) == new, (submitted, new)
        assert sorted(len(sub.skipped["queued"]) for sub, _ in results) == [0, 2]
        assert {r["job_id"] for r in _status(tmp_path / "r").values()} == new
    finally:
        subprocess.run(["scancel", *sorted({j.split("_")[0] for j in submitted})], check=False)
