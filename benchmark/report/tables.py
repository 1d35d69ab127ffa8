"""`bench table`: run records -> the paper's layout (one row per method in the paper's order, columns
ratio x (DSC, ASD), mean ± std over seeds) as markdown, LaTeX or CSV."""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from sslbench.base.errors import BenchError
from sslbench.base.run_files import iter_records

PAPER_ORDER = ("UNet-F", "UNet-L", "EM", "CCT", "DAN", "URPC", "DCT", "ICT", "MT", "UAMT", "CPS", "GCL",
               "SCS", "PLC", "MoCov2", "kNN-MoCo", "SimCLR", "BYOL", "ISD", "GLCon", "MONA")
FORMATS = ("markdown", "latex", "csv")


def load_records(root: Path) -> pd.DataFrame:
    """One row per completed run: identity, summary metrics, timing."""
    rows = []
    for rec in iter_records(root):
        try:
            rows.append(_record_row(rec))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            logging.getLogger("sslbench").warning(f"skipping {rec['_dir']}/run.json: incomplete record ({exc!r})")
    return pd.DataFrame(rows)


def _record_row(rec: dict[str, Any]) -> dict[str, Any]:
    s = rec["summary"]
    timing = rec["timing"]
    return {
        "dataset": rec["dataset"], "profile": rec["profile"], "method": rec["method"],
        "paper_name": rec.get("paper_name", rec["method"]), "variant": rec.get("variant", ""),
        "ratio": float(rec["ratio"]), "seed": rec["seed"], "dsc": 100.0 * s["dice"], "asd": s["assd"],
        "hd95": s["hd95"], "asd_legacy": s["asd_legacy"],
        "hd95_legacy": s.get("hd95_legacy", float("nan")), "all_labels": float(rec["ratio"]) >= 100.0,
        "wall_s": timing["wall_s"], "train_s": timing.get("train_s", float("nan")),
        "iters_per_s": float(np.mean(list(timing.get("iters_per_s", {}).values()) or [np.nan])),
        "peak_mem_mb": timing.get("peak_mem_mb", float("nan")),
        "device": rec.get("env", {}).get("device", "?"), "precision": rec.get("precision", "?"),
        "iterations": " + ".join(str(n) for n in rec.get("stage_iterations", {}).values()) or "?",
        "params": rec.get("params", {}).get("trained", np.nan),
        "dir": rec["_dir"],
        **{f"dsc:{cls}": 100.0 * m["dice"] for cls, m in rec.get("per_class", {}).items()},
        **{f"asd:{cls}": m["assd"] for cls, m in rec.get("per_class", {}).items()},
        "units": "voxels" if rec.get("metric_policy", {}).get("spacing") == "voxels" else "mm",
    }


def paper_order(name: str) -> tuple[int, str]:
    """Sort key: the paper's row order (variants "MT (tag)" beside their method), then unknown
    (plugin) methods alphabetically."""
    base = name.split(" (", 1)[0]
    return (PAPER_ORDER.index(base), name) if base in PAPER_ORDER else (len(PAPER_ORDER), name)


def _cell(values: pd.Series, digits: int) -> str:
    vals = values.dropna().to_numpy()
    if len(vals) == 0:
        return "—"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{vals.mean():.{digits}f} ± {vals.std(ddof=1):.{digits}f}"


def build_table(df: pd.DataFrame, metrics: Sequence[tuple[str, str, int]] = (("dsc", "DSC", 1), ("asd", "ASD", 2)),
                ) -> tuple[list[str], list[list[str]], list[float]]:
    df = df.assign(paper_name=[f"{n} ({v})" if v else n for n, v in zip(df.paper_name, df.variant)])
    """Headers and rows for one (dataset, profile) frame. Runs that used every label (UNet-F) fill
    every ratio column."""
    ratios = sorted(df.loc[~df.all_labels, "ratio"].unique()) or sorted(df.ratio.unique())
    headers = ["Method"] + [f"{r:g}% {label}" for r in ratios for _, label, _ in metrics]
    rows = []
    for name in sorted(df.paper_name.unique(), key=paper_order):
        sub = df[df.paper_name == name]
        row = [name]
        for r in ratios:
            cell_df = sub if sub.all_labels.all() else sub[sub.ratio == r]
            for key, _, digits in metrics:
                row.append(_cell(cell_df[key], digits))
        rows.append(row)
    return headers, rows, ratios


def render(headers: list[str], rows: list[list[str]], fmt: str, caption: str = "") -> str:
    if fmt == "markdown":
        return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    if fmt == "latex":
        body = tabulate(rows, headers=headers, tablefmt="latex_booktabs", disable_numparse=True)
        body = body.replace("±", r"$\pm$")
        if caption:
            body = f"% {caption}\n" + body
        return body
    if fmt == "csv":
        return pd.DataFrame(rows, columns=headers).to_csv(index=False).rstrip("\n")
    raise BenchError(f"unknown table format '{fmt}' (known: {', '.join(FORMATS)})")


