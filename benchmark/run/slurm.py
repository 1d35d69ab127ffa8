"""Sweeps on a SLURM cluster through submitit: one job array, one array task per run (or per group
of ``runs_per_task`` runs, trained side by side as that many processes on the task's GPU).

An array task runs its specs through :func:`sslbench.run.executors.execute`, the same code path as a
local ``bench run``: run spec in, run folder out, records the only shared state, so the tables do
not depend on the executor. SLURM warns a task ``signal_delay_s`` seconds before its time limit or a
preemption with ``SIGUSR2``; the task then checkpoints at the next step boundary
(:mod:`sslbench.train.interrupt`) and hands over to submitit's checkpoint/requeue protocol, which
requeues the same task; the requeued task skips the runs already done and resumes the others from
``last.pt``.

Submitting writes ``slurm.json`` (job id, log paths) into each run folder; a later ``bench run``
submits a run again only when it is neither done, nor being trained (its lock is held), nor still
in SLURM's queue under that id. Submissions to one results folder take turns (a lock on
``<results>/.submit.lock``), so two at once never both see a run as unsubmitted.

Every value that reaches the batch script submitit writes (settings, ``--slurm`` items, the paths)
is refused when it holds a control character: a newline would end its ``#SBATCH`` line and the rest
would run as a shell command on the cluster.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sslbench.base.errors import BenchError
from sslbench.base.locks import FolderLock, probe
from sslbench.base.printable import one_line
from sslbench.base.run_files import RunFiles
from sslbench.io.readers import regular_input
from sslbench.run.queue import ACTIVE, RUNNING, given_job, queued_job, squeue_states
from sslbench.run.status import collect, summary_line

LOGS = "slurm-logs"        # under the results root: submitit's pickles and the tasks' stdout/stderr
SUBMIT_LOCK = ".submit.lock"  # under the results root: held while a submission decides and submits

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: none belongs in a SLURM value,
# and a line break would start a new line of the batch script (a shell command)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# an sbatch long option's name (``mail-type``, ``gres_flags``, ``x11``), without its leading dashes
_OPTION_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_][A-Za-z0-9]+)*")
# sbatch options the executor sets itself: the array's shape, its logs and the requeue warning
_MANAGED = {"array": "the array is one task per run group (--runs-per-task)",
            "output": f"the logs go to <results>/{LOGS}", "error": f"the logs go to <results>/{LOGS}",
            "open-mode": "the logs are appended across requeues", "signal": "use signal_delay_s",
            "wrap": "the batch script is submitit's", "time": "use --time-min", "parsable": "sbatch's output is read"}


def script_safe(value: str, what: str) -> str:
    """``value`` unchanged, or one error naming ``what`` (the option or config key) when it holds a
    control character, which would break out of its line of the batch script."""
    bad = _CONTROL.search(value)
    if bad is not None:
        raise BenchError(f"{what}: {value!r} holds a control character ({bad.group()!r}); refused: it would be "
                         "written into the SLURM batch script, where a line break starts a shell command")
    return value


def _sbatch_item(key: str, value: str, what: str) -> tuple[str, str]:
    """One extra sbatch option (``--slurm KEY=VALUE`` or a ``[slurm.sbatch]`` entry) as (name, value):
    the name an sbatch option name, neither holding a control character."""
    script_safe(key, what)
    script_safe(value, what)
    name = key.strip().lstrip("-")
    if not _OPTION_NAME.fullmatch(name):
        raise BenchError(f"{what}: {name!r} is not an sbatch option name (letters, digits and single - or _, "
                         "e.g. constraint, mail-type)")
    why = _MANAGED.get(name.replace("_", "-").lower())
    if why:
        raise BenchError(f"{what}: --{name} is set by bench, not by hand ({why})")
    return name, value.strip()


@dataclass
class SlurmSettings:
    """Where and how the array tasks run; a lab writes these once in a TOML file (``[slurm]``)."""

    partition: str | None = None
    gpus_per_task: int | None = None
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    time_min: int = 240                 # each task's time limit; a longer run is requeued and resumes
    array_parallelism: int = 64         # array tasks running at once
    account: str | None = None
    qos: str | None = None
    runs_per_task: int = 1              # runs per array task, trained as that many processes
    signal_delay_s: int = 120           # SIGUSR2 this long before the time limit: checkpoint and requeue
    max_requeues: int = 20              # after a time limit (preemptions do not count)
    setup: tuple[str, ...] = ()         # shell lines before the task starts (module load ..., source ...)
    python: str | None = None           # the interpreter on the nodes (default: this one)
    sbatch: dict[str, str] = field(default_factory=dict)  # free extras: {"constraint": "a100"}

    def sbatch_parameters(self) -> dict[str, Any]:
        """submitit's ``SlurmExecutor.update_parameters`` arguments."""
        params: dict[str, Any] = {"time": self.time_min, "array_parallelism": self.array_parallelism,
                                  "signal_delay_s": self.signal_delay_s, "job_name": "sslbench",
                                  "setup": list(self.setup)}
        for key in ("partition", "gpus_per_task", "cpus_per_task", "account", "qos"):
            value = getattr(self, key)
            if value is not None:
                params[key] = value
        if self.mem_gb is not None:
            params["mem"] = f"{max(1, round(self.mem_gb * 1024))}M"
        if self.sbatch:
            params["additional_parameters"] = dict(self.sbatch)
        return params


