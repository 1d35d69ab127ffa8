"""`bench table`: run records -> the paper's layout (one row per method in the paper's order, columns
ratio x (DSC, ASD), mean ± std over seeds) as markdown, LaTeX or CSV."""
from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from sslbench.base.errors import BenchError
from sslbench.base.printable import one_line
from sslbench.base.spreadsheet import to_safe_csv
from sslbench.report.frame import protocol_caption, run_frame, variant_name

# a cell's interval of one metric (``bench table --ci``): (cell runs, metric key) -> (low, high) or None
Interval = Callable[[pd.DataFrame, str], "tuple[float, float] | None"]

PAPER_ORDER = ("UNet-F", "UNet-L", "EM", "CCT", "DAN", "URPC", "DCT", "ICT", "MT", "UAMT", "CPS", "GCL",
               "SCS", "PLC", "MoCov2", "kNN-MoCo", "SimCLR", "BYOL", "ISD", "GLCon", "MONA")
FORMATS = ("markdown", "latex", "csv")


def load_records(root: Path, checkpoint: str = "best") -> pd.DataFrame:
    """One row per finished run (``sslbench.report.frame.run_frame``)."""
    return run_frame(root, checkpoint)


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


def _with_interval(key: str) -> bool:
    """The columns ``--ci`` gives an interval: the DSC, class-averaged or of one class."""
    return key == "dsc" or key.startswith("dsc:")


def build_table(df: pd.DataFrame, metrics: Sequence[tuple[str, str, int]] = (("dsc", "DSC", 1), ("asd", "ASD", 2)),
                numeric: bool = False, interval: Interval | None = None,
                ci_name: str = "ci") -> tuple[list[str], list[list[Any]], list[float]]:
    """Headers and rows for one (dataset, profile key) frame, a row per method and tag. Runs that used
    every label (UNet-F) fill every ratio column. ``numeric``: mean, sd and seed count in columns of
    their own (CSV), not one "mean ± sd" string. ``interval``: a DSC cell's interval beside its mean
    ± sd ("[lo, hi]"), or in two columns of its own (``<ci_name> low``, ``high``) when numeric."""
    df = df.assign(row=[variant_name(n, t) for n, t in zip(df.paper_name, df.tag)])
    ratios = sorted(df.loc[~df.all_labels, "ratio"].unique()) or sorted(df.ratio.unique())
    headers = ["Method"]
    for r in ratios:
        for key, label, _ in metrics:
            headers += ([f"{r:g}% {label} mean", f"{r:g}% {label} sd", f"{r:g}% {label} n"] if numeric
                        else [f"{r:g}% {label}"])
            if numeric and interval is not None and _with_interval(key):
                headers += [f"{r:g}% {label} {ci_name} low", f"{r:g}% {label} {ci_name} high"]
    rows = []
    for name in sorted(df.row.unique(), key=paper_order):
        sub = df[df.row == name]
        row: list[Any] = [name]
        for r in ratios:
            cell_df = sub if sub.all_labels.all() else sub[sub.ratio == r]
            for key, _, digits in metrics:
                vals = cell_df[key].dropna()
                ci = interval(cell_df, key) if interval is not None and _with_interval(key) else None
                if numeric:
                    row += [round(vals.mean(), 4) if len(vals) else None,
                            round(vals.std(ddof=1), 4) if len(vals) > 1 else None, len(vals)]
                    if interval is not None and _with_interval(key):
                        row += [None, None] if ci is None else [round(ci[0], 4), round(ci[1], 4)]
                else:
                    text = _cell(cell_df[key], digits)
                    if interval is not None and _with_interval(key):
                        text += " [—]" if ci is None else f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
                    row.append(text)
        rows.append(row)
    return headers, rows, ratios


