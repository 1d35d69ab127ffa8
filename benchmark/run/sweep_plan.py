"""A running sweep's plan, so ``bench status`` shows the whole sweep, not only the folders that exist.

A local sweep writes ``<results>/.sweeps/<host>-<pid>.json`` (the run folders it will train, relative
to the results root) and holds a lock beside it while it runs; it removes both when it ends. A plan
whose lock is not held belongs to a sweep that ended without cleaning up (killed): status ignores it
and the next sweep removes it. Plans are someone else's input when read: every entry is checked.
"""
from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from sslbench.base.atomic import write_json
from sslbench.base.errors import BenchError
from sslbench.base.file_kinds import not_regular
from sslbench.base.locks import FolderLock, probe

PLANS = ".sweeps"
# a run folder relative to the results root: <dataset>/<profile>/<method>/ratio-<r>/seed-<s>
RUN_PATH = re.compile(r"[A-Za-z0-9][\w.+=@-]*/[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.+=@~-]*/ratio-[0-9.e+-]+/seed-[0-9]+")


@contextmanager
def sweep_plan(results: Path, folders: Sequence[Path]) -> Iterator[None]:
    """Record ``folders`` as this process's plan while the block runs (a plan of one run is not
    written: its folder alone says it all)."""
    if len(folders) < 2:
        yield
        return
    plans = results / PLANS
    if plans.is_symlink() or (plans.exists() and not plans.is_dir()):
        raise BenchError(f"{plans}: is a link or not a folder; the sweep's plan is never written through it "
                         "(remove it)")
    _remove_ended(plans)
    name = f"{socket.gethostname()}-{os.getpid()}"
    lock = FolderLock(plans / f"{name}.lock")
    lock.acquire(wait=True)
    plan = plans / f"{name}.json"
    try:
        write_json(plan, {"runs": [str(f.relative_to(results)) for f in folders]})
        yield
    finally:
        plan.unlink(missing_ok=True)
        lock.release()


def _remove_ended(plans: Path) -> None:
    """Plans of sweeps that ended without removing theirs (their lock is not held)."""
    if not plans.is_dir() or plans.is_symlink():
        return
    for plan in plans.glob("*.json"):
        lock = plan.with_suffix(".lock")
        if probe(lock)[0] != "held" and not not_regular(plan):
            plan.unlink(missing_ok=True)
            if lock.is_file() and not lock.is_symlink():
                lock.unlink(missing_ok=True)


def planned_runs(results: Path, warn: Callable[[str], None] = lambda m: None) -> dict[str, str]:
    """Run folder (relative path) -> who planned it, for every plan whose sweep is running."""
    plans = results / PLANS
    out: dict[str, str] = {}
    if not plans.is_dir() or plans.is_symlink():
        return out
    for plan in sorted(plans.glob("*.json")):
        state, holder = probe(plan.with_suffix(".lock"))
        if state != "held" or not_regular(plan):
            continue
        try:
            runs = json.loads(plan.read_text(encoding="utf-8"))["runs"]
            if not isinstance(runs, list) or len(runs) > 1_000_000:
                raise ValueError("runs is not a list")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            warn(f"{plan}: damaged sweep plan ({exc}); ignored")
            continue
        for run in runs:
            if isinstance(run, str) and RUN_PATH.fullmatch(run) and ".." not in run.split("/"):
                who = re.sub(r"[^\x20-\x7e]", "?", holder)[:120]  # a lock file's text: printable only
                out.setdefault(run, f"planned by the sweep of {who}" if who else "planned by a running sweep")
            else:
                warn(f"{plan}: an entry is not a run folder ({str(run)[:60]!r}); ignored")
    return out
