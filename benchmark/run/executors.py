"""Where a sweep's runs execute, behind one interface: ``LocalExecutor`` (this process, or ``jobs``
spawned worker processes) and ``SlurmExecutor`` (``sslbench.run.slurm_executor``: one job array).
Both check every input first (``check_inputs``: the device, the datasets, every run folder's state),
so nothing starts while a folder holds another run or a stale one."""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from sslbench.base.errors import BenchError
from sslbench.base.lifetime import die_with
from sslbench.base.printable import printable, raw_stream
from sslbench.cache import check_separate, prepare
from sslbench.method import METHODS
from sslbench.run.environment import pick_device
from sslbench.run.folder_state import FolderState, folder_state, stale_error
from sslbench.run.job import validation_ids
from sslbench.run.lifecycle import failed, interrupted, run_one
from sslbench.run.specs import RunOptions, RunOutcome, RunSpec
from sslbench.run.sweep_plan import sweep_plan
from sslbench.train.interrupt import Interrupted, stop_on_signals, stop_requested


@dataclass
class SweepResult:
    """What an executor reports: the outcome of each run that ended under it, and whether the sweep
    ended here (local, or SLURM with --wait) or was handed to the cluster."""

    outcomes: list[RunOutcome]
    ended: bool = True


class Executor(Protocol):
    def run(self, specs: Sequence[RunSpec], opts: RunOptions, log: Callable[[str], None]) -> SweepResult: ...


@dataclass
class LocalExecutor:
    """This machine: runs one after another, or ``jobs`` at a time in worker processes."""

    jobs: int = 1

    def run(self, specs: Sequence[RunSpec], opts: RunOptions, log: Callable[[str], None]) -> SweepResult:
        return SweepResult(execute(specs, opts, self.jobs, log))


def _init_worker(stop_signals: tuple[str, ...], owner: int) -> None:
    """A run worker's start: it dies with the sweep's process ``owner`` (a ``kill -9`` of ``bench run``
    must not leave it training, then blocked on a dead queue), and stops on the sweep's signals."""
    die_with(owner)
    stop_on_signals(stop_signals)


def _worker(spec: RunSpec, opts: RunOptions, state: FolderState | None = None) -> RunOutcome:
    if stop_requested():
        return interrupted(spec, opts, "not started: a stop was requested")
    if opts.threads:
        torch.set_num_threads(opts.threads)
    METHODS.load_env_plugins()  # $BENCH_PLUGINS, as the parent process loaded them
    for module in opts.plugins:
        METHODS.load_plugin_module(module)
    try:
        return run_one(spec, opts, lambda msg: None, state)
    except Interrupted as exc:
        return interrupted(spec, opts, str(exc))


def check_inputs(specs: Sequence[RunSpec], opts: RunOptions, check_device: bool = True) -> dict[RunSpec, FolderState]:
    """Every input problem of a sweep, before its first run starts (or is submitted): the device, the
    datasets (prepared once here, before any worker or array task reads them), folder conflicts,
    stale runs (all named in one error) and the evaluation splits. Returns each run folder's state."""
    if (opts.results.exists() or opts.results.is_symlink()) and not opts.results.is_dir():
        raise BenchError(f"{opts.results}: --results names a file, not a folder")
    check_separate(opts.results, opts.cache)  # a results folder inside the cache (or around it): refused
    if check_device:
        pick_device(opts.device)  # a bad --device fails here, before any run folder is written
    prepared = {name: prepare(name, cache_root=opts.cache) for name in dict.fromkeys(s.dataset for s in specs)}
    states = {}
    for spec in specs:
        states[spec] = folder_state(spec, opts)
        cfg = spec.resolved()
        validation_ids(prepared[spec.dataset], cfg)
        prepared[spec.dataset].eval_cases(cfg.data.eval_split)
    stale = [(spec, state) for spec, state in states.items() if state.state == "stale"]
    if stale:
        raise stale_error(stale)
    return states


def execute(specs: Sequence[RunSpec], opts: RunOptions, jobs: int = 1,
            log: Callable[[str], None] = print) -> list[RunOutcome]:
    """Run every spec: in this process (``jobs == 1``) or in ``jobs`` spawned worker processes.

    Folder conflicts are checked for every run before any starts. A run that fails (a diverged loss,
    a bug in a plugin) is reported and the sweep goes on; its checkpoint stays for a later resume.
    """
    states = check_inputs(specs, opts)
    with sweep_plan(opts.results, [spec.files(opts.results).folder for spec in specs]):
        return _execute(specs, opts, states, jobs, log)


