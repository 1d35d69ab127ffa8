"""`bench table`: run records -> the paper's layout (one row per method in the paper's order, columns
ratio x (DSC, ASD), mean ± std over seeds) as markdown, LaTeX or CSV."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

from .errors import BenchError
from .results import iter_records

PAPER_ORDER = ("UNet-F", "UNet-L", "EM", "CCT", "DAN", "URPC", "DCT", "ICT", "MT", "UAMT", "CPS", "GCL",
               "SCS", "PLC", "MoCov2", "kNN-MoCo", "SimCLR", "BYOL", "ISD", "GLCon", "MONA")
FORMATS = ("markdown", "latex", "csv")


def load_records(root: Path) -> pd.DataFrame:
    """One row per completed run: identity, summary metrics, timing."""
    rows = []
    for rec in iter_records(root):
        s = rec["summary"]
        rows.append({
            "dataset": rec["dataset"], "profile": rec["profile"], "method": rec["method"],
            "paper_name": rec.get("paper_name", rec["method"]), "ratio": float(rec["ratio"]),
            "seed": rec["seed"], "dsc": 100.0 * s["dice"], "asd": s["assd"], "hd95": s["hd95"],
            "asd_legacy": s["asd_legacy"], "all_labels": float(rec["ratio"]) >= 100.0,
            "wall_s": rec["timing"]["wall_s"],
            "units": "voxels" if rec.get("metric_policy", {}).get("spacing") == "voxels" else "mm",
        })
    return pd.DataFrame(rows)


def paper_order(name: str) -> tuple[int, str]:
    """Sort key: the paper's row order, then unknown (plugin) methods alphabetically."""
    return (PAPER_ORDER.index(name), name) if name in PAPER_ORDER else (len(PAPER_ORDER), name)


def _cell(values: pd.Series, digits: int) -> str:
    vals = values.dropna().to_numpy()
    if len(vals) == 0:
        return "—"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{vals.mean():.{digits}f} ± {vals.std(ddof=1):.{digits}f}"


def build_table(df: pd.DataFrame, metrics: Sequence[tuple[str, str, int]] = (("dsc", "DSC", 1), ("asd", "ASD", 2)),
                ) -> tuple[list[str], list[list[str]], list[float]]:
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


def tables(root: Path, fmt: str = "markdown", dataset: str | None = None, profile: str | None = None,
           methods: Sequence[str] | None = None) -> str:
    """Every (dataset, profile) table under ``root`` that matches the filters."""
    if fmt not in FORMATS:
        raise BenchError(f"unknown table format '{fmt}' (known: {', '.join(FORMATS)})")
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
    out, frames = [], []
    for (ds, prof), sub in df.groupby(["dataset", "profile"], sort=True):
        n_seeds = sub.groupby("paper_name").seed.nunique()
        seeds = f"{n_seeds.max()}" if n_seeds.min() == n_seeds.max() else f"{n_seeds.min()}-{n_seeds.max()}"
        units = "voxels, the source files carry no spacing" if (sub.units == "voxels").any() else "mm"
        caption = (f"{ds} (profile {prof}): DSC [%] and ASD (ASSD as medpy 0.5.2 defines it; {units}), "
                   f"case-averaged then class-averaged; mean ± std over {seeds} seed(s)")
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


def summary_numbers(root: Path) -> pd.DataFrame:
    """Mean over seeds per (dataset, profile, method, ratio): handy for tests and scripts."""
    df = load_records(root)
    return df.groupby(["dataset", "profile", "paper_name", "ratio"], as_index=False)[["dsc", "asd"]].agg(np.mean)
