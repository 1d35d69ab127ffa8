"""``bench run --dry-run``: what a sweep would do, without writing anything: each run's state (done,
resumable, to train, or holding another configuration) and an estimate of the time left, from the
wall times of finished runs of the same dataset, method and schedule under the results folder."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tabulate import tabulate

from sslbench.base.errors import BenchError
from sslbench.base.fields import FieldError
from sslbench.base.records import check_progress
from sslbench.base.finished_runs import iter_records
from sslbench.base.run_files import RunFiles
from sslbench.run.folder_state import check_folder
from sslbench.run.specs import RunOptions, RunSpec, overrides_hash, protocol_overrides


def _state(spec: RunSpec, opts: RunOptions) -> str:
    try:
        state = check_folder(spec, opts)
    except BenchError as exc:
        why = str(exc).split(": ", 1)[-1].split("; use ", 1)[0]
        return f"refused: {why} (--tag, --force or --results)"
    if state == "resume":
        try:  # where last.pt is, as the progress file records it after each checkpoint
            mark = check_progress(spec.files(opts.results).read_if_any(RunFiles.PROGRESS)).get("checkpoint")
        except FieldError:
            mark = None
        return "resumable" + (f" (at iteration {mark['iteration']} of '{mark['stage']}')" if mark else "") \
            if spec.files(opts.results).has_checkpoint(RunFiles.LAST) else "to train"
    return {"new": "to train", "done": "done", "replace": "to train again (--force or --rerun-stale)",
            "stale": "stale: its method's code changed (--rerun-stale retrains it)"}[state]


LIST_AT_MOST = 200  # runs a dry run lists one per line; a larger sweep is summarised


def plan_text(specs: Sequence[RunSpec], opts: RunOptions) -> str:
    walls: dict[tuple[str, str, str], list[float]] = {}
    if opts.results.exists():
        for rec in iter_records(opts.results, warn=lambda message: None):
            key = (rec.get("dataset"), rec.get("method"),
                   str(rec.get("profile")) + (f"+{rec['overrides_hash']}" if rec.get("overrides_hash") else ""))
            wall = rec.get("timing", {}).get("wall_s") if isinstance(rec.get("timing"), dict) else None
            if isinstance(wall, (int, float)):
                walls.setdefault(key, []).append(float(wall))  # type: ignore[arg-type]
    rows: list[list[Any]] = []
    left, unknown = 0.0, 0
    for spec in specs:
        state = _state(spec, opts)
        ohash = overrides_hash(protocol_overrides(spec))
        key = (spec.dataset, spec.method, spec.profile + (f"+{ohash}" if ohash else ""))
        known = walls.get(key)
        estimate = sum(known) / len(known) if known else None
        if state != "done" and not state.startswith(("refused", "stale")):
            if estimate is None:
                unknown += 1
            else:
                left += estimate
        rows.append([spec.label, state, "" if estimate is None else f"{estimate / 60:.1f}"])
    if len(rows) > LIST_AT_MOST:  # a large sweep: counts per dataset, method and state, not a line per run
        counts: dict[tuple[str, str, str], int] = {}
        for spec, row in zip(specs, rows):
            key = (spec.dataset, spec.method, row[1].split(":", 1)[0].split(" (", 1)[0])
            counts[key] = counts.get(key, 0) + 1
        text = tabulate([[*k, n] for k, n in counts.items()], headers=["dataset", "method", "state", "runs"],
                        tablefmt="github")
    else:
        text = tabulate(rows, headers=["run", "state", "min/run (finished runs)"], tablefmt="github")
    refused = sum(r[1].startswith(("refused", "stale")) for r in rows)
    todo = sum(r[1] != "done" for r in rows) - refused
    summary = f"{len(rows)} run(s): {len(rows) - todo - refused} done, {todo} to train or resume" + (
        f", {refused} refused as they stand (bench run would stop: see each one's state)" if refused else "")
    if todo and unknown < todo:
        summary += f"; about {left / 60:.0f} min from finished runs"
    if todo and unknown:
        summary += (f"; {unknown} run(s) without an estimate (no finished run of their method and schedule here; "
                    "`bench speed` times a step)")
    missing = _unprepared(specs, opts)
    return text + "\n" + summary + "".join(f"\n{line}" for line in missing)


def _unprepared(specs: Sequence[RunSpec], opts: RunOptions) -> list[str]:
    """One line per dataset of the sweep that is not prepared and cannot be prepared without its raw
    data (an embedded phantom is made on first use): `bench run` would stop there."""
    from sslbench.cache import dataset_folder
    from sslbench.data import DATASETS

    lines = []
    for name in dict.fromkeys(spec.dataset for spec in specs):
        if (dataset_folder(name, opts.cache) / "meta.json").is_file():
            continue
        if name in DATASETS and DATASETS.get(name)().embedded:
            continue
        count = sum(spec.dataset == name for spec in specs)
        lines.append(f"{name}: not prepared in {dataset_folder(name, opts.cache).parent} ({count} run(s) need it); "
                     f"bench run would stop: run bench prepare {name} --raw PATH first")
    return lines
