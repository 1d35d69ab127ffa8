"""``bench report``: a static HTML report of a results folder, self-contained (opens from disk: no
server, no CDN; figures are PNG files beside the pages).

``index.html``: per dataset and schedule (profile key, shown with the values it changed) the
protocol caption, a leaderboard per label ratio (mean ± sd over seeds, a bootstrap 95 % interval of
the mean Dice over evaluated cases x seeds, best in bold, † where the DSC differs from the strongest
other method's, each tag's ``--set`` items, links to each run), under each leaderboard a paired
per-case scatter of every method against UNet-L in the same cell (``compare``: same dataset, schedule,
ratio and evaluation split, points paired by seed and case id, drawn as inline SVG) and the five
worst cases of each method's cell over its seeds with their TP / FP / FN voxels per class, and, for
each of them whose prediction the run saved, a small image of its most wrong slice (``gallery``:
``figures/worst/``; a line saying why where the prepared data is missing or not the run's); per-class
tables, the ratio, per-class and training-curve figures; a cost table.
``runs/<id>.html``: one page per run (``<id>``: a readable slug and a hash of the run's identity, so
two runs never share a page): selection (the selected and last weights, each with its stage,
iteration and global step, and their Dice), per-case metrics with TP / FP / FN per class where
stored (sortable), the five worst cases, voxel counts per class summed over cases, its training
curves against the global step, provenance and its resolved configuration. Each warning (a run
folder skipped) is printed once, however often the records are read. A run page draws its curves as inline SVG from ``run_charts`` (no plotting
library per run). Pages are rendered with jinja2 templates (``templates/``); every value is escaped
by the template engine.

The report is written into a temporary sibling folder and swapped in whole: an earlier report's
pages never linger and a failure leaves the old report as it was. Only a folder that holds a report
(``.sslbench-report`` marker) or nothing is replaced.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sslbench import __version__
from sslbench.base.atomic import make_temp_folder, remove_orphans, write_text
from sslbench.base.errors import BenchError
from sslbench.base.fields import FieldError, integer
from sslbench.base.locks import FolderLock
from sslbench.base.records import MAX_ITERATIONS
from sslbench.base.run_files import RunFiles
from sslbench.report import plots
from sslbench.report.bootstrap import BOOTSTRAP_RESAMPLES, bootstrap_ci, case_dice
from sslbench.report.compare import BASELINE, case_counts, paired_points, scatter, worst_in_cell
from sslbench.report.cost import cost_table
from sslbench.report.frame import protocol_caption, run_frame, variant_name
from sslbench.report.gallery import Gallery
from sslbench.report.run_charts import log_curves, run_charts
from sslbench.report.tables import _significance, build_table, paper_order

MARKER = ".sslbench-report"          # in every report folder: what may be replaced by the next report
WORST_CASES = 5
_HASH_CHARS = 10                      # of a run page's name: 16^10 identities before a likely clash


def _environment() -> Any:
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(loader=PackageLoader("sslbench.report", "templates"), autoescape=select_autoescape(["html"]))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


def _fmt(values: pd.Series, digits: int) -> str:
    vals = values.dropna()
    if vals.empty:
        return "—"
    return f"{vals.mean():.{digits}f}" + (f" ± {vals.std(ddof=1):.{digits}f}" if len(vals) > 1 else "")


def _units(runs: pd.DataFrame) -> str:
    """The distance unit of ``runs`` ("mm" / "voxels"; both named where a group holds both)."""
    return " / ".join(sorted(set(runs.units))) or "?"


def _relative(folder: str, root: Path) -> str:
    try:
        return Path(folder).relative_to(root).as_posix()
    except ValueError:
        return Path(folder).as_posix()


def page_names(df: pd.DataFrame, root: Path) -> dict[str, str]:
    """Run folder -> its page's file name (without ``.html``): a readable slug of dataset, method, tag,
    ratio and seed, plus a hash of the run's identity (dataset, profile key, method, tag, ratio, seed
    and its folder under ``root``). Tags that slug alike (``w=0.3``, ``w-0.3``, ``w+0.3``) differ in
    the hash; a clash (also one of letter case, for a case-insensitive disk) lengthens it, so every
    run gets a page of its own by construction."""
    names: dict[str, str] = {}
    used: set[str] = set()
    for _, rec in df.sort_values("dir").iterrows():
        identity = json.dumps([rec.dataset, rec.profile_key, rec.method, rec.tag, float(rec.ratio), int(rec.seed),
                               _relative(rec.dir, root)])
        digest = hashlib.sha256(identity.encode()).hexdigest()
        readable = _slug(f"{rec.dataset}-{rec.method}-{rec.tag}-r{rec.ratio:g}-s{rec.seed}")[:80]
        n, name = _HASH_CHARS, ""
        while True:
            name = f"{readable}-{digest[:n]}" if n <= len(digest) else f"{readable}-{digest}-{n - len(digest)}"
            if name.lower() not in used:
                break
            n += 2
        used.add(name.lower())
        names[rec.dir] = name
    return names


def _read_metrics(folder: str) -> dict[str, Any]:
    """A run's checked metrics.json; {} (with a warning naming it) when missing or damaged."""
    try:
        return RunFiles(Path(folder)).read_metrics()
    except BenchError as exc:
        logging.getLogger("sslbench").warning(f"{exc}: its report page has no per-case table")
        return {}