def select_records(root: Path, dataset: str | None = None, profile: str | None = None,
                   methods: Sequence[str] | None = None) -> pd.DataFrame:
    """Completed runs under ``root`` matching the filters; a clear error when there are none."""
    if not root.exists():
        raise BenchError(f"{root}: no results folder (run `bench run` first)")
    df = load_records(root)
    if df.empty:
        raise BenchError(f"{root}: no completed runs (run `bench run` first)")
    if dataset:
        df = df[df.dataset == dataset]
    if profile:
        df = df[df.profile == profile]
    if methods:
        df = df[df.method.isin(methods)]
    if df.empty:
        raise BenchError(f"{root}: no completed runs match the filters")
    return df


def tables(root: Path, fmt: str = "markdown", dataset: str | None = None, profile: str | None = None,
           methods: Sequence[str] | None = None, per_class: bool = False) -> str:
    """Every (dataset, profile) table under ``root`` that matches the filters."""
    if fmt not in FORMATS:
        raise BenchError(f"unknown table format '{fmt}' (known: {', '.join(FORMATS)})")
    df = select_records(root, dataset, profile, methods)
    out, frames = [], []
    for (ds, prof), sub in df.groupby(["dataset", "profile"], sort=True):
        n_seeds = sub.groupby("paper_name").seed.nunique()
        seeds = f"{n_seeds.max()}" if n_seeds.min() == n_seeds.max() else f"{n_seeds.min()}-{n_seeds.max()}"
        units = "voxels, the source files carry no spacing" if (sub.units == "voxels").any() else "mm"
        averaged = "case-averaged per class" if per_class else "case-averaged then class-averaged"
        caption = (f"{ds} (profile {prof}): DSC [%] and ASD (ASSD as medpy 0.5.2 defines it; {units}), "
                   f"{averaged}; mean ± std over {seeds} seed(s)")
        if per_class:
            classes = [c.split(":", 1)[1] for c in sub.columns if c.startswith("dsc:") and sub[c].notna().any()]
            metrics = [(f"{m}:{c}", f"{c} {m.upper()}", 1 if m == "dsc" else 2) for c in classes for m in ("dsc", "asd")]
            headers, rows, _ = build_table(sub, metrics)
        else:
            headers, rows, _ = build_table(sub)
        if fmt == "csv":
            frame = pd.DataFrame(rows, columns=headers)
            frame.insert(0, "profile", prof)
            frame.insert(0, "dataset", ds)
            frames.append(frame)
        elif fmt == "markdown":
            out.append(f"**{caption}**\n\n{render(headers, rows, fmt)}")
        else:
            out.append(render(headers, rows, fmt, caption))
    if fmt == "csv":
        return pd.concat(frames, ignore_index=True).fillna("").to_csv(index=False).rstrip("\n")
    return "\n\n".join(out)



# ---------------------------------------------------------------------------------------- paper tables
ALPHA = 0.05
SIG_MARK = "†"


def _bold(text: str, fmt: str) -> str:
    if text == "—" or fmt == "csv":
        return text
    return f"**{text}**" if fmt == "markdown" else f"\\textbf{{{text}}}"


def _cell_runs(recs: pd.DataFrame, method: str, variant: str, ratio: float) -> pd.DataFrame:
    sub = recs[(recs.paper_name == method) & (recs.variant == variant)]
    return sub if sub.all_labels.all() else sub[sub.ratio == ratio]