def _execute(specs: Sequence[RunSpec], opts: RunOptions, states: dict[RunSpec, FolderState], jobs: int,
             log: Callable[[str], None]) -> list[RunOutcome]:
    outcomes: list[RunOutcome] = []
    clock = SweepClock(len(specs), max(1, jobs))
    if jobs <= 1:  # ``threads`` for this process's runs only; the caller's setting comes back after
        before = torch.get_num_threads()
        if opts.threads:
            torch.set_num_threads(opts.threads)
        try:
            return _in_process(specs, opts, states, clock, log)
        finally:
            torch.set_num_threads(before)
    import multiprocessing as mp

    threads = opts.threads or max(1, (os.cpu_count() or 1) // jobs)
    wopts = dataclasses.replace(opts, progress=False, threads=threads,  # the jobs already use the cores
                                eval_workers=0 if opts.eval_workers is None else opts.eval_workers)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"),
                             initializer=_init_worker, initargs=(opts.stop_signals, os.getpid())) as pool:
        futures = {pool.submit(_worker, spec, wopts, states[spec]): spec for spec in specs}
        for i, fut in enumerate(as_completed(futures), 1):
            try:
                outcome = fut.result()
            except CancelledError:
                outcome = interrupted(futures[fut], opts, "not started: a stop was requested")
            except Exception as exc:  # noqa: BLE001
                outcome = failed(futures[fut], opts, exc)
            outcomes.append(outcome)
            log(_describe(i, len(specs), outcome) + clock.tick(outcome))
            if stop_requested():  # the running workers checkpoint and stop; none starts another
                for other in futures:
                    other.cancel()
    return outcomes


def _in_process(specs: Sequence[RunSpec], opts: RunOptions, states: dict[RunSpec, FolderState], clock: SweepClock,
                log: Callable[[str], None]) -> list[RunOutcome]:
    """The runs one after another in this process, with a sweep bar when there is a terminal."""
    outcomes: list[RunOutcome] = []
    bar = _sweep_bar(len(specs), opts.progress)
    say = (lambda message: bar.write(printable(message), file=raw_stream(sys.stderr))) if bar is not None else log
    for i, spec in enumerate(specs, 1):
        try:
            if stop_requested():
                outcome = interrupted(spec, opts, "not started: a stop was requested")
            else:
                outcome = run_one(spec, opts, say, states[spec])
        except Interrupted as exc:
            outcome = interrupted(spec, opts, str(exc))
        except Exception as exc:  # noqa: BLE001 - one failed run must not end the sweep
            outcome = failed(spec, opts, exc)
        outcomes.append(outcome)
        say(_describe(i, len(specs), outcome) + clock.tick(outcome))
        if bar is not None:
            bar.set_description_str(f"sweep ({clock.eta()})" if clock.eta() else "sweep", refresh=False)
            bar.update(1)
    if bar is not None:
        bar.close()
    return outcomes


def _sweep_bar(total: int, progress: bool) -> Any:
    """The sweep's own bar (runs finished, the sweep's ETA) above each run's bar, for sweeps of more
    than one run with progress on; None otherwise. Log lines go through it so the bars stay whole."""
    if not progress or total < 2:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="sweep", unit="run", position=0, leave=True, dynamic_ncols=True,
                bar_format="{desc}: {n}/{total} runs |{bar}|", file=raw_stream(sys.stderr))


class SweepClock:
    """The sweep's ETA after each finished run: the runs left times the mean wall time of the runs
    trained so far in this sweep, divided by the worker processes."""

    def __init__(self, total: int, jobs: int) -> None:
        self.total, self.jobs, self.seen = total, jobs, 0
        self.start = time.perf_counter()
        self.trained = 0

    def tick(self, outcome: RunOutcome) -> str:
        """Count a finished run; the text for its log line ("" when nothing is left or known)."""
        self.seen += 1
        if outcome.status in ("done", "failed"):
            self.trained += 1
        eta = self.eta()
        return f"  (sweep: {self.seen}/{self.total}, {eta})" if eta else ""

    def eta(self) -> str:
        """"ETA 3 min" for the runs left, from the runs trained so far; "" when none is left or known."""
        left = self.total - self.seen
        if not left or not self.trained:
            return ""
        per_run = (time.perf_counter() - self.start) / self.trained * min(self.jobs, self.trained)
        eta = left * per_run / self.jobs
        return f"ETA {eta / 60:.0f} min" if eta >= 60 else f"ETA {eta:.0f} s"


def _describe(i: int, n: int, outcome: RunOutcome) -> str:
    if outcome.status == "failed":
        return f"[{i}/{n}] {outcome.spec.label}: FAILED: {outcome.message}"
    s = outcome.summary
    score = f"Dice {100 * s['dice']:.1f}  ASSD {s['assd']:.2f}" if s else ""
    if outcome.status == "busy":
        return f"[{i}/{n}] {outcome.spec.label}: skipped, {outcome.message}"
    if outcome.status == "interrupted":
        return f"[{i}/{n}] {outcome.spec.label}: interrupted, {outcome.message}"
    what = "already done, skipped" if outcome.status == "skipped" else "done"
    return f"[{i}/{n}] {outcome.spec.label}: {what}  {score}"