_TYPES: dict[str, Callable[[Any], Any]] = {
    "partition": str, "gpus_per_task": int, "cpus_per_task": int, "mem_gb": float, "time_min": int,
    "array_parallelism": int, "account": str, "qos": str, "runs_per_task": int, "signal_delay_s": int,
    "max_requeues": int, "python": str,
}


def load_settings(path: Path | None = None, sbatch: Sequence[str] = (), **given: Any) -> SlurmSettings:
    """Settings from defaults, then the TOML file (``[slurm]`` table, ``[slurm.sbatch]`` extras), then
    the command line (``given``: options left as None are not given; ``sbatch``: ``KEY=VALUE`` items)."""
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}  # key -> the file or "the command line" its value came from
    extras: dict[str, str] = {}
    if path is not None:
        import tomllib

        try:
            regular_input(Path(path))  # a FIFO would hang the read
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:
            raise BenchError(f"{path}: unreadable executor config ({type(exc).__name__}: {str(exc)[:200]})") from None
        table = data.get("slurm")
        if not isinstance(table, dict) or set(data) != {"slurm"}:
            raise BenchError(f"{path}: expected one [slurm] table (keys: {', '.join(sorted(_TYPES))}, "
                             "setup, sbatch)")
        for key, value in table.items():
            if key == "sbatch":
                if not isinstance(value, dict):
                    raise BenchError(f"{path}: [slurm.sbatch] must be a table of sbatch options")
                for k, v in value.items():
                    name, text = _sbatch_item(str(k), str(v), f"{path}: [slurm.sbatch] {str(k)!r}")
                    extras[name] = text
            elif key == "setup":
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise BenchError(f"{path}: slurm.setup must be a list of shell lines")
                for line in value:  # shell by design, but one line each: a tab is all they may hold
                    script_safe(line.replace("\t", " "), f"{path}: slurm.setup")
                values["setup"] = tuple(value)
            elif key in _TYPES:
                values[key], origin[key] = _typed(key, value, str(path)), str(path)
                if isinstance(values[key], str):
                    script_safe(values[key], f"{path}: slurm.{key}")
            else:
                raise BenchError(f"{path}: unknown key slurm.{key} (known: {', '.join(sorted(_TYPES))}, "
                                 "setup, sbatch)")
    for key, value in given.items():
        if key not in _TYPES:
            raise BenchError(f"unknown SLURM setting {key!r}")
        if value is not None:
            values[key], origin[key] = _typed(key, value, "the command line"), "the command line"
            if isinstance(values[key], str):
                script_safe(values[key], f"--{key.replace('_', '-')}")
    for item in sbatch:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise BenchError(f"--slurm {item!r}: expected KEY=VALUE (an sbatch option, e.g. constraint=a100)")
        name, text = _sbatch_item(key, value, f"--slurm {item!r}")
        extras[name] = text
    settings = SlurmSettings(**values, sbatch=extras)
    for key, lo in _LEAST.items():
        value = getattr(settings, key)
        if value is not None and value < lo:
            raise BenchError(f"{origin.get(key, 'SLURM settings')}: slurm.{key} must be >= {lo}, got {value}")
    if settings.time_min * 60 < settings.signal_delay_s + 90:
        where = origin.get("time_min", origin.get("signal_delay_s", "SLURM settings"))
        raise BenchError(f"{where}: signal_delay_s = {settings.signal_delay_s} with time_min = "
                         f"{settings.time_min}: SLURM may send the warning up to 60 s before the time asked, "
                         "which can be as a task starts, before it can checkpoint (it is then killed); "
                         "keep time_min * 60 >= signal_delay_s + 90")
    return settings


