"""Worker processes die with the process that owns them: a ``kill -9`` of ``bench run --jobs 2`` or of
a process with a metric pool leaves no worker training, waiting on a dead queue, or serving forks.

Each test kills a real process with SIGKILL and then checks every process it had started, found by
scanning ``/proc`` (no psutil), is gone within a few seconds. Whatever is left is killed at the end."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sslbench.base.locks import probe

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")

GONE_WITHIN_S = 10.0


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time) of a process from /proc, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2:].split()   # after "pid (comm) "
    return int(fields[1]), fields[0], int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """Every live descendant of ``root``: pid -> start time (to tell a reused pid from the process)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (info := _stat(int(entry.name))) is not None:
            children.setdefault(info[0], []).append(int(entry.name))
    found: dict[int, int] = {}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            info = _stat(child)
            if info is not None and info[1] != "Z" and child not in found:
                found[child] = info[2]
                todo.append(child)
    return found


def alive(procs: dict[int, int]) -> dict[int, str]:
    """The processes of ``procs`` still running (a zombie has ended; a new start time is another process)."""
    out = {}
    for pid, start in procs.items():
        info = _stat(pid)
        if info is not None and info[1] != "Z" and info[2] == start:
            try:
                out[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:160]
            except OSError:
                out[pid] = "?"
    return out


def wait_all_gone(procs: dict[int, int], timeout: float = GONE_WITHIN_S) -> dict[int, str]:
    end = time.monotonic() + timeout
    while (left := alive(procs)) and time.monotonic() < end:
        time.sleep(0.2)
    return left


class Reaper:
    """The processes a test started: ``procs`` (pid -> start time) and ``parents`` (Popen objects,
    whose descendants are taken at the end too); whatever is still alive at the end is killed."""

    def __init__(self) -> None:
        self.procs: dict[int, int] = {}
        self.parents: list[subprocess.Popen[str]] = []

    def update(self, procs: dict[int, int]) -> None:
        self.procs.update(procs)

    def kill_all(self) -> None:
        for parent in self.parents:
            if parent.poll() is None:
                self.procs.update(descendants(parent.pid))
                parent.kill()
                parent.wait()
        for pid in alive(self.procs):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def reaper() -> Iterator[Reaper]:
    r = Reaper()
    yield r
    r.kill_all()


def _python(code: str, **kw: object) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, text=True,
                            stdout=subprocess.PIPE, **kw)  # type: ignore[call-overload]


def _kill_and_check(parent: subprocess.Popen[str], reaper: Reaper) -> None:
    """SIGKILL ``parent`` and assert each of its descendants (taken just before) ends within the limit."""
    procs = descendants(parent.pid)
    reaper.update(procs)
    assert procs, "the parent had no child processes to check"
    parent.kill()
    parent.wait()
    left = wait_all_gone(procs)
    assert not left, f"{len(left)} of {len(procs)} processes outlived their killed parent: {left}"


# --------------------------------------------------------------------------- the helper itself
WATCHER = """
import os, time
from sslbench.base import lifetime
if os.environ["NO_PRCTL"] == "1":
    lifetime._set_parent_death_signal = lambda: False
if os.environ["NO_PIDFD"] == "1" and hasattr(os, "pidfd_open"):
    del os.pidfd_open
how = lifetime.die_with(int(os.environ["OWNER"]), poll_s=0.2)
print(how, os.getpid(), flush=True)
time.sleep(120)
"""
MIDDLE = "import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', {watcher!r}])\ntime.sleep(120)\n"


@pytest.mark.parametrize("no_prctl, no_pidfd, via, how", [
    (False, False, False, "pdeathsig"),
    (True, False, False, "poll-parent"),
    (False, False, True, "pidfd"),
    (False, True, True, "poll-owner"),
])
def test_a_watching_process_dies_with_its_owner(no_prctl: bool, no_pidfd: bool, via: bool, how: str,
                                                reaper: Reaper) -> None:
    """Each way of watching: the owner as parent (kernel signal, or the polling fallback), and the
    owner as grandparent, behind a middle process that outlives it (a fork server's place)."""
    child = MIDDLE.format(watcher=WATCHER) if via else WATCHER
    owner = _python(f"""
        import os, subprocess, sys, time
        env = {{**os.environ, "OWNER": str(os.getpid()), "NO_PRCTL": "{int(no_prctl)}", "NO_PIDFD": "{int(no_pidfd)}"}}
        subprocess.Popen([sys.executable, '-c', {child!r}], env=env)
        time.sleep(120)
    """)
    reaper.parents.append(owner)
    assert owner.stdout is not None
    armed, pid = owner.stdout.readline().split()
    assert armed == how                                  # the watcher armed itself this way
    everyone = descendants(owner.pid)
    reaper.update(everyone)
    watcher = {int(pid): everyone[int(pid)]}
    owner.kill()
    owner.wait()
    assert not wait_all_gone(watcher, 5.0)
    if via:                                              # the middle process was not watching: still there
        assert len(alive(everyone)) == 1