def paper_table(root: Path, table: int | str, fmt: str = "markdown", dataset: str | None = None,
                profile: str | None = None, vs_paper: bool = False, paper_dataset: str | None = None,
                warn: Callable[[str], None] | None = None) -> str:
    """One of the paper's tables from the records: its rows in its order, mean ± std over seeds,
    best per column in bold, a significance mark, missing runs as "—" (with a warning), and with
    ``vs_paper`` the published value and the difference beside each DSC and ASD."""
    from sslbench.report.paper import layout, sources, table_number

    table = table_number(table)
    if fmt not in FORMATS:
        raise BenchError(f"unknown table format '{fmt}' (known: {', '.join(FORMATS)})")
    lay = layout(table)
    df = load_records(root) if root.exists() else pd.DataFrame()
    if profile and not df.empty:
        df = df[df.profile == profile]
    # the table's own datasets when there are records for them, else the datasets that were run
    # (an ablation sweep on synthetic data or a user's dataset), else the empty layout
    paper_ds = list(dict.fromkeys(lay.dataset))
    have = set(df.dataset) if not df.empty else set()
    datasets = [dataset] if dataset else ([d for d in paper_ds if d in have] or sorted(have) or paper_ds)
    out = []
    for ds in datasets:
        ref_ds = paper_dataset or (ds if ds in set(lay.dataset) else lay.dataset.iloc[0])
        recs = df[df.dataset == ds] if not df.empty else df
        headers, body, units = _paper_rows(table, lay[lay.dataset == ref_ds], recs, ref_ds, fmt, vs_paper,
                                           lambda m, ds=ds: warn(f"table {table}, {ds}: {m}") if warn else None)
        caption = _paper_caption(table, ds, ref_ds, units, vs_paper)
        notes = ["published: " + src for _, src in sources(table)] if vs_paper else []
        if fmt == "csv":
            frame = pd.DataFrame(body, columns=headers)
            frame.insert(0, "dataset", ds)
            out.append(frame.to_csv(index=False, header=not out).rstrip("\n"))
        elif fmt == "markdown":
            text = f"**{caption}**\n\n{render(headers, body, fmt)}"
            out.append(text + "".join(f"\n\n* {n}" if i == 0 else f"\n* {n}" for i, n in enumerate(notes)))
        else:
            out.append(_latex(headers, body, caption) + "".join(f"\n% {n}" for n in notes))
    return ("\n" if fmt == "csv" else "\n\n").join(out)


def _paper_rows(table: int, rows_lay: pd.DataFrame, recs: pd.DataFrame, ref_ds: str, fmt: str, vs_paper: bool,
                warn: Callable[[str], None]) -> tuple[list[str], list[list[str]], str]:
    """Headers, rows and distance units of one dataset's table: the layout's rows (then plugin and
    variant rows), a cell per ratio and metric, bold best, significance marks, published values."""
    from sslbench.report.paper import paper_cells, published_variant

    keys = list(dict.fromkeys(zip(rows_lay.method, rows_lay.variant)))
    if not recs.empty:
        extra = [k for k in dict.fromkeys(zip(recs.paper_name, recs.variant)) if k not in keys]
        keys += sorted(extra, key=lambda k: paper_order(k[0]))   # plugins: rows appear automatically
    ratios = sorted(recs[~recs.all_labels].ratio.unique()) if not recs.empty else []
    ratios = ratios or sorted(rows_lay.ratio.unique())
    published = paper_cells()
    published = published[(published.table == table) & (published.dataset == ref_ds)]
    with_variant = any(v for _, v in keys)
    headers = ["Method"] + (["Variant"] if with_variant else [])
    for r in ratios:
        for metric in ("DSC", "ASD"):
            headers.append(f"{r:g}% {metric}")
            if vs_paper:
                headers += [f"{r:g}% {metric} paper", f"{r:g}% {metric} Δ"]
    cells, means, references, missing = _paper_cells(keys, ratios, recs)
    competing = {k: v for k, v in means.items() if k[0] not in references}
    marks = _significance(keys, ratios, recs, competing) if not recs.empty else set()
    body = []
    for i, (method, variant) in enumerate(keys):
        row = [method] + ([variant] if with_variant else [])
        for r in ratios:
            for key in ("dsc", "asd"):
                text = cells[(i, r, key)]
                col = [competing[(j, r, key)] for j in range(len(keys)) if (j, r, key) in competing]
                if (i, r, key) in competing and col:
                    best = max(col) if key == "dsc" else min(col)
                    if means[(i, r, key)] == best and len(col) > 1:
                        text = _bold(text, fmt)
                    if key == "dsc" and (i, r) in marks and fmt != "csv":
                        text += SIG_MARK
                row.append(text)
                if vs_paper:
                    pub = published[(published.method == method) & (published.ratio == r)
                                    & (published.variant == published_variant(table, variant))]
                    value = float(pub[key].iloc[0]) if len(pub) and pub[key].notna().iloc[0] else None
                    row.append("—" if value is None else f"{value:.1f}" if key == "dsc" else f"{value:g}")
                    mine = means.get((i, r, key))
                    row.append("—" if value is None or mine is None else f"{mine - value:+.{1 if key == 'dsc' else 2}f}")
        body.append(row)
    if missing:
        warn(f"{len(missing)} cell(s) without runs: {', '.join(missing[:6])}" + (" ..." if len(missing) > 6 else ""))
    units = "voxels" if not recs.empty and (recs.units == "voxels").any() else "mm"
    return headers, body, units


