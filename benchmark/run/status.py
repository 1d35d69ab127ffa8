"""``bench status``: every run under a results folder, from its folder alone (plus SLURM's queue
where ``squeue`` answers).

States: ``done`` (record and DONE written); ``running`` (its lock is held: stage, iteration, it/s,
ETA and host from ``progress.json``); ``failed`` (its last session ended with an error:
``failed.json``); ``pending`` (not started, queued in SLURM, or interrupted and resumable);
``abandoned`` (a lock whose process is gone, e.g. a task killed by ``scancel`` or the OOM killer: the
next ``bench run`` takes it over and resumes from ``last.pt``); ``stale`` (finished, but its method's
code changed since: ``bench run --rerun-stale`` retrains it). A finished run of another version of
the core code is ``done`` with a note, and the summary counts them.
"""
from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sslbench.base.code_identity import core_code
from sslbench.base.fields import FieldError
from sslbench.base.finished_runs import copies_text, finished_runs
from sslbench.base.locks import probe
from sslbench.base.printable import one_line
from sslbench.base.records import check_progress
from sslbench.base.run_files import RunFiles
from sslbench.report.frame import current_method_codes, key_text
from sslbench.run.queue import given_job, queued_job

STATES = ("done", "stale", "running", "pending", "failed", "abandoned")
MAX_ETA_S = 1e9  # about 30 years: a longer ETA comes from a damaged progress.json, and none is shown


@dataclass
class RunState:
    run: str                      # dataset/profile/method/ratio-r/seed-s
    state: str                    # one of STATES
    stage: str | None = None
    iteration: int | None = None
    total: int | None = None      # iterations of that stage
    it_s: float | None = None
    eta_s: float | None = None    # training left (plus the evaluation, from finished runs), or this evaluation pass's
    evaluating: str | None = None  # after training: "evaluating the last weights: 5/20 volumes"
    host: str | None = None
    job_id: str | None = None
    slurm_state: str | None = None
    error: str | None = None
    note: str | None = None
    dice: float | None = None     # a finished run's Dice [%] and ASSD (selected weights)
    assd: float | None = None
    wall_s: float | None = None   # a finished run's wall time
    eval_s: float | None = None   # a finished run's test-set evaluation time (of its wall time)
    code_core: str | None = None  # a finished run's core code version ("" when its record predates it)
    schedule: str | None = None   # a finished run's profile key as a person reads it (profile and overrides)
    overrides: str | None = None  # the run's --set items: what its tag, or its schedule key, means
    copies: list[str] | None = None  # other folders holding this finished run (an archived copy): not counted


def run_folders(root: Path) -> list[Path]:
    """Folders of runs that were started or submitted (``<ds>/<profile>/<method>/ratio-r/seed-s``)."""
    names = (RunFiles.CONFIG, RunFiles.SLURM, RunFiles.LOCK, RunFiles.DONE, RunFiles.FAILED)
    return sorted(f for f in root.glob("*/*/*/ratio-*/seed-*")
                  if f.is_dir() and any(RunFiles(f).has(n) for n in names))


def _text(value: Any) -> str:
    """A string field of a file someone else may have written, as one printable line ("" when it is
    not a string): control characters shown, never obeyed; a status line stays one line."""
    return one_line(value[:500]) if isinstance(value, str) else ""


def _read(files: RunFiles, name: str) -> dict[str, Any]:
    data = files.read_if_any(name)
    return data if isinstance(data, dict) else {}


def _progress(files: RunFiles, state: RunState) -> dict[str, Any]:
    """Fill ``state`` from ``progress.json``; returns what the file held (nothing when it is damaged:
    the state then says so, and the other folders are listed as usual)."""
    raw = files.read_if_any(RunFiles.PROGRESS)
    if raw is None:
        return {}
    try:
        p = check_progress(raw)
    except FieldError as exc:
        state.note = f"progress.json damaged ({exc})"
        return {}
    stages = p["stages"]
    state.stage, state.iteration = p["stage"], p["iteration"]
    state.total, state.it_s = stages[state.stage], p.get("it_s")
    if state.it_s and state.it_s >= 1e-6:  # (an ETA from a smaller rate is not worth showing)
        names = list(stages)
        left = state.total - state.iteration + sum(stages[n] for n in names[names.index(state.stage) + 1:])
        state.eta_s = round(left / state.it_s, 1)
    ev = p.get("evaluation")
    if ev is not None:  # training is over: the test set's volumes, and this pass's time left from its pace
        state.evaluating = f"evaluating the {ev['weights']} weights: {ev['done']}/{ev['cases']} volumes"
        spent = (p.get("updated") or 0.0) - ev["started"]
        state.eta_s = (round(spent / ev["done"] * (ev["cases"] - ev["done"]), 1)
                       if ev["done"] and 0.0 <= spent < MAX_ETA_S else None)
    if state.eta_s is not None and state.eta_s > MAX_ETA_S:  # (a pace from a damaged file: no ETA)
        state.eta_s = None
    return p


