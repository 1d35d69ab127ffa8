"""``SlurmExecutor``: a sweep as one SLURM job array (submitted through submitit), the same
interface as ``LocalExecutor``; with ``wait`` it follows the array to its end and reports each run."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sslbench.base.run_files import RunFiles
from sslbench.run.executors import SweepResult
from sslbench.run.queue import queued_job, squeue_states
from sslbench.run.slurm import SlurmSettings, load_settings, submit
from sslbench.run.slurm import wait as wait_for
from sslbench.run.specs import RunOptions, RunOutcome, RunSpec
from sslbench.run.status import collect

SKIPPED = {"done": "already done", "running": "being trained now", "queued": "already queued"}


@dataclass
class SlurmExecutor:
    """SLURM settings: defaults < ``config`` file (a ``[slurm]`` table) < ``sbatch`` items and ``given``
    flags (``--partition`` ...), or ``settings`` already loaded from them (the CLI checks them before it
    prints anything); ``wait``: follow the array until it ends."""

    config: Path | None = None
    sbatch: tuple[str, ...] = ()
    wait: bool = False
    given: dict[str, Any] = field(default_factory=dict)
    settings: SlurmSettings | None = None

    def run(self, specs: Sequence[RunSpec], opts: RunOptions, log: Callable[[str], None]) -> SweepResult:
        settings = self.settings or load_settings(self.config, self.sbatch, **self.given)
        sub = submit(specs, opts, settings, log=log)
        for why, labels in sub.skipped.items():
            if labels:
                log(f"{len(labels)} run(s) {SKIPPED[why]}: not submitted again")
        if sub.job_ids:
            array = sub.job_ids[0].split("_")[0]
            log(f"submitted {sum(len(r) for r in sub.runs.values())} run(s) as SLURM job "
                f"{'array ' if '_' in sub.job_ids[0] else ''}{array} ({len(sub.job_ids)} task(s), "
                f"{settings.runs_per_task} run(s) per task); logs in {sub.logs}/{array}*")
        elif not self.wait:
            log("nothing submitted")
        if not self.wait:
            log(f"follow with: bench status --results {opts.results}")
            return SweepResult([], ended=False)
        root = opts.results.absolute()
        folders = [s.files(root).folder for s in specs]
        queue = squeue_states() or {}  # and the runs an earlier submission still has in the queue
        watching = [*sub.job_ids, *(q[0] for f in folders if (q := queued_job(RunFiles(f), queue)) is not None)]
        wait_for(root, watching, folders, log=log)
        outcomes = []
        for spec, folder, state in zip(specs, folders, collect(root, squeue_states(), folders)):
            if state.state == "done":
                outcomes.append(RunOutcome(spec, "done", str(folder)))
            else:
                outcomes.append(RunOutcome(spec, "failed", str(folder),
                                           message=f"{state.state} {state.error or state.note or ''}".rstrip()))
        return SweepResult(outcomes)