def test_a_watcher_whose_owner_is_already_gone_ends_at_once(reaper: Reaper) -> None:
    dead = _python("pass")
    dead.wait()
    code = f"from sslbench.base import lifetime\nlifetime.die_with({dead.pid})\nprint('survived', flush=True)\n"
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == -signal.SIGKILL and "survived" not in out.stdout


# --------------------------------------------------------------------------- the pools
def test_kill_9_of_bench_run_jobs_2_ends_its_workers(tmp_path: Path, cache_dir: Path, reaper: Reaper) -> None:
    """Both spawned run workers (and the resource tracker) end with the sweep's process, mid-training."""
    env = {**os.environ, "SSLBENCH_CACHE": str(cache_dir), "OMP_NUM_THREADS": "1"}
    root = tmp_path / "r"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sslbench.cli", "run", "--methods", "unet-l", "--seeds", "0,1", "--jobs", "2",
         "--results", str(root), "--quiet", "--no-table", "--set", "train.iterations=100000",
         "--set", "train.image_size=32", "--set", "train.batch_size=4", "--set", "train.labeled_bs=2",
         "--set", "train.val_every=50000", "--set", "train.log_every=10", "--set", "train.base_width=4"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    reaper.parents.append(proc)
    try:
        end = time.monotonic() + 240
        while True:  # until both runs are training in their workers (each holds its run's lock)
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            held = [p for p in root.rglob(".lock") if probe(p)[0] == "held"]
            if len(held) == 2 and list(root.rglob("train_log.jsonl")):
                break
            assert time.monotonic() < end, "the workers did not start training"
            time.sleep(0.5)
        running = alive(descendants(proc.pid))
        assert sum("spawn_main" in cmd for cmd in running.values()) == 2, running   # the two run workers
        _kill_and_check(proc, reaper)
    finally:
        reaper.kill_all()
    assert [p for p in root.rglob(".lock") if probe(p)[0] == "held"] == []   # no lock is held by a survivor


def test_kill_9_of_a_process_with_a_metric_pool_ends_the_pool(reaper: Reaper) -> None:
    """The metric workers, the fork server they came from and the resource tracker all end."""
    owner = _python("""
        import os, time
        from sslbench.report.evaluation import metric_pool
        pool = metric_pool(2)
        pids = {f.result() for f in [pool.submit(os.getpid) for _ in range(6)]}
        print(len(pids), flush=True)
        time.sleep(300)
    """)
    reaper.parents.append(owner)
    assert owner.stdout is not None
    assert int(owner.stdout.readline()) >= 1
    _kill_and_check(owner, reaper)


def test_a_metric_pool_still_computes_and_shuts_down() -> None:
    """The watch changes nothing for a pool that lives and ends normally (this process's fork server
    and resource tracker live on, as they are meant to)."""
    import numpy as np

    from sslbench.report.evaluation import metric_pool
    from sslbench.report.metrics import volume_metrics

    pred = np.zeros((4, 16, 16), np.uint8)
    pred[1:3, 4:10, 4:10] = 1
    with metric_pool(2) as pool:
        got = pool.submit(volume_metrics, pred, pred, ["bg", "fg"], (1.0, 1.0, 1.0)).result()
        workers = {pid: info[2] for pid in {pool.submit(os.getpid).result() for _ in range(4)}
                   if (info := _stat(pid)) is not None}
    assert got == volume_metrics(pred, pred, ["bg", "fg"], (1.0, 1.0, 1.0))
    assert workers and not wait_all_gone(workers, 5.0)