_LEAST: dict[str, float] = {"runs_per_task": 1, "time_min": 1, "array_parallelism": 1, "cpus_per_task": 1,
                            "gpus_per_task": 0, "signal_delay_s": 1, "max_requeues": 0, "mem_gb": 0.001}


def _typed(key: str, value: Any, where: str) -> Any:
    """A setting of its declared type: an int from an int (or, on the command line, its digits), never
    from a float (1.5 GPUs) or a bool; a float from a number; a string from a string (not a list)."""
    kind = _TYPES[key]
    ok = not isinstance(value, bool)
    if ok and kind is int:
        ok = isinstance(value, int) or (isinstance(value, str) and value.strip().lstrip("+-").isdigit())
    elif ok and kind is float:
        ok = isinstance(value, (int, float, str))
    elif ok:
        ok = isinstance(value, str) and bool(value.strip())
    try:
        if ok:
            return kind(value)
    except (TypeError, ValueError):
        pass
    raise BenchError(f"{where}: slurm.{key} = {value!r} is not {'an int' if kind is int else 'a ' + kind.__name__}")


# ---------------------------------------------------------------------------------------------- task
class SlurmTask:
    """What an array task runs: its runs through the local executor, with ``SIGUSR2`` asking them to
    checkpoint and stop; then requeue (submitit's protocol) if any run is unfinished. Picklable: it
    holds nothing; the runs and options are its call arguments."""

    def __call__(self, specs: list[Any], opts: Any) -> list[dict[str, Any]]:
        from sslbench.method import METHODS
        from sslbench.run.executors import execute
        from sslbench.train import interrupt

        def say(message: str) -> None:
            print(message, flush=True)

        submitit_handler = signal.getsignal(signal.SIGUSR2)  # submitit's: checkpoint() then requeue
        interrupt.clear()
        interrupt.stop_on_signals(["USR2"])
        cpus = int(os.environ.get("SLURM_CPUS_PER_TASK", "0") or 0)
        jobs = max(1, min(len(specs), int(os.environ.get("SSLBENCH_RUNS_PER_TASK", "1"))))
        threads = max(1, cpus // jobs) if cpus else None  # the task's CPUs shared by its runs
        if threads:
            import torch

            torch.set_num_threads(threads)
        METHODS.load_env_plugins()
        for module in opts.plugins:
            METHODS.load_plugin_module(module)
        opts = dataclasses.replace(opts, stop_signals=("USR2",), progress=False, threads=threads)
        outcomes = execute(specs, opts, jobs=jobs, log=say)
        if any(o.status == "interrupted" for o in outcomes) and callable(submitit_handler):
            say(f"{interrupt.stop_requested()}: checkpoints written; handing over to requeue")
            signal.signal(signal.SIGUSR2, submitit_handler)
            submitit_handler(signal.SIGUSR2, None)  # calls self.checkpoint, requeues, exits
        failed = [o for o in outcomes if o.status == "failed"]
        if failed:  # the SLURM job ends FAILED, with every failed run's reason in its log
            raise BenchError("; ".join(f"{o.spec.label}: {o.message}" for o in failed))
        return [{"run": o.spec.label, "status": o.status, "folder": o.folder, "summary": o.summary}
                for o in outcomes]

    def checkpoint(self, specs: list[Any], opts: Any) -> Any:
        """submitit's hook before a requeue: the same task again (its runs resume from ``last.pt``)."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(SlurmTask(), specs, opts)


# ---------------------------------------------------------------------------------------------- submit
@dataclass
class Submission:
    job_ids: list[str]          # one per array task
    runs: dict[str, list[str]]  # job id -> run labels
    skipped: dict[str, list[str]]  # "done" / "running" / "queued" -> run labels
    logs: Path


def private_folder(path: Path) -> None:
    """The folder of the submission pickles, which the array tasks unpickle (they run code): created
    with mode 0700; an existing one must be a real folder owned by this user and writable by no one
    else, or whoever can write it could run code in the tasks."""
    import stat

    if path.is_symlink():
        raise BenchError(f"{path}: is a symbolic link; the SLURM submission folder must be a real folder")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=0o700)
        os.chmod(path, 0o700)
        return
    info = path.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise BenchError(f"{path}: is not a folder")
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise BenchError(f"{path}: the SLURM tasks unpickle what this folder holds, and it is "
                         f"{'owned by another user' if info.st_uid != os.getuid() else 'writable by others'} "
                         f"(mode {stat.S_IMODE(info.st_mode):o}); make it yours and not group/world-writable "
                         f"(chmod 700 {path}) before submitting")


def _import_submitit() -> Any:
    try:
        import submitit
    except ImportError as exc:
        raise BenchError("--executor slurm needs submitit: pip install 'sslbench[slurm]'") from exc
    return submitit


def check_script_values(settings: SlurmSettings, results: Path) -> None:
    """Every value submitit writes into the batch script, checked for control characters: the settings
    (also when built in code, not by :func:`load_settings`), the results folder (the logs' paths) and
    the interpreter the tasks run."""
    for key in ("partition", "account", "qos", "python"):
        value = getattr(settings, key)
        if value is not None:
            script_safe(str(value), f"slurm.{key}")
    for line in settings.setup:
        script_safe(line.replace("\t", " "), "slurm.setup")
    for key, value in settings.sbatch.items():
        _sbatch_item(str(key), str(value), f"slurm.sbatch {str(key)!r}")
    script_safe(str(Path(results).absolute()), "--results")
    if settings.python is None:
        script_safe(sys.executable, "the Python interpreter's path")


def submit(specs: Sequence[Any], opts: Any, settings: SlurmSettings,
           log: Callable[[str], None] = print) -> Submission:
    """Submit the runs that are not done, not running and not queued, as one job array. The results
    folder's submission lock is held from reading the queue until every ``slurm.json`` is written."""
    from sslbench.run.executors import check_inputs

    check_script_values(settings, opts.results)
    submitit = _import_submitit()
    if shutil.which("sbatch") is None:
        raise BenchError("--executor slurm: sbatch not found (run this on the cluster's login node)")
    opts = dataclasses.replace(opts, results=Path(opts.results).absolute(),
                               cache=None if opts.cache is None else Path(opts.cache).absolute())
    check_inputs(specs, opts, check_device=False)  # the nodes' device, not this login node's
    made = not opts.results.exists() and not opts.results.is_symlink()
    lock = FolderLock(opts.results / SUBMIT_LOCK)
    if not lock.acquire(wait=False):
        log(f"waiting for another submission to {opts.results} to end ({lock.holder})")
        lock.acquire(wait=True)
    try:
        try:
            return _submit_locked(submitit, specs, opts, settings)
        finally:
            lock.release()
    except BaseException:
        if made:  # the results folder this refused submission made, when nothing else came into it
            with contextlib.suppress(OSError):
                opts.results.rmdir()
        raise


def _submit_locked(submitit: Any, specs: Sequence[Any], opts: Any, settings: SlurmSettings) -> Submission:
    """:func:`submit`'s work once it holds the results folder's submission lock."""
    from sslbench.run.folder_state import check_folder

    queue = squeue_states()
    skipped: dict[str, list[str]] = {"done": [], "running": [], "queued": []}
    todo = []
    unknown = []  # runs given a job that squeue cannot tell about
    for spec in specs:
        files = spec.files(opts.results)
        if check_folder(spec, opts) == "done":
            skipped["done"].append(spec.label)
        elif probe(files.lock_path)[0] == "held":
            skipped["running"].append(spec.label)
        elif (job := queued_job(files, queue)) is not None:
            skipped["running" if job[1] in RUNNING else "queued"].append(spec.label)
        else:
            if queue is None and given_job(files) is not None:
                unknown.append(spec.label)
            todo.append(spec)
    if unknown:
        raise BenchError(f"squeue did not answer, so whether the SLURM jobs of {len(unknown)} run(s) (e.g. "
                         f"{unknown[0]}) are still queued is unknown; not submitting them twice: try again when "
                         "squeue works")
    logs = opts.results / LOGS
    if not todo:
        return Submission([], {}, skipped, logs)
    k = settings.runs_per_task
    groups = [list(todo[i:i + k]) for i in range(0, len(todo), k)]
    started = time.time()
    jobs = _submit_array(submitit, groups, opts, settings, logs)
    runs: dict[str, list[str]] = {}
    for job, group in zip(jobs, groups):
        runs[job.job_id] = [spec.label for spec in group]
        for spec in group:
            files = spec.files(opts.results)
            files.create()
            files.write(RunFiles.SLURM, {
                "job_id": job.job_id, "submitted": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
                "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr), "runs_per_task": k})
    return Submission([job.job_id for job in jobs], runs, skipped, logs)


# the temporary files submitit writes beside the logs before sbatch answers: the tasks' pickles and the
# batch script (moved under the job's id once sbatch has given one)
_PENDING_FILE = re.compile(r"(?:[0-9a-f]{32}\.pkl|\.submission_file_[0-9a-f]{32}\.sh)")


def _submit_array(submitit: Any, groups: list[list[Any]], opts: Any, settings: SlurmSettings, logs: Path) -> list[Any]:
    """``groups`` as one array through submitit. When sbatch refuses it (or submitit fails before it
    answers), what this submission wrote under ``logs`` is removed (the folder too, if it made it) and
    the refusal is one error: sbatch's words, which submitit would print line by line, in one line."""
    import io

    made = not logs.exists() and not logs.is_symlink()
    private_folder(logs)
    before = set(os.listdir(logs))
    said = io.StringIO()
    try:
        executor = submitit.SlurmExecutor(folder=logs / "%j", max_num_timeout=settings.max_requeues,
                                          python=settings.python)
        params = settings.sbatch_parameters()
        params["setup"] = [f"export SSLBENCH_RUNS_PER_TASK={settings.runs_per_task}", *params["setup"]]
        try:
            executor.update_parameters(**params)
        except ValueError as exc:
            raise BenchError(f"SLURM settings: {one_line(str(exc))[:400]}") from exc
        with contextlib.redirect_stderr(said):  # submitit prints sbatch's complaint as it came
            return executor.map_array(SlurmTask(), groups, [opts] * len(groups))
    except Exception as exc:
        _remove_pending(logs, before, made)
        if isinstance(exc, BenchError):
            raise
        words = "; ".join(line.strip() for line in (str(exc) or said.getvalue()).splitlines() if line.strip())
        words = one_line(words)[:400] or type(exc).__name__
        if isinstance(exc, submitit.core.utils.FailedSubmissionError):  # sbatch said yes in words not read
            raise BenchError(f"sbatch's answer was not understood ({words}); a job it may have queued finds no "
                             f"task and fails (see squeue); what this submission wrote to {logs} removed") from None
        raise BenchError(f"sbatch refused the array ({words}); nothing submitted, and what this submission "
                         f"wrote to {logs} removed") from None


def _remove_pending(logs: Path, before: set[str], made: bool) -> None:
    """The files a refused submission left under ``logs``: only those it wrote (new since ``before``,
    named as submitit names them, regular files), and ``logs`` itself when it made it and it is empty."""
    import stat

    for name in set(os.listdir(logs)) - before:
        path = logs / name
        if _PENDING_FILE.fullmatch(name) and stat.S_ISREG(os.lstat(path).st_mode):
            path.unlink(missing_ok=True)
    if made and not os.listdir(logs):
        logs.rmdir()


def wait(results: Path, job_ids: Sequence[str], folders: Sequence[Path], log: Callable[[str], None],
         poll_s: float = 2.0, max_poll_s: float = 30.0) -> None:
    """Block until none of ``job_ids`` is in SLURM's queue, logging a summary line when it changes
    (polling every 2 s at first, then less often, up to every 30 s)."""
    last = ""
    while True:
        queue = squeue_states()
        states = collect(results, queue, folders)
        line = summary_line(states)
        if line != last:
            log(f"[{time.strftime('%H:%M:%S')}] {line}")
            last = line
        if queue is not None and not any(queue.get(j) in ACTIVE for j in job_ids):
            return
        if queue is None and all(s.state in ("done", "failed") for s in states):
            return
        time.sleep(poll_s)
        poll_s = min(max_poll_s, poll_s * 1.25)