def _overrides_text(cell: pd.DataFrame) -> str:
    """A table row's ``--set`` items (what its tag means); runs of one row that differ are all named."""
    texts = [t for t in dict.fromkeys(cell.overrides.fillna("")) if t]
    return " | ".join(texts)


def _boards(df: pd.DataFrame, pages: dict[str, str], metrics: dict[str, dict[str, Any]],
            gallery: Gallery | None = None) -> list[dict[str, Any]]:
    """A leaderboard per label ratio: rows per method and tag, best DSC (and ASD) among the methods
    trained at that ratio in bold, † as ``bench table --table`` marks it, a bootstrap interval of the
    mean Dice over evaluated cases x seeds, and the row's ``--set`` items (its tooltip and a legend)."""
    keys = sorted(dict.fromkeys(zip(df.paper_name, df.tag)), key=lambda k: paper_order(variant_name(*k)))
    ratios = sorted(df.loc[~df.all_labels, "ratio"].unique()) or sorted(df.ratio.unique())
    means: dict[tuple[int, float, str], float] = {}
    for i, (name, tag) in enumerate(keys):
        sub = df[(df.paper_name == name) & (df.tag == tag)]
        for r in ratios:
            cell = sub if sub.all_labels.all() else sub[sub.ratio == r]
            if not cell.empty and not cell.all_labels.all():
                means[(i, r, "dsc")] = float(cell.dsc.mean())
    marks = _significance(keys, ratios, df, means)
    boards = []
    for r in ratios:
        best = max((v for (i, rr, _), v in means.items() if rr == r), default=None)
        rows = []
        for i, (name, tag) in enumerate(keys):
            sub = df[(df.paper_name == name) & (df.tag == tag)]
            cell = sub if sub.all_labels.all() else sub[sub.ratio == r]
            if cell.empty:
                continue
            pooled = [v for d in cell.sort_values("seed").dir for v in case_dice(metrics.get(d, {})).values()]
            ci = bootstrap_ci(pooled)
            rows.append({"name": variant_name(name, tag) + (" (every label)" if cell.all_labels.all() else ""),
                         "overrides": _overrides_text(cell),
                         "dsc": _fmt(cell.dsc, 1), "ci": "—" if ci is None else f"[{ci[0]:.1f}, {ci[1]:.1f}]",
                         "n_cases": len(pooled), "asd": _fmt(cell.asd, 2), "hd95": _fmt(cell.hd95, 2),
                         "seeds": cell.seed.nunique(), "mark": "†" if (i, r) in marks else "",
                         "best": means.get((i, r, "dsc")) == best and best is not None and len(means) > 1,
                         "runs": [{"seed": int(x.seed), "href": f"runs/{pages[x.dir]}.html"}
                                  for _, x in cell.sort_values("seed").iterrows()]})
        boards.append({"ratio": f"{r:g}", "rows": rows, **_comparisons(df, keys, r, metrics, gallery)})
    return boards


def _cells(df: pd.DataFrame, keys: list[tuple[str, str]], r: float) -> Iterator[tuple[str, str, pd.DataFrame]]:
    """(row name, evaluation split, its runs) of each leaderboard row at ratio ``r``, one per split
    (a cell never pools two splits)."""
    for name, tag in keys:
        sub = df[(df.paper_name == name) & (df.tag == tag)]
        cell = sub if sub.all_labels.all() else sub[sub.ratio == r]
        for split, runs in cell.groupby("eval_split", sort=True):
            yield variant_name(name, tag) + (" (every label)" if runs.all_labels.all() else ""), str(split), runs


