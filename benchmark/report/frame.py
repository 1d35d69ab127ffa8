"""The results as data: one frame every table, figure and export is built from.

``run_frame(root)`` has one row per finished run, keyed by ``RUN_KEYS`` (dataset, profile key,
method, tag, ratio, seed). The profile key is the profile's name, plus ``+<hash>`` of the ``train.*``
/ ``data.*`` values a run's ``--set`` changed (``quick+1a2b3c``), so runs trained on other schedules
never share a table or a figure. Views group by these keys and facet (or refuse); they never average
across datasets, profiles, tags or distance units.

``load_results(path)`` is the tidy export: one row per run x evaluated case x class, for the selected
weights and for the last ones (``checkpoint``), with units and protocol in columns:

    import sslbench.report as report
    df = report.load_results("results")
    per_run = df.groupby([*report.CELL_KEYS, "seed"]).dsc.mean()     # each run's case x class mean
    per_run.groupby(level=list(report.CELL_KEYS)).agg(["mean", "std", "count"])   # = bench table's cells
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sslbench.base.errors import BenchError
from sslbench.base.finished_runs import iter_records
from sslbench.base.names import NO_TAG
from sslbench.base.run_files import RunFiles

RUN_KEYS = ("dataset", "profile_key", "method", "tag", "ratio", "seed")
# what one cell of a table pools (its seeds), as the tables group: a recipe on the tidy frame that
# groups by fewer keys mixes tagged variants, schedules, a validation-split run or the two checkpoints
CELL_KEYS = ("dataset", "profile_key", "eval_split", "checkpoint", "method", "tag", "ratio")

CHECKPOINTS = ("best", "last")


def _schedule(rec: dict[str, Any]) -> dict[str, Any]:
    """Image size, batch and selection rule: from the record, else from the run's config.json."""
    if isinstance(rec.get("schedule"), dict):
        return rec["schedule"]
    train = RunFiles(Path(rec["_dir"])).read_if_any(RunFiles.CONFIG)
    train = train.get("train", {}) if isinstance(train, dict) else {}
    return {k: train.get(k) for k in ("image_size", "batch_size", "labeled_bs", "lr_schedule", "select")}


def _row(rec: dict[str, Any], checkpoint: str) -> dict[str, Any]:
    """One run's row: identity, protocol, the chosen checkpoint's metrics, cost."""
    if checkpoint == "last":
        if not isinstance(rec.get("last"), dict):
            raise KeyError("no evaluation of the last weights (a record of an earlier version)")
        summary, per_class = rec["last"]["summary"], rec["last"].get("per_class", {})
        iteration = rec["last"]["iteration"]
    else:
        summary, per_class, iteration = rec["summary"], rec.get("per_class", {}), rec["selection"]["iteration"]
    timing, schedule = rec["timing"], _schedule(rec)
    stages = {str(k): int(v) for k, v in rec.get("stage_iterations", {}).items()}
    ohash = rec.get("overrides_hash", "")
    return {
        "dataset": rec["dataset"], "profile": rec["profile"], "profile_key": rec["profile"] + (f"+{ohash}" if ohash else ""),
        "protocol_overrides": "; ".join(rec.get("protocol_overrides", [])),
        "profile_text": key_text(rec["profile"], rec.get("protocol_overrides", [])),
        "overrides": "; ".join(rec.get("overrides", [])), "method": rec["method"],
        "paper_name": rec.get("paper_name") or rec["method"], "tag": rec.get("variant", "") or "",
        "ratio": float(rec["ratio"]), "seed": int(rec["seed"]), "all_labels": float(rec["ratio"]) >= 100.0,
        "checkpoint": checkpoint, "evaluated_iteration": iteration, "selection_rule": rec["selection"]["rule"],
        "best_iteration": rec["selection"]["iteration"], "eval_split": rec.get("eval_split", "test"),
        "n_eval_volumes": rec.get("n_eval_volumes"), "iterations": sum(stages.values()),
        "stage_iterations": " + ".join(str(v) for v in stages.values()) or "?",
        "image_size": schedule.get("image_size"), "batch_size": schedule.get("batch_size"),
        "labeled_bs": schedule.get("labeled_bs"),
        "dsc": 100.0 * summary["dice"], "asd": summary["assd"], "hd95": summary["hd95"],
        "asd_legacy": summary.get("asd_legacy", np.nan), "hd95_legacy": summary.get("hd95_legacy", np.nan),
        "units": "voxels" if rec.get("metric_policy", {}).get("spacing") == "voxels" else "mm",
        "wall_s": timing["wall_s"], "train_s": timing.get("train_s", np.nan),
        "iters_per_s": float(np.mean(list(timing.get("iters_per_s", {}).values()) or [np.nan])),
        "iters_per_s_by_stage": {str(k): float(v) for k, v in timing.get("iters_per_s", {}).items()},
        "peak_mem_mb": timing.get("peak_mem_mb", np.nan), "device": rec.get("env", {}).get("device", "?"),
        "precision": rec.get("precision", "?"), "params": rec.get("params", {}).get("trained", np.nan),
        "config_hash": rec.get("config_hash", ""), "dir": rec["_dir"],
        "code_method": (rec.get("code") or {}).get("method") or "", "code_core": (rec.get("code") or {}).get("core") or "",
        **{f"dsc:{cls}": 100.0 * m["dice"] for cls, m in per_class.items()},
        **{f"asd:{cls}": m["assd"] for cls, m in per_class.items()},
    }