def _paper_cells(keys: list[tuple[str, str]], ratios: list[float], recs: pd.DataFrame,
                 ) -> tuple[dict[tuple[int, float, str], str], dict[tuple[int, float, str], float], set[int], list[str]]:
    """Cell texts and means per (row, ratio, metric), the rows trained on every label (UNet-F: bounds,
    not competitors) and the cells without runs."""
    means: dict[tuple[int, float, str], float] = {}
    references: set[int] = set()
    cells: dict[tuple[int, float, str], str] = {}
    missing = []
    for i, (method, variant) in enumerate(keys):
        for r in ratios:
            runs = _cell_runs(recs, method, variant, r) if not recs.empty else recs
            if runs.empty:
                missing.append(f"{method}{f' ({variant})' if variant else ''} {r:g}%")
            for key, digits in (("dsc", 1), ("asd", 2)):
                cells[(i, r, key)] = _cell(runs[key], digits) if not runs.empty else "—"
                if not runs.empty:
                    means[(i, r, key)] = float(runs[key].mean())
                    if runs.all_labels.all():
                        references.add(i)
    return cells, means, references, missing


def _paper_caption(table: int, ds: str, ref_ds: str, units: str, vs_paper: bool) -> str:
    from sslbench.report.paper import TABLE3_NOTE, TABLES

    return (f"{TABLES[table]} — {ds}" + (f" (published: {ref_ds})" if vs_paper and ref_ds != ds else "")
            + f". DSC [%], ASD = ASSD ({units}); mean ± std over seeds; best per column in bold and "
            f"{SIG_MARK}: the DSC differs from the strongest other method of its column (paired "
            f"Wilcoxon signed-rank test over test volumes × seeds, p < {ALPHA}), both among the methods "
            f"at that label ratio (UNet-F, trained on every label, is the reference); — : no run."
            + (f" {TABLE3_NOTE}" if vs_paper and table == 3 else ""))


def _latex(headers: list[str], body: list[list[str]], caption: str) -> str:
    """LaTeX with bold kept (tabulate's latex_raw does not escape our \\textbf)."""
    text = tabulate(body, headers=headers, tablefmt="latex_raw", disable_numparse=True)
    return f"% {caption}\n" + text.replace("±", r"$\pm$").replace("%", r"\%").replace("†", r"$^\dagger$") \
        .replace("Δ", r"$\Delta$")


def _significance(keys: list[tuple[str, str]], ratios: list[float], recs: pd.DataFrame,
                  means: dict[tuple[int, float, str], float]) -> set[tuple[int, float]]:
    """(row, ratio) cells whose per-volume Dice differs from the strongest other row's (p < ALPHA)."""
    from sslbench.report.significance import paired_values, wilcoxon_p

    marks = set()
    for r in ratios:
        col = {i: means[(i, r, "dsc")] for i in range(len(keys)) if (i, r, "dsc") in means}
        for i in col:
            others = {j: v for j, v in col.items() if j != i}
            if not others:
                continue
            j = max(others, key=others.get)  # type: ignore[arg-type]
            runs_i = _cell_runs(recs, *keys[i], r)
            runs_j = _cell_runs(recs, *keys[j], r)
            a, b = paired_values(dict(zip(runs_i.seed, runs_i.dir)), dict(zip(runs_j.seed, runs_j.dir)))
            if wilcoxon_p(a, b) < ALPHA:
                marks.add((i, r))
    return marks


def cost_table(root: Path, fmt: str = "markdown", dataset: str | None = None) -> str:
    """What each method costs: precision, iterations per stage (pre-training + training: two-stage
    rows take more steps, as the paper's protocol), wall time, iterations per second, device-hours,
    peak memory, parameters (means over the runs of each dataset, profile and method)."""
    df = load_records(root) if root.exists() else pd.DataFrame()
    if df.empty:
        raise BenchError(f"{root}: no completed runs (run `bench run` first)")
    if dataset:
        df = df[df.dataset == dataset]
    rows = []
    for (ds, prof, name), sub in sorted(df.groupby(["dataset", "profile", "paper_name"]),
                                        key=lambda kv: (kv[0][0], kv[0][1], paper_order(kv[0][2]))):
        gpu = sub.device.astype(str).str.startswith("cuda").any()
        hours = sub.wall_s.sum() / 3600
        params = sub.params.astype(float).mean()
        prec = "/".join(sorted(set(sub.precision.astype(str))))
        iters = "/".join(sorted(set(sub.iterations.astype(str))))
        rows.append([ds, prof, name, str(len(sub)), prec, iters, f"{sub.wall_s.mean() / 60:.1f}",
                     f"{sub.iters_per_s.mean():.2f}", f"{hours:.3f} {'GPU' if gpu else 'CPU'}-h", f"{sub.peak_mem_mb.mean():.0f}",
                     "—" if params != params else f"{params / 1e6:.2f}"])
    headers = ["dataset", "profile", "Method", "runs", "precision", "iterations", "wall [min/run]", "it/s (train)", "device-hours",
               "peak mem [MB]", "params [M]"]
    return render(headers, rows, fmt)
