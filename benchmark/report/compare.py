"""What the report shows of one cell (dataset, schedule, evaluation split, label ratio, method) beyond
its mean: a paired per-case scatter against the baseline's runs in the same cell, and its worst cases
pooled over seeds with their voxel counts. Built from the metrics files the report already read;
the scatter is geometry for inline SVG (the template escapes every label), as ``run_charts`` is.

Points are paired by seed and case id: a seed only one side has, or a case only one side evaluated
in a seed, is left out (and named in the caption), never matched to another."""
from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sslbench.base.run_files import RunFiles
from sslbench.report.bootstrap import case_dice
from sslbench.report.run_charts import nice_ticks

BASELINE = "unet-l"                       # the method every other one is paired with (UNet-L, untagged)
SIZE = 260                                 # the scatter's square box in SVG units
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 12, 36
SEED_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def paired_points(a: Mapping[int, Mapping[str, Any]], b: Mapping[int, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One point per (seed, case) both sides evaluated: ``a`` and ``b`` map seed -> that run's checked
    metrics.json; x is a's Dice [%] of the case (class mean), y is b's. Sorted by seed, then case."""
    points = []
    for seed in sorted(set(a) & set(b)):
        da, db = case_dice(a[seed]), case_dice(b[seed])
        points += [{"seed": int(seed), "case": case, "x": da[case], "y": db[case]} for case in sorted(set(da) & set(db))]
    return points


def scatter(points: list[dict[str, Any]], xlabel: str, ylabel: str) -> dict[str, Any] | None:
    """The scatter's geometry: both axes over the same range (so the diagonal y = x is the 45° line),
    round ticks, a dot per point carrying its values, a colour per seed. None without points."""
    values = [v for p in points for v in (p["x"], p["y"]) if math.isfinite(v)]
    if not values:
        return None
    lo, hi = min(values), max(values)
    pad = max(1.0, 0.05 * (hi - lo))
    lo, hi = lo - pad, hi + pad
    inner = SIZE - LEFT - RIGHT

    def px(v: float) -> float:
        return round(LEFT + (v - lo) / (hi - lo) * inner, 1)

    def py(v: float) -> float:
        return round(TOP + (hi - v) / (hi - lo) * inner, 1)

    seeds = sorted({p["seed"] for p in points})
    colour = {s: SEED_COLOURS[i % len(SEED_COLOURS)] for i, s in enumerate(seeds)}
    ticks = [t for t in nice_ticks(lo, hi) if lo <= t <= hi]
    return {
        "size": SIZE, "left": LEFT, "right": LEFT + inner, "top": TOP, "bottom": TOP + inner,
        "xlabel": xlabel, "ylabel": ylabel, "diagonal": (px(lo), py(lo), px(hi), py(hi)),
        "xticks": [(px(t), f"{t:g}") for t in ticks], "yticks": [(py(t), f"{t:g}") for t in ticks],
        "dots": [{**p, "cx": px(p["x"]), "cy": py(p["y"]), "fill": colour[p["seed"]],
                  "label": f"{p['case']}, seed {p['seed']}: {xlabel} {p['x']:.2f}, {ylabel} {p['y']:.2f}"}
                 for p in points if math.isfinite(p["x"]) and math.isfinite(p["y"])],
        "legend": [(s, colour[s]) for s in seeds],
    }


def case_counts(case: Mapping[str, Any]) -> dict[str, tuple[int, int, int]] | None:
    """Per class (TP, FP, FN) voxels of one case of a checked metrics.json, from what it stores: |pred|
    (``n_pred``), |ref| (``n_ref``) and Dice = 2 TP / (|pred| + |ref|), so TP = Dice (|pred| + |ref|) / 2,
    FP = |pred| - TP, FN = |ref| - TP. None when the counts are missing (a record of an earlier
    version) or do not fit together (a foreign file)."""
    out = {}
    for cls, m in case["metrics"].items():
        n_pred, n_ref = m.get("n_pred"), m.get("n_ref")
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 2**53 for v in (n_pred, n_ref)):
            return None
        tp_exact = float(m["dice"]) * (n_pred + n_ref) / 2 if n_pred + n_ref else 0.0
        tp = round(tp_exact)
        if abs(tp - tp_exact) > 1e-6 * max(1.0, n_pred + n_ref) or not 0 <= tp <= min(n_pred, n_ref):
            return None
        out[str(cls)] = (tp, n_pred - tp, n_ref - tp)
    return out


def worst_in_cell(runs: Mapping[int, tuple[str, Mapping[str, Any]]], count: int) -> tuple[list[str], list[dict[str, Any]]]:
    """The ``count`` (case, seed) pairs of lowest Dice (class mean) among a cell's runs (``runs``: seed
    -> (run folder, its checked metrics.json)), lowest first (ties: by seed, then case), with each
    class's TP / FP / FN ("—" where the file stores no counts) and whether the run saved that case's
    prediction (``bench plot qualitative --case`` draws it)."""
    rows, classes = [], []
    for seed, (folder, metrics) in sorted(runs.items()):
        saved = RunFiles(Path(folder)).predictions
        files = {f.name for f in saved.iterdir()} if saved.is_dir() and not saved.is_symlink() else set()
        dice = case_dice(metrics)
        for case in metrics.get("metric_per_case") or []:
            classes = classes or [str(c) for c in case["metrics"]]
            counts = case_counts(case) or {}
            name = str(case["case"])
            rows.append({"case": name, "seed": int(seed), "dice": dice[name],
                         "counts": ["{} / {} / {}".format(*counts[c]) if c in counts else "—" for c in classes],
                         "saved": f"{name}.npy" in files or f"{name}.nii.gz" in files})
    rows.sort(key=lambda r: (r["dice"], r["seed"], r["case"]))
    return classes, [{**r, "dice": f"{r['dice']:.2f}"} for r in rows[:count]]


__all__ = ["BASELINE", "case_counts", "paired_points", "scatter", "worst_in_cell"]