def run_frame(root: Path, checkpoint: str = "best") -> pd.DataFrame:
    """One row per finished run under ``root`` (an unreadable or incomplete record is skipped with a
    warning naming it); ``checkpoint``: the selected weights' metrics ("best") or the last ones'."""
    if checkpoint not in CHECKPOINTS:
        raise BenchError(f"--checkpoint {checkpoint!r}: one of {', '.join(CHECKPOINTS)}")
    rows = []
    for rec in iter_records(root):
        try:
            rows.append(_row(rec, checkpoint))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            logging.getLogger("sslbench").warning(f"skipping {rec['_dir']}/run.json: incomplete record ({exc!r})")
    df = pd.DataFrame(rows)
    if not df.empty:
        df["paper_name"] = distinct_row_names(df.method, df.paper_name)
        current = current_method_codes(df.method.unique())
        df["stale"] = [bool(c) and current.get(m) not in (None, c) for m, c in zip(df.method, df.code_method)]
    return df


def distinct_row_names(methods: pd.Series, names: pd.Series) -> list[str]:
    """Row names keyed by method: a built-in keeps its row name (``paper_name``; built-ins share one on
    purpose, e.g. SimCLR pre-trained only and fine-tuned, told apart by their variant). Any other
    method whose row name is a built-in's, or another plugin's with runs here, is shown as
    "MT [my-mt]", so a plugin named like a built-in never merges into its row or is compared with its
    published numbers."""
    from sslbench.method import METHODS

    builtin: set[str] = set()
    builtin_names: set[str] = set()
    for name in METHODS.names():
        cls = METHODS.get(name)
        if cls.__module__.startswith("sslbench.methods"):
            builtin.add(name)
            builtin_names.add(cls.paper_name)
    users: dict[str, set[str]] = {}
    for method, name in zip(methods, names):
        if method not in builtin:
            users.setdefault(name, set()).add(method)
    out, renamed = [], {}
    for method, name in zip(methods, names):
        clash = method not in builtin and (name in builtin_names or method != min(users[name]))
        out.append(f"{name} [{method}]" if clash else name)
        if clash:
            renamed[method] = name
    for method, name in renamed.items():
        logging.getLogger("sslbench").warning(f"method '{method}' records the row name '{name}' of another "
                                              f"method: shown as '{name} [{method}]'")
    return out


def current_method_codes(methods: Any) -> dict[str, str | None]:
    """Today's code hash of each registered method named (None for one not registered here: a plugin
    module not given with --plugin)."""
    from sslbench.base.code_identity import method_code
    from sslbench.method import METHODS

    return {m: method_code(METHODS.get(m)) if m in METHODS else None for m in methods}


def code_note(runs: pd.DataFrame) -> str:
    """What a view must say of the code behind ``runs``: runs of several core code versions, or of one
    that is not today's, and stale runs (their method's code changed since); "" when all is current."""
    from sslbench.base.code_identity import core_code

    notes = []
    versions = runs.code_core.replace("", "unrecorded").value_counts()
    now = core_code()
    if len(versions) > 1:
        listed = ", ".join(f"{v}{' (current)' if v == now else ''}: {n} run(s)" for v, n in versions.items())
        notes.append(f"runs from {len(versions)} code versions ({listed})")
    elif versions.index[0] not in (now, "unrecorded"):
        notes.append(f"runs from code version {versions.index[0]}, not the current {now}")
    if "stale" in runs and runs.stale.any():
        names = ", ".join(dict.fromkeys(runs.method[runs.stale]))
        notes.append(f"{int(runs.stale.sum())} run(s) stale: the code of {names} changed since they ran "
                     "(bench run --rerun-stale retrains them)")
    unchecked = [m for m, known in current_method_codes(runs.method[runs.code_method != ""].unique()).items()
                 if known is None]
    if unchecked:
        notes.append(f"the code of {', '.join(unchecked)} not checked for changes (load its plugin with --plugin)")
    return "; ".join(notes)


def seeds_text(runs: pd.DataFrame, limit: int = 8) -> str:
    """Which seeds each cell (method, tag, ratio) pools, by id: "2 seed(s) per cell (0, 1)" when every
    cell has the same ones, else each cell's own ("seeds per cell differ: MT 5 %: 2; UNet-L 5 %: 0"),
    so a cell of seed 2 beside one of seed 0 is never called "1 seed per cell"."""
    cells = runs.groupby(["method", "paper_name", "tag", "ratio"]).seed.apply(lambda s: tuple(sorted(set(s))))
    distinct = set(cells)
    if len(distinct) == 1:
        ids = distinct.pop()
        return f"{len(ids)} seed(s) per cell ({', '.join(map(str, ids))})"
    listed = [f"{variant_name(n, t)} {r:g} %: {', '.join(map(str, ids))}" for (_, n, t, r), ids in cells.items()]
    more = f"; ... ({len(listed) - limit} more)" if len(listed) > limit else ""
    return f"seeds per cell differ ({'; '.join(listed[:limit])}{more})"