def render(headers: list[str], rows: list[list[Any]], fmt: str, caption: str = "", label: str = "") -> str:
    """Markdown, CSV, or LaTeX (booktabs, in a table environment with its caption and label)."""
    if fmt == "markdown":
        table = tabulate(markdown_cells(rows), headers=[markdown_label(h) for h in headers], tablefmt="github",
                         disable_numparse=True)
        return f"**{markdown_text(caption)}**\n\n{table}" if caption else table
    if fmt == "latex":
        return _latex(headers, rows, caption, label)
    if fmt == "csv":
        return to_safe_csv(pd.DataFrame(rows, columns=headers)).rstrip("\n")
    raise BenchError(f"unknown table format '{fmt}' (known: {', '.join(FORMATS)})")


def markdown_text(text: str) -> str:
    """Text from records (a tag, a class or method name) inside a markdown table or caption: one line,
    control characters shown, ``|`` escaped so it never opens a column."""
    return one_line(text).replace("|", "\\|")


MARKDOWN_SPECIALS = "\\`*_$|<>[]~"


def markdown_label(text: str) -> str:
    """A header from records (a class name in a per-class column) inside a markdown table: one line,
    control characters shown, and every character markdown or its math and HTML extensions act on
    (``**``, ``_``, ``$``, ``|``, backticks, ``<``, ``[``, ``~``) escaped with a backslash, so it shows
    as written. Cells keep ``markdown_text``: a table's own bold markers are markdown."""
    return "".join("\\" + ch if ch in MARKDOWN_SPECIALS else ch for ch in one_line(text))


