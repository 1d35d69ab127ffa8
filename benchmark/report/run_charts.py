"""The training curves of one run as chart geometry for the report's run page: the page draws them as
inline SVG from these numbers (the template escapes every label), so a report of hundreds of runs
does not start a plotting library once per run.

The x axis is the global step: iterations since the run began, stages one after the other (a
record counts iterations per stage: iteration 20 of ``train`` after 20 of ``pretrain`` is step 40).
The page's text names both, and the charts mark where each stage ends and which weights were
evaluated, at their global step."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from sslbench.base.fields import FieldError, integer, number
from sslbench.base.records import MAX_ITERATIONS

# (logged key, chart title, y label, dots, scale): what a run page charts, each where the log has it;
# the learning rate and the step time (seconds per training step) only in logs that state them
CURVES = (("loss", "training loss", "loss", False, 1.0), ("val_dice", "validation DSC", "DSC [%]", True, 100.0),
          ("lr", "learning rate", "lr", False, 1.0), ("step_s", "step time", "s per step", False, 1.0))
WIDTH, HEIGHT = 360, 200                  # the chart's box in SVG units
LEFT, RIGHT, TOP, BOTTOM = 48, 18, 22, 34  # margins: axis labels on the left and at the bottom


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round values (1, 2, 2.5 or 5 times a power of ten apart) covering [lo, hi], about ``count``."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    raw = (hi - lo) / max(count - 1, 1)
    if not (math.isfinite(raw) and raw > 0):  # one value, a span too small for a power of ten, or overflow
        return [lo]
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 12) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _label(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e6 else f"{value:.3g}"


def chart(steps: list[float], values: list[float], title: str, ylabel: str, dots: bool,
          stage_ends: list[float], marks: Sequence[tuple[float, str]] = (),
          xlabel: str = "iteration (stages in order)") -> dict[str, Any] | None:
    """One chart: a polyline of ``values`` against ``steps`` (non-finite values skipped), axes with
    round ticks, a dashed line where each stage but the last ends and a labelled line at each of
    ``marks`` ((step, label): the evaluated weights) inside the x range. None when nothing is finite."""
    pairs = [(s, v) for s, v in zip(steps, values) if math.isfinite(s) and math.isfinite(v)]
    if not pairs:
        return None
    x0, x1 = min(s for s, _ in pairs), max(s for s, _ in pairs)
    y0, y1 = min(v for _, v in pairs), max(v for _, v in pairs)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        y0, y1 = y0 - 1, y1 + 1
    pad = (y1 - y0) * 0.05
    y0, y1 = y0 - pad, y1 + pad
    if not all(math.isfinite(v) and v > 0 for v in (x1 - x0, y1 - y0)):
        return None  # values near the float range's ends: nothing sensible to draw
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(s: float) -> float:
        return round(LEFT + (s - x0) / (x1 - x0) * inner_w, 1)

    def py(v: float) -> float:
        return round(TOP + (y1 - v) / (y1 - y0) * inner_h, 1)

    points = [(px(s), py(v)) for s, v in pairs]
    return {
        "width": WIDTH, "height": HEIGHT, "title": title, "ylabel": ylabel, "xlabel": xlabel,
        "left": LEFT, "right": WIDTH - RIGHT, "top": TOP, "bottom": HEIGHT - BOTTOM,
        "points": " ".join(f"{x},{y}" for x, y in points), "dots": points if dots else [],
        "xticks": [(px(t), _label(t)) for t in nice_ticks(x0, x1) if x0 <= t <= x1],
        "yticks": [(py(t), _label(t)) for t in nice_ticks(y0, y1) if y0 <= t <= y1],
        "stages": [px(s) for s in stage_ends if x0 < s < x1],
        "marks": [(px(s), label) for s, label in marks if math.isfinite(s) and x0 <= s <= x1],
    }


def log_curves(items: list[dict[str, Any]], stage_lengths: dict[str, int]) -> pd.DataFrame:
    """A run's training log as rows of stage, iteration (within its stage), step (global: the
    lengths of the stages before it in ``stage_lengths``, the record's, plus the iteration), what
    (a key of ``CURVES``: "loss", "val_dice" in %, "lr", "step_s" in seconds) and value. A stage the
    record does not name follows the steps seen so far; a foreign line (an absurd iteration, a value
    that is no number) is skipped."""
    offsets, start = {}, 0
    for stage, n in stage_lengths.items():
        offsets[stage], start = start, start + n
    seen_end = start if stage_lengths else 0
    rows = []
    for item in items:
        stage = item.get("stage")
        try:
            it = integer(item.get("iteration"), "iteration", 0, MAX_ITERATIONS)
        except FieldError:
            continue
        if not isinstance(stage, str):
            continue
        if stage not in offsets:
            offsets[stage] = seen_end
        seen_end = max(seen_end, offsets[stage] + it)
        for key, _, _, _, scale in CURVES:
            try:
                value = number(item.get(key), key, finite=False, nan=True)
            except FieldError:
                continue
            rows.append({"stage": stage, "iteration": it, "step": offsets[stage] + it, "what": key,
                         "value": scale * value})
    return pd.DataFrame(rows, columns=["stage", "iteration", "step", "what", "value"])


def run_charts(long: pd.DataFrame, stage_lengths: dict[str, int] | None = None,
               marks: Sequence[tuple[float, str]] = ()) -> list[dict[str, Any]]:
    """The training loss, validation DSC, learning rate and step time charts of one run from its
    ``log_curves`` (or ``curve_frame``) rows, each where there are rows of it. With the record's
    ``stage_lengths`` a stage ends where its length says (else where its last logged step is);
    ``marks``: (global step, label) lines, the evaluated weights."""
    if long.empty:
        return []
    if stage_lengths and len(stage_lengths) > 1:
        ends = [float(sum(list(stage_lengths.values())[:k + 1])) for k in range(len(stage_lengths) - 1)]
        xlabel = f"global step ({' then '.join(stage_lengths)})"
    else:
        spans = long.groupby("stage").step.agg(["min", "max"]).sort_values("min")
        ends = spans["max"].tolist()[:-1]     # where each stage but the last ends: the next one begins
        xlabel = "iteration" if len(spans) == 1 else "global step (stages in order)"
    charts = []
    for what, title, ylabel, dots, _ in CURVES:
        part = long[long.what == what].sort_values("step", kind="stable")
        made = chart(part.step.astype(float).tolist(), part.value.astype(float).tolist(), title, ylabel, dots, ends,
                     marks, xlabel)
        if made is not None:
            charts.append(made)
    return charts


__all__ = ["CURVES", "chart", "log_curves", "nice_ticks", "run_charts"]
