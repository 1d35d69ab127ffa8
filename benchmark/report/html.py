"""``bench report``: a static HTML report of a results folder, self-contained (opens from disk: no
server, no CDN; figures are PNG files beside the pages).

``index.html``: per dataset and schedule (profile key) the protocol caption, a leaderboard per label
ratio (mean ± sd over seeds, best in bold, † where the DSC differs from the strongest other method's,
links to each run), per-class tables, the ratio, per-class and training-curve figures; a cost table.
``runs/<id>.html``: one page per run: selection, per-case metrics (sortable), its training curves,
provenance (commit, versions, labeled cases) and its resolved configuration. A run page draws its
curves as inline SVG from ``run_charts`` (no plotting library per run). Pages are rendered with
jinja2 templates (``templates/``); every value is escaped by the template engine.
"""
from __future__ import annotations

import json
import logging
import math
import re
import time
from pathlib import Path
from typing import Any

import pandas as pd

from sslbench import __version__
from sslbench.base.atomic import write_text
from sslbench.base.errors import BenchError
from sslbench.base.run_files import RunFiles
from sslbench.report import plots
from sslbench.report.frame import protocol_caption, run_frame, variant_name
from sslbench.report.run_charts import run_charts
from sslbench.report.cost import cost_table
from sslbench.report.tables import _significance, build_table, paper_order


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


def _run_id(rec: pd.Series) -> str:
    return _slug(f"{rec.dataset}-{rec.profile_key}-{rec.method}-{rec.tag}-r{rec.ratio:g}-s{rec.seed}")


def _boards(df: pd.DataFrame) -> list[dict[str, Any]]:
    """A leaderboard per label ratio: rows per method and tag, best DSC (and ASD) among the methods
    trained at that ratio in bold, † as ``bench table --table`` marks it."""
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
            rows.append({"name": variant_name(name, tag) + (" (every label)" if cell.all_labels.all() else ""),
                         "dsc": _fmt(cell.dsc, 1), "asd": _fmt(cell.asd, 2), "hd95": _fmt(cell.hd95, 2),
                         "seeds": cell.seed.nunique(), "mark": "†" if (i, r) in marks else "",
                         "best": means.get((i, r, "dsc")) == best and best is not None and len(means) > 1,
                         "runs": [{"seed": int(x.seed), "href": f"runs/{_run_id(x)}.html"} for _, x in cell.iterrows()]})
        boards.append({"ratio": f"{r:g}", "rows": rows})
    return boards


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


def _run_page(rec: pd.Series, out: Path, env: Any) -> None:
    files = RunFiles(Path(rec.dir))
    record = files.read(RunFiles.RECORD)
    try:
        metrics = files.read_metrics()
    except BenchError as exc:  # the page still shows the record; the per-case table says why it is empty
        logging.getLogger("sslbench").warning(f"{exc}: its report page has no per-case table")
        metrics = {}
    config = files.read_if_any(RunFiles.CONFIG)
    config = config if isinstance(config, dict) else {}
    cases = [{"case": c["case"], "cls": cls, "dsc": f"{100 * m['dice']:.2f}", "assd": f"{m['assd']:.3f}",
              "hd95": f"{m['hd95']:.3f}"} for c in metrics.get("metric_per_case", []) for cls, m in c["metrics"].items()]
    selection = record.get("selection", {})
    env_info = record.get("env", {})
    charts = run_charts(plots.curve_frame(pd.DataFrame([rec]).assign(name=rec.method)))
    page = env.get_template("run.html").render(
        title=f"{variant_name(rec.paper_name, rec.tag)} {rec.dataset} {rec.ratio:g}% seed {rec.seed}", root="../",
        run={
            "label": f"{variant_name(rec.paper_name, rec.tag)} — {rec.dataset} ({rec.profile_key}), {rec.ratio:g} % "
                     f"labeled, seed {rec.seed}",
            "caption": protocol_caption(pd.DataFrame([rec])),
            "selection": [("rule", selection.get("rule")), ("evaluated iteration", selection.get("iteration")),
                          ("validation Dice [%]", _percent(selection.get("val_dice"))), ("note", selection.get("note", "")),
                          ("last weights' Dice [%]", _percent(record["last"]["summary"]["dice"])
                           if isinstance(record.get("last"), dict) else "not evaluated")],
            "checkpoint_note": "the selected weights", "units": rec.units, "cases": cases, "charts": charts,
            "provenance": [("sslbench", env_info.get("sslbench")), ("torch", env_info.get("torch")),
                           ("device", env_info.get("device_name") or env_info.get("device")),
                           ("labeled cases", ", ".join(record.get("labeled_cases", []))),
                           ("config hash", record.get("config_hash")), ("run folder", rec.dir)],
            "config": json.dumps({k: config.get(k) for k in ("train", "data", "method")}, indent=1),
        })
    write_text(out / "runs" / f"{_run_id(rec)}.html", page)  # a planted link is replaced, never followed


def write_report(root: Path, out: Path) -> Path:
    """Write the report of the finished runs under ``root`` into the folder ``out``; returns its index."""
    if not root.exists():
        raise BenchError(f"{root}: no results folder (run `bench run` first)")
    df = run_frame(root)
    if df.empty:
        raise BenchError(f"{root}: no completed runs (run `bench run` first)")
    if out.exists() and not out.is_dir():
        raise BenchError(f"{out}: exists and is not a folder")
    for sub in (out / "figures", out / "runs"):  # pages are replaced atomically; their folders must be real
        if sub.is_symlink() or (sub.exists() and not sub.is_dir()):
            raise BenchError(f"{sub}: is {'a symbolic link' if sub.is_symlink() else 'not a folder'}; remove it")
    (out / "figures").mkdir(parents=True, exist_ok=True)
    (out / "runs").mkdir(exist_ok=True)
    env = _environment()
    groups = []
    for (ds, key), sub in df.groupby(["dataset", "profile_key"], sort=True):
        base = out / "figures" / _slug(f"{ds}-{key}")
        figures = []
        for kind, fn in (("ratio", plots.plot_ratio), ("classes", plots.plot_classes), ("curves", plots.plot_curves)):
            try:
                paths = fn(root, base.with_name(f"{base.name}-{kind}"), frame=sub)
            except BenchError:
                continue
            figures += [{"src": f"figures/{p.name}", "alt": f"{ds}, {key}: {kind} ({p.stem})"} for p in paths
                        if p.suffix == ".png"]
        groups.append({"dataset": ds, "profile_key": key, "anchor": _slug(f"{ds}-{key}"), "units": sub.units.iloc[0],
                       "caption": protocol_caption(sub), "boards": _boards(sub), "per_class": _per_class(sub),
                       "figures": figures})
        for _, rec in sub.iterrows():
            _run_page(rec, out, env)
    cost = cost_table(root, "markdown")
    index = env.get_template("index.html").render(
        title="sslbench report", root="", groups=groups, runs=len(df), results=str(root), version=__version__,
        when=time.strftime("%Y-%m-%d %H:%M"), cost=_markdown_table_to_html(cost))
    path = out / "index.html"
    write_text(path, index)
    return path


def _markdown_table_to_html(text: str) -> str:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    if len(lines) < 2:
        return ""
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return _html_table(cells[0], cells[2:])


__all__ = ["write_report"]