def key_text(profile: str, protocol_overrides: Any) -> str:
    """A profile key as a person reads it: the profile and the schedule values its runs changed
    ("quick (train.iterations=40)"), never the bare hash."""
    items = [str(o) for o in protocol_overrides or []]
    return f"{profile} ({'; '.join(items)})" if items else str(profile)


def variant_name(paper_name: str, tag: str) -> str:
    """A table row's or a legend entry's name: the method, and its tag when it has one."""
    return f"{paper_name} ({tag})" if tag else paper_name


def load_results(path: str | Path) -> pd.DataFrame:
    """The tidy frame: one row per run x evaluated case x class, for the selected and the last weights.

    Columns: dataset, profile, profile_key, config_hash, method, paper_name, tag (``NO_TAG`` for an
    untagged run), ratio, seed,
    checkpoint ("selected" / "last"), evaluated_iteration, case, class, dsc [%], assd, asd, hd95,
    distance_unit ("mm" / "voxels"), iterations, eval_split, selected_on_eval_split, best_iteration,
    wall_s, code_method and code_core (the hashes of the code that made the run, "" where a record
    predates them)."""
    root = Path(path)
    if not root.exists():
        raise BenchError(f"{root}: no results folder")
    rows = []
    for rec in iter_records(root):
        files = RunFiles(Path(rec["_dir"]))
        try:
            base = _row(rec, "best")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            logging.getLogger("sslbench").warning(f"skipping {rec['_dir']}/run.json: incomplete record ({exc!r})")
            continue
        ident = {k: base[k] for k in ("dataset", "profile", "profile_key", "config_hash", "method", "paper_name",
                                      "tag", "ratio", "seed", "iterations", "eval_split", "best_iteration", "wall_s",
                                      "code_method", "code_core")}
        ident["selected_on_eval_split"] = base["eval_split"] == "val"
        ident["tag"] = ident["tag"] or NO_TAG
        for checkpoint, name, iteration in (("selected", RunFiles.METRICS, base["evaluated_iteration"]),
                                            ("last", RunFiles.METRICS_LAST, (rec.get("last") or {}).get("iteration"))):
            try:
                metrics = files.read_metrics(name)
            except BenchError as exc:
                if files.has(name):
                    logging.getLogger("sslbench").warning(f"skipping {exc}")
                continue
            for case in metrics.get("metric_per_case", []):
                for cls, m in case.get("metrics", {}).items():
                    rows.append({**ident, "checkpoint": checkpoint, "evaluated_iteration": iteration,
                                 "case": case["case"], "class": cls, "dsc": 100.0 * m["dice"], "assd": m["assd"],
                                 "asd": m.get("asd"), "hd95": m.get("hd95"), "distance_unit": base["units"]})
    return pd.DataFrame(rows)


def protocol_caption(runs: pd.DataFrame) -> str:
    """What the numbers of ``runs`` (one dataset and profile key) come from, read from their records:
    evaluation split and whether it also selected the model, iterations trained, image size and
    batch, profile and overrides, checkpoint, seeds per row, distance units."""
    def one(column: str) -> str:
        values = [str(v) for v in dict.fromkeys(runs[column].dropna())]
        return " / ".join(values) if values else "?"

    split = one("eval_split")
    n_vol = one("n_eval_volumes")
    selected = ("the best validation Dice, on the same volumes it is scored on" if split == "val"
                else "the best Dice on the validation split")
    checkpoint = runs.checkpoint.iloc[0]
    weights = (f"weights selected by {selected}" if checkpoint == "best" and (runs.selection_rule == "best").all()
               else "the last weights")
    seed_text = seeds_text(runs)
    overrides = one("protocol_overrides")
    profile = one("profile") + (f" with {overrides}" if overrides not in ("", "?") else "")
    units = one("units")
    code = code_note(runs) if "code_core" in runs else ""
    tags = tag_note(runs)
    return (f"{one('dataset')}, profile {profile}: evaluated on the {split} split ({n_vol} volumes), {weights}; "
            f"{one('stage_iterations')} iterations at {one('image_size')} px, batch {one('batch_size')} "
            f"({one('labeled_bs')} labeled); {seed_text}, mean ± sd over seeds; DSC [%], ASD = ASSD in {units}"
            + (f"; {tags}" if tags else "") + (f"; {code}" if code else ""))


def tag_note(runs: pd.DataFrame) -> str:
    """What each tagged row means: its --set items ("tags: MT (w=0.3) = method.consistency=0.3")."""
    if "overrides" not in runs:
        return ""
    tagged = runs[runs.tag != ""].drop_duplicates(["paper_name", "tag", "overrides"])
    items = [f"{variant_name(n, t)} = {o or 'no --set'}" for n, t, o in zip(tagged.paper_name, tagged.tag, tagged.overrides)]
    return ("tags: " + "; ".join(items)) if items else ""
