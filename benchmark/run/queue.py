"""SLURM's queue as the run folders see it: the state of this user's jobs (``squeue``) and the job a
run was given (its ``slurm.json``). Read by ``bench status`` and by the SLURM executor, which never
submits a run whose job is still queued."""
from __future__ import annotations

import getpass
import re
import shutil
import subprocess

from sslbench.base.run_files import RunFiles

ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "COMPLETING",
          "SUSPENDED", "RESIZING", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD"}
RUNNING = {"RUNNING", "CONFIGURING", "COMPLETING", "SIGNALING", "STAGE_OUT"}  # the ACTIVE states past the queue


def squeue_states() -> dict[str, str] | None:
    """SLURM state of each of this user's jobs (array tasks one per line, ``"123_4"``); None where
    ``squeue`` is not available or does not answer."""
    if shutil.which("squeue") is None:
        return None
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i|%T"], check=False, capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    states = {}
    for line in out.stdout.splitlines():
        job, _, state = line.strip().partition("|")
        if job:
            states[job] = state.strip()
    return states


def given_job(files: RunFiles) -> str | None:
    """The SLURM job id the run was given (``slurm.json``), or None."""
    record = files.read_if_any(RunFiles.SLURM)
    job = record.get("job_id") if isinstance(record, dict) else None
    if isinstance(job, int) and not isinstance(job, bool) and 0 <= job < 10 ** 12:
        return str(job)
    return job if isinstance(job, str) and re.fullmatch(r"[0-9]{1,12}(_[0-9]{1,9})?", job) else None


def queued_job(files: RunFiles, queue: dict[str, str] | None) -> tuple[str, str] | None:
    """(job id, SLURM state) of the job this run was given, while that job is still in the queue."""
    job = given_job(files) if queue is not None else None
    if job is None or queue is None:
        return None
    state = queue.get(job)
    return (job, state) if state in ACTIVE else None