def markdown_cells(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    return [[markdown_text(c) if isinstance(c, str) else c for c in row] for row in rows]


def select_records(root: Path, dataset: str | None = None, profile: str | None = None,
                   methods: Sequence[str] | None = None, checkpoint: str = "best", strict: bool = True) -> pd.DataFrame:
    """Finished runs under ``root`` matching the filters (``profile``: a profile or profile key); a
    clear error when there are none, and (``strict``) when a method asked for has no run."""
    if not root.exists():
        raise BenchError(f"{root}: no results folder (run `bench run` first)")
    df = load_records(root, checkpoint)
    if df.empty:
        raise BenchError(f"{root}: no completed runs (run `bench run` first)")
    if dataset:
        _must_match("--dataset", dataset, sorted(set(df.dataset)), root)
        df = df[df.dataset == dataset]
    if profile:
        _must_match("--profile", profile, sorted(set(df.profile) | set(df.profile_key)), root)
        df = df[(df.profile == profile) | (df.profile_key == profile)]
    if methods:
        have = sorted(set(df.method))
        for name in methods if strict else ():
            if name not in have:
                close = difflib.get_close_matches(name, have, n=1, cutoff=0.6)
                raise BenchError(f"--methods {name}: no completed run of it here"
                                 + (f"; did you mean '{close[0]}'?" if close else "")
                                 + f" (methods with runs: {', '.join(have)})")
        df = df[df.method.isin(methods)]
    if df.empty:
        raise BenchError(f"{root}: no completed runs match the filters")
    return df


def _must_match(option: str, value: str, have: list[str], root: Path) -> None:
    """A filter that names nothing under ``root`` is refused, with the closest name and the ones there,
    rather than an empty table or layout printed with exit code 0."""
    if value in have:
        return
    close = difflib.get_close_matches(value, have, n=1, cutoff=0.6)
    raise BenchError(f"{option} {value}: no completed runs of it under {root}"
                     + (f"; did you mean '{close[0]}'?" if close else "") + f" (with runs: {', '.join(have)})")


def tables(root: Path, fmt: str = "markdown", dataset: str | None = None, profile: str | None = None,
           methods: Sequence[str] | None = None, per_class: bool = False, checkpoint: str = "best",
           strict: bool = True, ci: float | None = None) -> str:
    """Every (dataset, profile key) table under ``root`` that matches the filters, each captioned with
    the protocol its records state (``strict``: a method asked for without a run is an error).
    ``ci``: a ``ci`` % bootstrap interval beside each DSC (``sslbench.report.bootstrap``: over the
    cell's cases x seeds, of the weights the table shows)."""
    from sslbench.report.bootstrap import CaseReader, interval_method, interval_note

    if fmt not in FORMATS:
        raise BenchError(f"unknown table format '{fmt}' (known: {', '.join(FORMATS)})")
    if ci is not None and not 0 < ci < 100:
        raise BenchError(f"--ci {ci:g}: a confidence level in percent, above 0 and below 100 (e.g. 95)")
    df = select_records(root, dataset, profile, methods, checkpoint, strict)
    reader = CaseReader(checkpoint)

    def cell_interval(cell: pd.DataFrame, key: str) -> tuple[float, float] | None:
        level = 95.0 if ci is None else ci
        return reader.interval(cell.sort_values("seed").dir, key.split(":", 1)[1] if ":" in key else None, level)[0]

    interval: Interval | None = cell_interval if ci is not None else None

    out, frames = [], []
    for (ds, key), sub in df.groupby(["dataset", "profile_key"], sort=True):
        caption = protocol_caption(sub) + ("; per class" if per_class else "; class-averaged") \
            + (f"; {interval_note(ci)}" if ci is not None else "")
        if per_class:
            classes = [c.split(":", 1)[1] for c in sub.columns if c.startswith("dsc:") and sub[c].notna().any()]
            metrics = [(f"{m}:{c}", f"{c} {m.upper()}", 1 if m == "dsc" else 2) for c in classes for m in ("dsc", "asd")]
        else:
            metrics = [("dsc", "DSC", 1), ("asd", "ASD", 2)]
        headers, rows, _ = build_table(sub, metrics, numeric=fmt == "csv", interval=interval,
                                       ci_name=f"ci{ci:g}" if ci is not None else "ci")
        if fmt == "csv":
            frame = pd.DataFrame(rows, columns=headers)
            for name, value in _csv_protocol(sub, ds, checkpoint, sub.units.iloc[0], None)[:-1]:
                frame.insert(0, name, value)
            if ci is not None:
                frame["ci_method"] = interval_method(ci)
            frames.append(frame)
        elif fmt == "markdown":
            out.append(render(headers, rows, fmt, caption))
        else:
            out.append(render(headers, rows, fmt, caption, f"tab:{ds}-{key}"))
    if fmt == "csv":
        return to_safe_csv(pd.concat(frames, ignore_index=True)).rstrip("\n")
    return "\n\n".join(out)


# ---------------------------------------------------------------------------------------- paper tables
ALPHA = 0.05
SIG_MARK = "†"


def _bold(text: str, fmt: str) -> str:
    if text == "—" or fmt == "csv":
        return text
    return f"**{text}**" if fmt == "markdown" else f"{BOLD[0]}{text}{BOLD[1]}"


def _cell_runs(recs: pd.DataFrame, method: str, variant: str, ratio: float) -> pd.DataFrame:
    sub = recs[(recs.paper_name == method) & (recs.tag == variant)]
    return sub if sub.all_labels.all() else sub[sub.ratio == ratio]


def paper_table(root: Path, table: int | str, fmt: str = "markdown", dataset: str | None = None,
                profile: str | None = None, vs_paper: bool = False, paper_dataset: str | None = None,
                warn: Callable[[str], None] | None = None, checkpoint: str = "best") -> str:
    """One of the paper's tables from the records: its rows in its order, mean ± std over seeds,
    best per column in bold, a significance mark, missing runs as "—" (with a warning), and with
    ``vs_paper`` the published value and the difference beside each DSC and ASD."""
    from sslbench.report.paper import PROTOCOLS, layout, sources, table_number

    table = table_number(table)
    if fmt not in FORMATS:
        raise BenchError(f"unknown table format '{fmt}' (known: {', '.join(FORMATS)})")
    lay = layout(table)
    df = load_records(root, checkpoint) if root.exists() else pd.DataFrame()
    if profile and not df.empty:
        _must_match("--profile", profile, sorted(set(df.profile) | set(df.profile_key)), root)
        df = df[(df.profile == profile) | (df.profile_key == profile)]
    # the table's own datasets when there are records for them, else the datasets that were run
    # (an ablation sweep on synthetic data or a user's dataset), else the empty layout
    paper_ds = list(dict.fromkeys(lay.dataset))
    have = set(df.dataset) if not df.empty else set()
    _check_paper_datasets(root, table, dataset, paper_dataset, paper_ds, have, vs_paper)
    datasets = [dataset] if dataset else ([d for d in paper_ds if d in have] or sorted(have) or paper_ds)
    out = []
    for ds in datasets:
        # published numbers only for the paper's own dataset, or the one --paper-dataset names: a
        # phantom is never set beside ACDC's rows unless asked
        compare = paper_dataset or (ds if ds in paper_ds else None)
        rows_ds = compare or paper_ds[0]
        recs = df[df.dataset == ds] if not df.empty else df
        keys = sorted(set(recs.profile_key)) if not recs.empty else []
        if len(keys) > 1:  # one table never mixes schedules
            shown = "; ".join(f"{k} = {recs.profile_text[recs.profile_key == k].iloc[0]}" if "+" in k else k for k in keys)
            raise BenchError(f"{root}: {ds} has runs of {len(keys)} profiles or schedules ({shown}); "
                             "pick one with --profile (bench table --keys lists them)")
        headers, body, units = _paper_rows(table, lay[lay.dataset == rows_ds], recs, compare, fmt, vs_paper,
                                           lambda m, ds=ds: warn(f"table {table}, {ds}: {m}") if warn else None)
        ref_ds = compare or ds
        caption = _paper_caption(table, ds, ref_ds, units, vs_paper, recs)
        notes = ["published: " + src for _, src in sources(table)] if vs_paper else []
        if vs_paper and compare is None:
            notes.insert(0, f"no published numbers for {ds}: --paper-dataset {' or '.join(paper_ds)} sets one of "
                            "the paper's datasets beside it")
        if vs_paper and not recs.empty:
            notes = [n for n in [protocol_caveat(recs, PROTOCOLS.get(table)), ASD_NOTE] if n] + notes
        if fmt == "csv":
            frame = pd.DataFrame(body, columns=headers)
            for name, value in _csv_protocol(recs, ds, checkpoint, units, compare)[:None if vs_paper else -1]:
                frame.insert(len(frame.columns) if name.startswith("published") else 0, name, value)
            out.append(to_safe_csv(frame, header=not out).rstrip("\n"))
        elif fmt == "markdown":
            text = render(headers, body, fmt, caption)
            out.append(text + "".join(f"\n\n* {markdown_text(n)}" if i == 0 else f"\n* {markdown_text(n)}"
                                      for i, n in enumerate(notes)))
        else:
            out.append(_latex(headers, body, caption, f"tab:table{table}-{ds}") + "".join(f"\n% {one_line(n)}" for n in notes))
    return ("\n" if fmt == "csv" else "\n\n").join(out)


def _csv_protocol(recs: pd.DataFrame, ds: str, checkpoint: str, units: str,
                  published: str | None) -> list[tuple[str, Any]]:
    """The columns a CSV table carries so its numbers read alone: what they are of (dataset, profile
    key and its overrides, evaluation split, checkpoint) and in which units; inserted last-first."""
    def one(column: str) -> str:
        return " / ".join(dict.fromkeys(recs[column].astype(str))) if not recs.empty else ""

    return [("asd_unit", units), ("dsc_unit", "%"), ("checkpoint", checkpoint), ("eval_split", one("eval_split")),
            ("profile", one("profile_text")), ("profile_key", one("profile_key")), ("dataset", ds),
            ("published_dataset", published or "")]


def _check_paper_datasets(root: Path, table: int, dataset: str | None, paper_dataset: str | None,
                          paper_ds: list[str], have: set[str], vs_paper: bool) -> None:
    """``--dataset`` and ``--paper-dataset`` of a paper table name something real: a dataset with runs
    (or, with --vs-paper, one of the table's own, whose published numbers are then the content), and
    one of the table's published datasets."""
    if paper_dataset and paper_dataset not in paper_ds:
        raise BenchError(f"--paper-dataset {paper_dataset}: table {table} publishes {', '.join(paper_ds)}")
    if dataset and dataset not in have and not (vs_paper and dataset in paper_ds):
        known = sorted(have)
        close = difflib.get_close_matches(dataset, known + paper_ds, n=1, cutoff=0.6)
        raise BenchError(f"--dataset {dataset}: no completed runs of it under {root}"
                         + (f"; did you mean '{close[0]}'?" if close else "")
                         + (f" (datasets with runs: {', '.join(known)})" if known else ""))


ASD_NOTE = ("ASD: the table's own column is the symmetric ASSD in the records' units; the published ASD is medpy's "
            "directed asd(pred, gt) in voxels (the released evaluation code), so 'ASD Δ' compares it with the "
            "same definition from the records (asd_legacy), never with the ASSD")


def _paper_rows(table: int, rows_lay: pd.DataFrame, recs: pd.DataFrame, ref_ds: str | None, fmt: str, vs_paper: bool,
                warn: Callable[[str], None]) -> tuple[list[str], list[list[str]], str]:
    """Headers, rows and distance units of one dataset's table: the layout's rows (then plugin and
    variant rows), a cell per ratio and metric, bold best, significance marks, published values."""
    from sslbench.report.paper import paper_cells, published_variant

    keys = list(dict.fromkeys(zip(rows_lay.method, rows_lay.variant)))
    if not recs.empty:
        extra = [k for k in dict.fromkeys(zip(recs.paper_name, recs.tag)) if k not in keys]
        keys += sorted(extra, key=lambda k: paper_order(k[0]))   # plugins: rows appear automatically
    ratios = sorted(recs[~recs.all_labels].ratio.unique()) if not recs.empty else []
    ratios = ratios or sorted(rows_lay.ratio.unique())
    published = paper_cells()
    published = published[(published.table == table) & (published.dataset == ref_ds)]
    with_variant = any(v for _, v in keys)
    numeric = fmt == "csv"  # CSV: numbers only, each in a column of its own
    headers = ["Method"] + (["Variant"] if with_variant else [])
    for r in ratios:
        for metric in ("DSC", "ASD"):
            headers += ([f"{r:g}% {metric} {part}" for part in ("mean", "sd", "n", "best")]
                        + ([f"{r:g}% {metric} significant"] if metric == "DSC" else [])) if numeric \
                else [f"{r:g}% {metric}"]
            if vs_paper:
                headers += [f"{r:g}% {metric} paper", f"{r:g}% {metric} Δ"]
    cells, means, references, missing = _paper_cells(keys, ratios, recs)
    legacy_asd = _legacy_asd(keys, ratios, recs) if vs_paper else {}
    competing = {k: v for k, v in means.items() if k[0] not in references}
    marks = _significance(keys, ratios, recs, competing) if not recs.empty else set()
    body: list[list[Any]] = []
    for i, (method, variant) in enumerate(keys):
        row: list[Any] = [method] + ([variant] if with_variant else [])
        for r in ratios:
            runs = _cell_runs(recs, method, variant, r) if not recs.empty else recs
            for key in ("dsc", "asd"):
                col = [competing[(j, r, key)] for j in range(len(keys)) if (j, r, key) in competing]
                best = (i, r, key) in competing and len(col) > 1 \
                    and means[(i, r, key)] == (max(col) if key == "dsc" else min(col))
                significant = key == "dsc" and (i, r) in marks
                if numeric:
                    vals = runs[key].dropna() if not runs.empty else pd.Series(dtype=float)
                    row += [round(float(vals.mean()), 4) if len(vals) else None,
                            round(float(vals.std(ddof=1)), 4) if len(vals) > 1 else None, len(vals), best]
                    row += [significant] if key == "dsc" else []
                else:
                    text = cells[(i, r, key)]
                    text = _bold(text, fmt) if best else text
                    row.append(text + (SIG_MARK if significant else ""))
                if vs_paper:
                    pub = published[(published.method == method) & (published.ratio == r)
                                    & (published.variant == published_variant(table, variant))]
                    value = float(pub[key].iloc[0]) if len(pub) and pub[key].notna().iloc[0] else None
                    mine = means.get((i, r, key)) if key == "dsc" else legacy_asd.get((i, r))
                    digits = 1 if key == "dsc" else 2
                    if numeric:
                        row += [value, None if value is None or mine is None else round(mine - value, 4)]
                    else:
                        row.append("—" if value is None else f"{value:.1f}" if key == "dsc" else f"{value:g}")
                        row.append("—" if value is None or mine is None else f"{mine - value:+.{digits}f}")
        body.append(row)
    if missing:
        warn(f"{len(missing)} cell(s) without runs: {', '.join(missing[:6])}" + (" ..." if len(missing) > 6 else ""))
    units = "voxels" if not recs.empty and (recs.units == "voxels").any() else "mm"
    return headers, body, units


def _legacy_asd(keys: list[tuple[str, str]], ratios: list[float], recs: pd.DataFrame) -> dict[tuple[int, float], float]:
    """Per (row, ratio): the mean directed voxel ASD (``asd_legacy``), the published ASD's definition."""
    out = {}
    for i, (method, variant) in enumerate(keys):
        for r in ratios:
            runs = _cell_runs(recs, method, variant, r) if not recs.empty else recs
            values = runs.asd_legacy.dropna() if "asd_legacy" in runs else pd.Series(dtype=float)
            if len(values):
                out[(i, r)] = float(values.mean())
    return out


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


def _paper_caption(table: int, ds: str, ref_ds: str, units: str, vs_paper: bool, recs: pd.DataFrame) -> str:
    from sslbench.report.paper import TABLE3_NOTE, TABLES

    protocol = protocol_caption(recs) + ". " if not recs.empty else f"DSC [%], ASD = ASSD ({units}). "
    split = recs.eval_split.iloc[0] if not recs.empty else "test"
    return (f"{TABLES[table]} — {ds}" + (f" (published: {ref_ds})" if vs_paper and ref_ds != ds else "") + ". "
            + protocol + f"Best per column in bold and {SIG_MARK}: the DSC differs from the strongest other "
            f"method of its column (paired Wilcoxon signed-rank test over {split} volumes × seeds, p < {ALPHA}), "
            f"both among the methods at that label ratio (UNet-F, trained on every label, is the reference); "
            f"— : no run." + (f" {TABLE3_NOTE}" if vs_paper and table == 3 else ""))


# the MONA paper's protocol (section 4): what --vs-paper compares a table's records with (a table of ours
# run with another protocol names it: ``sslbench.report.paper.PROTOCOLS``, e.g. UA-MT's LA release)
PAPER_PROTOCOL = {"eval_split": "test", "iterations": 30000, "image_size": 256}


def protocol_caveat(recs: pd.DataFrame, protocol: dict[str, Any] | None = None) -> str:
    """One line when the records' protocol differs from the published one ("" when it does not):
    the MONA paper's unless ``protocol`` gives the table's own (its ``who``, and ``seeds`` None where
    the sources state no seed count)."""
    p: dict[str, Any] = {**PAPER_PROTOCOL, "who": "the paper", "seeds": 3, **(protocol or {})}
    who = p["who"]
    diffs = []
    if (recs.eval_split != p["eval_split"]).any():
        diffs.append(f"scored on the validation split, which also selected the model ({who}: a test split)")
    train_iters = recs.stage_iterations.astype(str).str.split(" + ").str[-1]
    if (pd.to_numeric(train_iters, errors="coerce") != p["iterations"]).any():
        diffs.append(f"{' / '.join(dict.fromkeys(recs.stage_iterations.astype(str)))} iterations ({who}: "
                     f"{p['iterations']})")
    sizes = recs.image_size.astype(str) if isinstance(p["image_size"], str) \
        else pd.to_numeric(recs.image_size, errors="coerce")   # a 3-D crop is "D x H x W" text: "80x112x112"
    if (sizes != p["image_size"]).any():
        diffs.append(f"{' / '.join(dict.fromkeys(recs.image_size.astype(str)))} px ({who}: {p['image_size']})")
    seeds = recs.groupby(["paper_name", "tag", "ratio"]).seed.nunique()
    if p["seeds"] is not None and (seeds < p["seeds"]).any():
        diffs.append(f"{seeds.min()}-{seeds.max()} seed(s) per cell ({who}: {p['seeds']})" if seeds.min() != seeds.max()
                     else f"{seeds.min()} seed(s) per cell ({who}: {p['seeds']})")
    return ("caveat: not the published protocol: " + "; ".join(diffs)) if diffs else ""


BOLD = ("\u27e6", "\u27e7")  # a bold cell's markers in LaTeX, set after tabulate escaped the text
LATEX_ESCAPES = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                 "~": r"\textasciitilde{}", "^": r"\^{}", "\\": r"\textbackslash{}"}
# characters tabulate leaves as they are that LaTeX's default (OT1) text fonts print as others ("|" as a
# dash, "<" as "¡", a backtick as an opening quote): through tabulate as placeholders, then these
LATEX_GLYPHS = {"|": r"\textbar{}", "<": r"\textless{}", ">": r"\textgreater{}", "`": r"\textasciigrave{}"}
_GLYPH_HOLD = {ch: chr(0xE100 + i) for i, ch in enumerate(LATEX_GLYPHS)}