def state_of(root: Path, folder: Path, queue: dict[str, str] | None,
             records: dict[str, dict[str, Any] | None] | None = None) -> RunState:
    """``folder``'s state; ``records``: folder -> its record (None: unreadable) where already read."""
    files = RunFiles(folder)
    state = RunState(str(folder.relative_to(root)), "pending")
    state.job_id = given_job(files)
    if queue is not None and state.job_id is not None:
        state.slurm_state = queue.get(state.job_id)
    record = None
    if files.path(RunFiles.DONE).is_file():
        record = records[str(folder)] if records is not None and str(folder) in records else files.record()
    if record is not None:
        state.state = "done"
        state.overrides = "; ".join(_text(o) for o in record.get("overrides", []) if _text(o)) or None
        state.schedule = _text(key_text(record.get("profile", ""), [_text(o) for o in record.get("protocol_overrides", [])]))
        state.dice, state.assd = round(100.0 * record["summary"]["dice"], 2), record["summary"]["assd"]
        state.wall_s = float(record["timing"]["wall_s"])
        if record["timing"].get("eval_s") is not None:
            state.eval_s = float(record["timing"]["eval_s"])
        code = record.get("code") or {}
        state.code_core = code.get("core") or ""
        stale = _stale(code, record["method"])
        if stale:
            state.state, state.note = "stale", f"{stale} since it ran: bench run --rerun-stale retrains it"
        elif state.code_core and state.code_core != core_code():
            state.note = f"core code version {state.code_core}, not the current {core_code()}"
        elif code.get("method") and current_method_codes([record["method"]])[record["method"]] is None:
            state.note = "its method's code not checked: load its plugin with --plugin MODULE"
        return state
    started = _read(files, RunFiles.CONFIG)
    spec = started.get("spec") if isinstance(started.get("spec"), dict) else {}
    given = spec.get("overrides") if isinstance(spec.get("overrides"), list) else []
    state.overrides = "; ".join(_text(o) for o in given if _text(o)) or None
    schedule = started.get("schedule_key") if isinstance(started.get("schedule_key"), dict) else {}
    if isinstance(schedule.get("protocol_overrides"), list):  # written when the run started
        state.schedule = _text(key_text(_text(spec.get("profile")), [_text(o) for o in schedule["protocol_overrides"]]))
    stale = _stale(started.get("code") if isinstance(started.get("code"), dict) else {}, spec.get("method"))
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
        state.state, state.error, state.host = "failed", _text(failed.get("error")), _text(failed.get("host")) or None
    elif queued is not None:
        state.state = "pending"
        mark = progress.get("checkpoint")
        state.note = f"queued; resumes at iteration {mark['iteration']}" if mark else "queued"
        state.eta_s = None
    elif stale:
        state.state, state.eta_s = "stale", None
        state.note = f"{stale} since its checkpoint was trained: bench run --rerun-stale trains it from the start"
    elif lock == "stale":
        state.state, state.note, state.eta_s = "abandoned", f"lock left by {holder}", None
    else:
        state.eta_s = None
        mark = progress.get("checkpoint")
        if files.has(RunFiles.DONE):
            state.note = "run.json unreadable or damaged: bench run evaluates it again"
        elif files.has_checkpoint(RunFiles.LAST):
            state.note = (f"interrupted; resumes at iteration {mark['iteration']} of stage '{mark['stage']}'"
                          if mark else "interrupted; resumes from its checkpoint")
    if state.state not in ("running", "abandoned"):
        state.evaluating = None  # an evaluation that is not going on now is none to report
    return state


def _stale(code: dict[str, Any], method: Any) -> str:
    """"method code changed" when a run's stored method hash differs from today's code of its method;
    "" otherwise (also when its method is not registered here: the caller notes that)."""
    if not isinstance(method, str) or not isinstance(code.get("method"), str) or not code["method"]:
        return ""
    now = current_method_codes([method])[method]
    if now is None:
        return ""
    return "method code changed" if now and now != code["method"] else ""


def collect(root: Path, queue: dict[str, str] | None = None, folders: Iterable[Path] | None = None) -> list[RunState]:
    """Every run folder's state, plus (when listing the whole root) the runs a running sweep planned
    that have no folder yet: pending, so the summary and ETA cover the whole sweep."""
    from sslbench.run.sweep_plan import planned_runs

    if folders is not None:
        return [state_of(root, f, queue) for f in folders]
    found = finished_runs(root, warn=lambda message: None)  # (status names a damaged record on its line)
    states = _without_copies(root, [state_of(root, f, queue, found.read) for f in run_folders(root)], found.copies)
    seen = {s.run for s in states}
    for run, who in planned_runs(root, warn=_log_warning).items():
        if run not in seen:
            states.append(RunState(run, "pending", note=f"not started; {who}"))
    states.sort(key=lambda s: s.run)
    _add_evaluation(states)
    return states


