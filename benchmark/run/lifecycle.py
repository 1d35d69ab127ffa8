"""One run's life in its folder: reuse it when done, else hold its lock, check its state once more
under the lock (another process may have finished it meanwhile), clear what ``--force`` or
``--rerun-stale`` replaces, write ``config.json``, then hand over to ``RunJob``. A failure leaves
``failed.json`` and ``error.log``; an interrupted run keeps its checkpoint for the next session.

A results folder inside the cache (or the cache inside it) is refused before anything is written.
From set-up to record the run holds its prepared dataset's shared lock (``DatasetUse``), so the
dataset cannot be prepared again under it; ``config.json`` records the dataset's fingerprint
(``prepared``), and a run resumed on other data than it started with is refused (``--force``
trains it again from the start)."""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from sslbench.base.code_identity import code_identity, core_code
from sslbench.base.errors import BenchError
from sslbench.base.locks import FolderLock
from sslbench.base.run_files import RunFiles
from sslbench.cache import DatasetUse, check_separate, data_changed, dataset_folder, prepare
from sslbench.method import METHODS
from sslbench.run.folder_state import FolderState, folder_state, run_code, stale_error
from sslbench.run.job import RunJob
from sslbench.run.specs import RunOptions, RunOutcome, RunSpec, overrides_hash, protocol_overrides
from sslbench.train.interrupt import Interrupted


def run_one(spec: RunSpec, opts: RunOptions, log: Callable[[str], None] = print,
            state: FolderState | None = None) -> RunOutcome:
    """One run, holding its folder's lock: a run another process is training is skipped ("busy"),
    never trained twice; a lock left by a killed process is taken over with a warning. ``state``: the
    folder's state as the sweep's check found it (read again here only when it was not done)."""
    check_separate(opts.results, opts.cache)  # before anything is written
    files = spec.files(opts.results)
    state = state or folder_state(spec, opts)
    if state.state == "done":
        return _skip_done(spec, opts, files, log)  # a finished run is only read: no lock, no write access needed
    if state.state == "stale":
        raise stale_error([(spec, state)])
    files.create()
    lock = FolderLock(files.lock_path)
    if not lock.acquire(wait=False):
        return RunOutcome(spec, "busy", str(files.folder), message=f"running elsewhere ({lock.holder})")
    try:
        if lock.stale:
            log(f"warning: {spec.label}: its last session ({lock.stale}) ended without finishing; taking over")
        files.remove_orphans()
        files.remove(RunFiles.FAILED)
        files.remove(RunFiles.ERROR_LOG)
        files.reserve()
        try:
            return _run_locked(spec, opts, files, log)
        except Interrupted:
            raise
        except Exception as exc:
            files.note_failure(exc)
            raise
        finally:
            files.release_reserve()
    finally:
        lock.release()


def _skip_done(spec: RunSpec, opts: RunOptions, files: RunFiles, log: Callable[[str], None]) -> RunOutcome:
    record = files.record() or {}
    note = "already done"
    if opts.save_predictions and not files.predictions.is_dir():
        note += f"; its predictions were not saved: bench predict {files.folder}"
        log(f"note: {spec.label}: {note}")
    return RunOutcome(spec, "skipped", str(files.folder), record.get("summary", {}), note)


def _run_locked(spec: RunSpec, opts: RunOptions, files: RunFiles, log: Callable[[str], None]) -> RunOutcome:
    """Skip, replace or (re)start the run whose lock we hold: train, evaluate, record."""
    state = folder_state(spec, opts)  # under the lock: what another process did meanwhile counts
    if state.state == "done":
        return _skip_done(spec, opts, files, log)
    if state.state == "stale":
        raise stale_error([(spec, state)])
    if state.state == "replace":
        files.clear()
    elif files.has(RunFiles.DONE):  # marked done, but its record is unreadable or damaged
        log(f"warning: {files.path(RunFiles.RECORD)}: unreadable or damaged record; evaluating the run again "
            "from its checkpoints (or training it again without them)")
        files.remove(RunFiles.DONE)
    prepare(spec.dataset, cache_root=opts.cache)  # an embedded dataset is built once, before its use is locked
    with DatasetUse(dataset_folder(spec.dataset, opts.cache), spec.label, log) as use:
        resume = state.state == "resume"
        changed = data_changed(files.read_if_any(RunFiles.CONFIG), use.fingerprint) if resume else ""
        if changed and not opts.force:
            raise BenchError(f"{spec.label}: its dataset {spec.dataset} was prepared again since this run started "
                             f"({changed}); resuming would train on two datasets: --force trains it again from the "
                             "start, or prepare the data it started with again")
        if changed:
            log(f"warning: {spec.label}: its dataset {spec.dataset} changed since it started ({changed}); "
                "training it again from the start (--force)")
            files.clear()
            resume = False
        cfg = spec.resolved()
        spec_fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec) if f.name != "config"}
        code = code_identity(METHODS.get(spec.method))
        if resume:
            code = run_code(files.read_if_any(RunFiles.CONFIG), code)
            if code["core"] != core_code():
                log(f"warning: {spec.label}: resumed under another version of the core code than it started with; "
                    f"its record names both ({code['core']}); --rerun-stale=core trains it again from the start")
        protocol = protocol_overrides(spec)  # the schedule key, for views of a run that has no record yet
        schedule = {"protocol_overrides": protocol,
                    "profile_key": spec.profile + (f"+{overrides_hash(protocol)}" if protocol else "")}
        files.write(RunFiles.CONFIG, {"hash": cfg.hash(), "spec": spec_fields, "schedule_key": schedule,
                                      "sources": cfg.sources, "code": code, "prepared": use.identity,
                                      **cfg.to_dict()})
        t0 = time.perf_counter()
        record = RunJob.set_up(spec, opts, files, log, code, use).run(t0, log)
    return RunOutcome(spec, "done", str(files.folder), record["summary"])


def interrupted(spec: RunSpec, opts: RunOptions, message: str) -> RunOutcome:
    return RunOutcome(spec, "interrupted", str(spec.files(opts.results).folder), message=message)


def failed(spec: RunSpec, opts: RunOptions, exc: BaseException) -> RunOutcome:
    files = spec.files(opts.results)
    kind = "" if isinstance(exc, BenchError) else f"{type(exc).__name__}: "
    where = f" (traceback: {files.path(RunFiles.ERROR_LOG)})" if files.has(RunFiles.ERROR_LOG) else ""
    return RunOutcome(spec, "failed", str(files.folder), message=f"{kind}{exc}{where}")