def _comparisons(df: pd.DataFrame, keys: list[tuple[str, str]], r: float,
                 metrics: dict[str, dict[str, Any]], gallery: Gallery | None = None) -> dict[str, Any]:
    """One leaderboard's paired scatters (each method trained at ratio ``r`` against the baseline's runs
    of the same ratio and evaluation split, points paired by seed and case) and its worst cases per
    method, from the selected weights' metrics, with the gallery's images of those whose prediction
    was saved."""
    base = df[(df.method == BASELINE) & (df.tag == "") & (df.ratio == r) & ~df.all_labels]
    base_name = str(base.paper_name.iloc[0]) if not base.empty else "UNet-L"
    where = f"{df.dataset.iloc[0]}, {df.profile_text.iloc[0]}, {r:g} % labeled"
    pairs, worst, unpaired = [], [], []
    for name, split, runs in _cells(df, keys, r):
        seeds = {int(x.seed): (str(x.dir), metrics.get(x.dir, {})) for _, x in runs.sort_values("seed").iterrows()}
        classes, rows = worst_in_cell(seeds, WORST_CASES)
        images, notes = (gallery.cell(str(df.dataset.iloc[0]), name, rows, {s: d for s, (d, _) in seeds.items()})
                         if gallery is not None else ([], []))
        worst.append({"name": name, "split": split, "classes": classes, "rows": rows,
                      "saved": any(row["saved"] for row in rows), "seeds": ", ".join(map(str, seeds)),
                      "gallery": images, "gallery_notes": notes})
        if runs.all_labels.all() or ((runs.method == BASELINE).all() and (runs.tag == "").all()):
            continue                          # the reference trained on every label, or the baseline itself
        mine = base[base.eval_split == split]
        if mine.empty:
            unpaired.append(f"{name}: no {base_name} run at {r:g} % labels evaluated on the {split} split")
            continue
        a = {int(x.seed): metrics.get(x.dir, {}) for _, x in mine.iterrows()}
        b = {seed: m for seed, (_, m) in seeds.items()}
        points = paired_points(a, b)
        chart = scatter(points, base_name, name)
        if chart is None:
            unpaired.append(f"{name}: no case that it and {base_name} evaluated in a seed both have")
            continue
        used = sorted({p["seed"] for p in points})
        alone = sorted(set(a) ^ set(b))
        better = sum(p["y"] > p["x"] for p in points)
        pairs.append({"name": name, "split": split, "chart": chart, "caption": (
            f"{where}; evaluated on the {split} split; checkpoint: the selected weights (best validation Dice). "
            f"DSC [%] per case (mean over its classes) of {name} (y) against {base_name} (x), one point per case "
            f"and seed, cases matched by case id within a seed: {len(points)} points from seed(s) "
            f"{', '.join(map(str, used))}" + (f"; seed(s) {', '.join(map(str, alone))} without a partner, left out"
                                              if alone else "")
            + f". Dashed: y = x; above it {name} is better ({better} of {len(points)} points).")})
    note = ("No paired plot for " + "; ".join(unpaired) + ".") if unpaired else ""
    return {"baseline": base_name, "pairs": pairs, "pair_note": note, "worst": worst}


def _per_class(df: pd.DataFrame) -> str:
    classes = [c.split(":", 1)[1] for c in df.columns if c.startswith("dsc:") and df[c].notna().any()]
    if not classes:
        return "<p>no per-class values</p>"
    metrics = [(f"dsc:{c}", f"{c} DSC", 1) for c in classes]
    headers, rows, _ = build_table(df, metrics)
    return _html_table(headers, rows)


def _html_table(headers: list[str], rows: list[list[Any]]) -> str:
    from markupsafe import escape

    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _percent(value: object) -> str:
    """A Dice fraction from a record as the page's unit, percent ("—" where there is none)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return f"{100 * float(value):.2f}" if ok else "—"


def _stage_lengths(record: dict[str, Any]) -> dict[str, int]:
    """The record's stages in training order with their lengths ({} where it has none)."""
    out = {}
    for stage, n in (record.get("stage_iterations") or {}).items():
        try:
            out[str(stage)] = integer(n, "stage_iterations", 0, MAX_ITERATIONS)
        except FieldError:
            return {}
    return out


