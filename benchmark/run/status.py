"""``bench status``: every run under a results folder, from its folder alone (plus SLURM's queue
where ``squeue`` answers).

States: ``done`` (record and DONE written); ``running`` (its lock is held: stage, iteration, it/s,
ETA and host from ``progress.json``); ``failed`` (its last session ended with an error:
``failed.json``); ``pending`` (not started, queued in SLURM, or interrupted and resumable);
``stale`` (a lock whose process is gone, e.g. a task killed by ``scancel`` or the OOM killer: the
next ``bench run`` takes it over and resumes from ``last.pt``).
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sslbench.base.locks import probe
from sslbench.base.run_files import RunFiles
from sslbench.run.queue import given_job, queued_job

STATES = ("done", "running", "pending", "failed", "stale")


@dataclass
class RunState:
    run: str                      # dataset/profile/method/ratio-r/seed-s
    state: str                    # one of STATES
    stage: str | None = None
    iteration: int | None = None
    total: int | None = None      # iterations of that stage
    it_s: float | None = None
    eta_s: float | None = None    # training left, all stages (evaluation not included)
    host: str | None = None
    job_id: str | None = None
    slurm_state: str | None = None
    error: str | None = None
    note: str | None = None
    dice: float | None = None     # a finished run's Dice [%] and ASSD (selected weights)
    assd: float | None = None
    wall_s: float | None = None   # a finished run's wall time


def run_folders(root: Path) -> list[Path]:
    """Folders of runs that were started or submitted (``<ds>/<profile>/<method>/ratio-r/seed-s``)."""
    names = (RunFiles.CONFIG, RunFiles.SLURM, RunFiles.LOCK, RunFiles.DONE, RunFiles.FAILED)
    return sorted(f for f in root.glob("*/*/*/ratio-*/seed-*")
                  if f.is_dir() and any(RunFiles(f).has(n) for n in names))


def _read(files: RunFiles, name: str) -> dict[str, Any]:
    data = files.read_if_any(name)
    return data if isinstance(data, dict) else {}


def _progress(files: RunFiles, state: RunState) -> dict[str, Any]:
    """Fill ``state`` from ``progress.json``; returns what the file held."""
    p = _read(files, RunFiles.PROGRESS)
    if not p:
        return p
    stages = p.get("stages") or {}
    state.stage, state.iteration = p.get("stage"), p.get("iteration")
    state.total, state.it_s = stages.get(state.stage), p.get("it_s")
    if state.iteration is not None and state.total and state.it_s:
        names = list(stages)
        later = names[names.index(state.stage) + 1:] if state.stage in names else []
        left = state.total - state.iteration + sum(stages[n] for n in later)
        state.eta_s = round(left / state.it_s, 1)
    return p


def state_of(root: Path, folder: Path, queue: dict[str, str] | None) -> RunState:
    files = RunFiles(folder)
    state = RunState(str(folder.relative_to(root)), "pending")
    state.job_id = given_job(files)
    if queue is not None and state.job_id is not None:
        state.slurm_state = queue.get(state.job_id)
    if files.is_done():
        state.state = "done"
        record = _read(files, RunFiles.RECORD)
        summary, timing = record.get("summary", {}), record.get("timing", {})
        if isinstance(summary, dict) and isinstance(summary.get("dice"), (int, float)):
            state.dice = round(100.0 * summary["dice"], 2)
            state.assd = summary.get("assd") if isinstance(summary.get("assd"), (int, float)) else None
        if isinstance(timing, dict) and isinstance(timing.get("wall_s"), (int, float)):
            state.wall_s = float(timing["wall_s"])
        return state
    lock, holder = probe(files.lock_path)
    failed = _read(files, RunFiles.FAILED)
    queued = queued_job(files, queue)
    progress = _progress(files, state)
    if lock == "held":
        state.state = "running"
        state.host = progress.get("host") or holder
        if state.iteration is None:
            state.note = f"starting ({holder})"
    elif failed and queued is None:
        state.state, state.error, state.host = "failed", str(failed.get("error", "")), failed.get("host")
    elif queued is not None:
        state.state = "pending"
        state.note = "queued" if state.iteration is None else f"queued; resumes at iteration {state.iteration}"
        state.eta_s = None
    elif lock == "stale":
        state.state, state.note, state.eta_s = "stale", f"lock left by {holder}", None
    else:
        state.eta_s = None
        if files.has_checkpoint(RunFiles.LAST) and state.iteration is not None:
            state.note = f"interrupted; resumes at iteration {state.iteration}"
    return state


def collect(root: Path, queue: dict[str, str] | None = None, folders: Iterable[Path] | None = None) -> list[RunState]:
    return [state_of(root, f, queue) for f in (run_folders(root) if folders is None else folders)]


def summary_line(states: Sequence[RunState]) -> str:
    counts = {s: sum(r.state == s for r in states) for s in STATES}
    parts = [f"{n} {s}" for s, n in counts.items() if n]
    line = f"{len(states)} run(s): " + (", ".join(parts) if parts else "none")
    eta = sweep_eta(states)
    return line + (f"; ETA {_duration(eta)} (one process)" if eta is not None else "")


def sweep_eta(states: Sequence[RunState]) -> float | None:
    """Training left in the sweep, run by one process: the running runs' ETAs plus, per pending run,
    the mean wall time of the finished ones (None when nothing is left or nothing to estimate from)."""
    running = [r.eta_s for r in states if r.state == "running" and r.eta_s is not None]
    pending = sum(r.state in ("pending", "stale") for r in states)
    walls = [r.wall_s for r in states if r.wall_s]
    if not running and not pending:
        return None
    if pending and not walls:
        return sum(running) if running else None
    return sum(running) + pending * (sum(walls) / len(walls) if walls else 0.0)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _detail(r: RunState) -> str:
    bits = []
    if r.state == "done" and r.dice is not None:
        bits.append(f"Dice {r.dice:.1f}" + (f"  ASSD {r.assd:.2f}" if r.assd is not None else ""))
    if r.state == "failed":
        bits.append(r.error or "")
    if r.state in ("running", "stale") and r.stage is not None:
        bits.append(f"{r.stage} {r.iteration}/{r.total}")
        if r.it_s:
            bits.append(f"{r.it_s:.2f} it/s")
        if r.eta_s is not None and r.state == "running":
            bits.append(f"ETA {_duration(r.eta_s)}")
    if r.host and r.state in ("running", "failed"):
        bits.append(f"on {r.host}")
    if r.note:
        bits.append(r.note)
    if r.job_id:
        bits.append(f"job {r.job_id}" + (f" {r.slurm_state}" if r.slurm_state else ""))
    return "; ".join(b for b in bits if b)


def render(states: Sequence[RunState], fmt: str = "text") -> str:
    if fmt == "json":
        return json.dumps({"runs": [asdict(s) for s in states], "summary": summary_line(states),
                           "time": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=1)
    if not states:
        return "no runs under this results folder"
    width = max(len(s.run) for s in states)
    lines = [f"{'run':<{width}}  {'state':<8}  detail"]
    lines += [f"{s.run:<{width}}  {s.state:<8}  {_detail(s)}".rstrip() for s in states]
    lines.append(summary_line(states))
    return "\n".join(lines)