def _latex_cell(cell: Any) -> Any:
    """A cell as LaTeX will get it: one line, and the bold markers only where ``_bold`` put them (a
    name holding a marker character would otherwise open a \\textbf{ that never closes)."""
    if not isinstance(cell, str):
        return cell
    text = one_line(cell)
    core = text[1:].split(BOLD[1], 1) if text.startswith(BOLD[0]) else None
    if core is not None and len(core) == 2 and BOLD[0] not in core[0] + core[1] and BOLD[1] not in core[1]:
        return text  # a bold number (and its mark) as _bold made it
    return text.replace(BOLD[0], "").replace(BOLD[1], "")


def _latex(headers: list[str], body: list[list[Any]], caption: str, label: str = "") -> str:
    """A booktabs table in a ``table`` environment with its caption and label; tabulate escapes the
    text, then bold markers, ±, † and Δ become LaTeX."""
    def held(cell: Any) -> Any:
        cell = _latex_cell(cell)
        if not isinstance(cell, str):
            return cell
        cell = "".join(ch for ch in cell if ch not in _GLYPH_HOLD.values())   # a placeholder is never text
        return "".join(_GLYPH_HOLD.get(ch, ch) for ch in cell)

    body = [[held(c) for c in row] for row in body]
    headers = [held(h) for h in headers]
    text = tabulate(body, headers=headers, tablefmt="latex_booktabs", disable_numparse=True)
    cap = "".join(LATEX_ESCAPES.get(ch, LATEX_GLYPHS.get(ch, ch)) for ch in _latex_cell(caption))
    math = {"±": r"$\pm$", "†": r"$^\dagger$", "Δ": r"$\Delta$", BOLD[0]: r"\textbf{", BOLD[1]: "}",
            **{_GLYPH_HOLD[ch]: command for ch, command in LATEX_GLYPHS.items()}}
    for old, new in math.items():
        text, cap = text.replace(old, new), cap.replace(old, new)
    return ("\\begin{table}[t]\n\\centering\n\\small\n" + text + f"\n\\caption{{{cap.strip()}}}\n"
            + (f"\\label{{{label}}}\n" if label else "") + "\\end{table}")


def _significance(keys: list[tuple[str, str]], ratios: list[float], recs: pd.DataFrame,
                  means: dict[tuple[int, float, str], float]) -> set[tuple[int, float]]:
    """(row, ratio) cells whose per-volume Dice differs from the strongest other row's (p < ALPHA), on
    the weights the table shows (``recs.checkpoint``: selected or last)."""
    from sslbench.report.significance import paired_values, wilcoxon_p

    # the per-case Dice of the weights the table shows: its rows carry the checkpoint they were read at
    checkpoint = str(recs.checkpoint.iloc[0]) if len(recs) else "best"
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
            a, b = paired_values(dict(zip(runs_i.seed, runs_i.dir)), dict(zip(runs_j.seed, runs_j.dir)), checkpoint)
            if wilcoxon_p(a, b) < ALPHA:
                marks.add((i, r))
    return marks