def where_in_training(iteration: object, lengths: dict[str, int]) -> tuple[str, int | None]:
    """An iteration of the last stage (what a record's selection and last weights count) as words that
    name the stage, and its global step (iterations since the run began, stages one after the other),
    the x axis of the run page's charts: "iteration 20 of stage 'train' (global step 40)"."""
    try:
        it = integer(iteration, "iteration", 0, MAX_ITERATIONS)
    except FieldError:
        return "—", None
    if not lengths:
        return f"iteration {it}", None
    stage = list(lengths)[-1]
    step = sum(list(lengths.values())[:-1]) + it
    return f"iteration {it} of stage '{stage}'" + (f" (global step {step})" if len(lengths) > 1 else ""), step


def voxel_counts(metrics: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Per class TP / FP / FN voxels summed over the evaluated cases (``compare.case_counts`` of each);
    None when a case lacks the counts (a record of an earlier version) or they do not fit together."""
    totals: dict[str, list[int]] = {}
    for case in metrics.get("metric_per_case") or []:
        counts = case_counts(case)
        if counts is None:
            return None
        for cls, values in counts.items():
            totals[cls] = [a + b for a, b in zip(totals.get(cls, [0, 0, 0]), values)]
    if not totals:
        return None
    return [{"cls": cls, "tp": tp, "fp": fp, "fn": fn} for cls, (tp, fp, fn) in totals.items()]


def worst_cases(metrics: dict[str, Any], count: int = WORST_CASES) -> tuple[list[str], list[dict[str, Any]]]:
    """The ``count`` cases of lowest Dice (mean over classes), lowest first, with their Dice per class."""
    cases = metrics.get("metric_per_case") or []
    classes = list(cases[0]["metrics"]) if cases else []
    rows = [{"case": str(c["case"]), "mean": 100.0 * float(np.mean([m["dice"] for m in c["metrics"].values()])),
             "per_class": [f"{100 * float(c['metrics'][k]['dice']):.2f}" for k in classes]} for c in cases]
    rows.sort(key=lambda row: (row["mean"], row["case"]))
    return [str(k) for k in classes], [{**row, "mean": f"{row['mean']:.2f}"} for row in rows[:count]]


def _run_page(rec: pd.Series, name: str, out: Path, env: Any, metrics: dict[str, Any]) -> None:
    files = RunFiles(Path(rec.dir))
    record = files.record() or {}
    config = files.read_if_any(RunFiles.CONFIG)
    config = config if isinstance(config, dict) else {}
    units = rec.units
    cases = []
    for c in metrics.get("metric_per_case", []):
        counts = case_counts(c) or {}
        cases += [{"case": c["case"], "cls": cls, "dsc": f"{100 * m['dice']:.2f}", "assd": f"{m['assd']:.3f}",
                   "hd95": f"{m['hd95']:.3f}", "counts": counts.get(str(cls), ("—", "—", "—"))}
                  for cls, m in c["metrics"].items()]
    selection = record.get("selection", {})
    lengths = _stage_lengths(record)
    chosen_text, chosen_step = where_in_training(selection.get("iteration"), lengths)
    last = record.get("last") if isinstance(record.get("last"), dict) else None
    last_text, last_step = where_in_training(last.get("iteration"), lengths) if last else ("not evaluated", None)
    split = rec.eval_split
    marks = [(float(s), label) for s, label in ((chosen_step, "selected"), (last_step, "last")) if s is not None]
    if chosen_step is not None and chosen_step == last_step:
        marks = [(float(chosen_step), "selected = last")]
    charts = run_charts(log_curves(files.read_log(), lengths), stage_lengths=lengths, marks=marks)
    env_info = record.get("env", {})
    classes, worst = worst_cases(metrics)
    label = variant_name(rec.paper_name, rec.tag)
    page = env.get_template("run.html").render(
        title=f"{label} {rec.dataset} {rec.ratio:g}% seed {rec.seed}", root="../",
        run={
            "label": f"{label} — {rec.dataset} ({rec.profile_text}), {rec.ratio:g} % labeled, seed {rec.seed}",
            "caption": protocol_caption(pd.DataFrame([rec])), "profile_key": rec.profile_key,
            "profile_text": rec.profile_text, "overrides": rec.overrides or "none",
            "selection": [("rule", selection.get("rule")), ("selected weights", chosen_text),
                          ("validation Dice [%]", _percent(selection.get("val_dice"))),
                          (f"selected weights' Dice on the {split} split [%]", f"{rec.dsc:.2f}"),
                          ("last weights", last_text),
                          ("last weights' Dice [%]", _percent(last["summary"]["dice"]) if last else "not evaluated"),
                          ("note", selection.get("note", ""))],
            "stages": " then ".join(f"{s} ({n} iterations)" for s, n in lengths.items()),
            "checkpoint_note": "the selected weights", "units": units, "cases": cases, "charts": charts,
            "worst_classes": classes, "worst": worst, "counts": voxel_counts(metrics),
            "provenance": [("sslbench", env_info.get("sslbench")), ("torch", env_info.get("torch")),
                           ("device", env_info.get("device_name") or env_info.get("device")),
                           ("labeled cases", ", ".join(str(c) for c in record.get("labeled_cases", []))),
                           ("config hash", record.get("config_hash")), ("run folder", rec.dir)],
            "config": json.dumps({k: config.get(k) for k in ("train", "data", "method")}, indent=1),
        })
    write_text(out / "runs" / f"{name}.html", page)


def _check_output(out: Path) -> None:
    """Refuse (one line, nothing changed) an output that is not ours to replace: a link, a file, a
    folder with a planted link for ``runs/`` or ``figures/``, or a non-empty folder that is not a
    report (no marker, and not laid out as an earlier version's report)."""
    if not out.name:
        raise BenchError(f"{out}: not a folder name for the report")
    if out.is_symlink():
        raise BenchError(f"{out}: is a symbolic link; give the report a folder of its own")
    if out.exists() and not out.is_dir():
        raise BenchError(f"{out}: exists and is not a folder")
    if not out.is_dir():
        return
    for sub in (out / "figures", out / "runs"):
        if sub.is_symlink() or (sub.exists() and not sub.is_dir()):
            raise BenchError(f"{sub}: is {'a symbolic link' if sub.is_symlink() else 'not a folder'}; remove it")
    marker = out / MARKER
    if not any(out.iterdir()) or (marker.is_file() and not marker.is_symlink()) or _earlier_report(out):
        return
    raise BenchError(f"{out}: holds files that are not a report written by `bench report` (no {MARKER}); "
                     "choose a new or empty folder")


def _earlier_report(out: Path) -> bool:
    """A report an earlier version wrote (before the marker): only ``index.html``, ``runs/`` holding
    ``.html`` pages and ``figures/`` holding PNG and PDF figures."""
    names = {p.name for p in out.iterdir()}
    if "runs" not in names or not names <= {"index.html", "runs", "figures"}:
        return False
    kinds = {"runs": (".html",), "figures": (".png", ".pdf")}
    for folder, suffixes in kinds.items():
        if (out / folder).is_dir() and any(p.suffix not in suffixes or (p.is_dir() and not p.is_symlink())
                                           for p in (out / folder).iterdir()):
            return False
    return True


def _swap_in(new: Path, out: Path) -> None:
    """Put the finished report ``new`` (a sibling of ``out``) in place of ``out``: the old folder is
    renamed aside, the new one renamed in, the old one removed. Renames never follow a link."""
    if not os.path.lexists(out):
        os.rename(new, out)
        return
    old = make_temp_folder(out.parent, f"{out.name}.old")
    os.rename(out, old)                      # onto the empty placeholder
    try:
        os.rename(new, out)
    except OSError:
        os.rename(old, out)                  # put the old report back: nothing half done
        raise
    try:
        shutil.rmtree(old)
    except OSError as exc:
        logging.getLogger("sslbench").warning(f"{old}: the replaced report could not be removed ({exc})")


@contextmanager
def each_warning_once() -> Iterator[None]:
    """A report reads the records more than once (its frame, the cost table, the figures), and each
    read warns of the run folders it skips: while it is built, a warning already given is dropped."""
    seen: set[str] = set()

    def first(record: logging.LogRecord) -> bool:
        text = record.getMessage()
        new = text not in seen
        seen.add(text)
        return new

    log = logging.getLogger("sslbench")
    log.addFilter(first)
    try:
        yield
    finally:
        log.removeFilter(first)


def write_report(root: Path, out: Path, cache: Path | None = None) -> Path:
    """Write the report of the finished runs under ``root`` into the folder ``out`` (replacing the
    report there, whole); returns its index. Each warning is printed once. ``cache``: the prepared-data
    cache the worst-case gallery reads images from (default: ``$SSLBENCH_CACHE``, else the default cache)."""
    with each_warning_once():
        return _write_report(root, out, cache)


def _write_report(root: Path, out: Path, cache: Path | None = None) -> Path:
    if not root.exists():
        raise BenchError(f"{root}: no results folder (run `bench run` first)")
    df = run_frame(root)
    if df.empty:
        raise BenchError(f"{root}: no completed runs (run `bench run` first)")
    shown = out
    out = Path(os.path.abspath(out))         # a name of its own (``-o .`` too), links not resolved
    _check_output(out)
    real_out, real_root = os.path.realpath(out), os.path.realpath(root)
    if os.path.commonpath([real_out, real_root]) == real_out:
        raise BenchError(f"{shown}: holds the results folder {root}; the report replaces its folder whole, "
                         "so write it elsewhere")
    out.parent.mkdir(parents=True, exist_ok=True)
    # one report of a folder at a time; under that lock, what a killed report left beside it (its
    # half-built ``.<name>.new+*`` and a replaced ``.<name>.old+*``) is removed
    with FolderLock(out.parent / f".{out.name}.report-lock"):
        for pattern in (f".{out.name}.new+*", f".{out.name}.old+*"):
            remove_orphans(out.parent, pattern)
        new = make_temp_folder(out.parent, f"{out.name}.new")
        try:
            _build(root, df, new, cache)
            write_text(new / MARKER, f"a report written by sslbench {__version__}; `bench report` replaces this "
                                     "folder whole\n")
            _check_output(out)                   # what changed there while the report was built
            _swap_in(new, out)
        except BaseException:
            shutil.rmtree(new, ignore_errors=True)
            raise
    return shown / "index.html"


def _build(root: Path, df: pd.DataFrame, out: Path, cache: Path | None = None) -> None:
    """Every page and figure of the report, into the fresh folder ``out``."""
    (out / "figures").mkdir()
    (out / "runs").mkdir()
    env = _environment()
    pages = page_names(df, root)
    gallery = Gallery(out, pages, cache)
    metrics = {d: _read_metrics(d) for d in df.dir}
    groups = []
    for (ds, key), sub in df.groupby(["dataset", "profile_key"], sort=True):
        text = str(sub.profile_text.iloc[0])
        base = out / "figures" / _slug(f"{ds}-{key}")
        figures = []
        for kind, fn in (("ratio", plots.plot_ratio), ("classes", plots.plot_classes), ("curves", plots.plot_curves)):
            try:
                paths = fn(root, base.with_name(f"{base.name}-{kind}"), frame=sub)
            except BenchError:
                continue
            figures += [{"src": f"figures/{p.name}", "alt": f"{ds}, {text}: {kind} ({p.stem})"} for p in paths
                        if p.suffix == ".png"]
        groups.append({"dataset": ds, "profile_key": key, "profile_text": text, "anchor": _slug(f"{ds}-{key}"),
                       "units": _units(sub), "caption": protocol_caption(sub),
                       "boards": _boards(sub, pages, metrics, gallery),
                       "per_class": _per_class(sub), "figures": figures})
        for _, rec in sub.iterrows():
            _run_page(rec, pages[rec.dir], out, env, metrics[rec.dir])
    cost = cost_table(root, "markdown")
    index = env.get_template("index.html").render(
        title="sslbench report", root="", groups=groups, runs=len(df), results=str(root), version=__version__,
        when=time.strftime("%Y-%m-%d %H:%M"), cost=_markdown_table_to_html(cost), resamples=BOOTSTRAP_RESAMPLES,
        worst_count=WORST_CASES)
    write_text(out / "index.html", index)


def _markdown_table_to_html(text: str) -> str:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    if len(lines) < 2:
        return ""
    # a name's own "|" is escaped ("\\|") by the markdown table: split on the others only
    cells = [[c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])] for line in lines]
    return _html_table(cells[0], cells[2:])


__all__ = ["bootstrap_ci", "each_warning_once", "page_names", "voxel_counts", "where_in_training", "worst_cases",
           "write_report"]