def _add_evaluation(states: list[RunState]) -> None:
    """A run still training has its test-set evaluation after it (an LA test set takes half an hour on
    a CPU): its ETA adds the mean evaluation time of the finished runs of its dataset and profile,
    where one has finished (else the ETA is training only, as before)."""
    spent: dict[tuple[str, ...], list[float]] = {}
    for s in states:
        if s.eval_s is not None and s.state in ("done", "stale"):
            spent.setdefault(Path(s.run).parts[:2], []).append(s.eval_s)
    for s in states:
        seen = spent.get(Path(s.run).parts[:2])
        if s.state == "running" and s.evaluating is None and s.eta_s is not None and seen:
            s.eta_s = round(s.eta_s + sum(seen) / len(seen), 1)


def _log_warning(message: str) -> None:
    """A damaged sweep plan, said once as a warning (the CLI prints the package's warnings)."""
    logging.getLogger("sslbench").warning(one_line(message))


def _without_copies(root: Path, states: list[RunState], copies: list[tuple[str, str]]) -> list[RunState]:
    """``states`` less the folders that repeat a finished run listed under another folder, each named
    on the run it copies: a run is counted once, by the same choice of folder as the tables'."""
    listed = {s.run: s for s in states}
    dropped = set()
    for copy, kept in copies:
        copy_run, kept_run = str(Path(copy).relative_to(root)), str(Path(kept).relative_to(root))
        if kept_run in listed:
            listed[kept_run].copies = [*(listed[kept_run].copies or []), one_line(copy_run)]
            dropped.add(copy_run)
    return [s for s in states if s.run not in dropped]


def copies_line(states: Sequence[RunState]) -> str:
    """One line naming the folders counted as copies of a listed run ("" when there are none)."""
    pairs = [(copy, s.run) for s in states for copy in s.copies or ()]
    if not pairs:
        return ""
    return (f"{len(pairs)} run folder(s) repeat a run listed here and are counted once: "
            f"{copies_text(pairs)}")


def summary_line(states: Sequence[RunState]) -> str:
    counts = {s: sum(r.state == s for r in states) for s in STATES}
    parts = [f"{n} {s}" for s, n in counts.items() if n]
    line = f"{len(states)} run(s): " + (", ".join(parts) if parts else "none")
    versions = {r.code_core or "unrecorded" for r in states if r.code_core is not None}
    if len(versions) > 1:
        line += f"; finished runs from {len(versions)} code versions ({', '.join(sorted(versions))})"
    unchecked = sum(bool(r.note and "not checked" in r.note) for r in states)
    if unchecked:
        line += f"; {unchecked} run(s) not checked for code changes (their plugin is not loaded: --plugin MODULE)"
    eta = sweep_eta(states)
    return line + (f"; ETA {_duration(eta)} (one process)" if eta is not None else "")


def sweep_eta(states: Sequence[RunState]) -> float | None:
    """Time left in the sweep, run by one process: the running runs' ETAs (training left plus the
    evaluation after it where finished runs of the same dataset and profile tell how long that takes,
    or what is left of the evaluation pass under way) plus, per pending run, the mean wall time of the
    finished ones, evaluation included (None when nothing is left or nothing to estimate from)."""
    running = [r.eta_s for r in states if r.state == "running" and r.eta_s is not None]
    pending = sum(r.state in ("pending", "abandoned") for r in states)
    walls = [r.wall_s for r in states if r.wall_s]
    if not running and not pending:
        return None
    if pending and not walls:
        return sum(running) if running else None
    return sum(running) + pending * (sum(walls) / len(walls) if walls else 0.0)


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return ""
    seconds = round(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _detail(r: RunState) -> str:
    bits = []
    if r.state == "done" and r.dice is not None:
        bits.append(f"Dice {r.dice:.1f}" + (f"  ASSD {r.assd:.2f}" if r.assd is not None else ""))
    if r.state == "failed":
        bits.append(r.error or "")
    if r.state in ("running", "abandoned") and r.evaluating is not None:
        bits.append(r.evaluating)
        if r.eta_s is not None and r.state == "running":
            bits.append(f"ETA {_duration(r.eta_s)} (this pass)")
    elif r.state in ("running", "abandoned") and r.stage is not None:
        bits.append(f"{r.stage} {r.iteration}/{r.total}")
        if r.it_s:
            bits.append(f"{r.it_s:.2f} it/s")
        if r.eta_s is not None and r.state == "running":
            bits.append(f"ETA {_duration(r.eta_s)}")
    if r.host and r.state in ("running", "failed"):
        bits.append(f"on {r.host}")
    if r.schedule and "(" in r.schedule:  # a schedule of its own: what its key means
        bits.append(f"schedule {r.schedule}")
    if r.overrides:
        bits.append(f"--set {r.overrides}")
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
    names = [one_line(s.run) for s in states]  # a folder name is someone else's text: one row each
    width = max(len(n) for n in names)
    lines = [f"{'run':<{width}}  {'state':<8}  detail"]
    lines += [f"{n:<{width}}  {s.state:<8}  {one_line(_detail(s))}".rstrip() for n, s in zip(names, states)]
    lines += [line for line in (copies_line(states),) if line]
    lines.append(summary_line(states))
    return "\n".join(lines)
