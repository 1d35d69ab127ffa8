"""Bootstrap intervals of a cell's mean Dice, shared by ``bench report`` (its leaderboards) and
``bench table --ci`` so both give the same interval for the same records.

The unit resampled is the evaluated case of each seed, pooled (cases x seeds; a case's Dice is the
mean over its classes, or one class's Dice for a per-class column): with three seeds per cell, a
bootstrap over the seeds' means would have ten distinct resamples and no usable percentile. The RNG
is seeded, so the same records always give the same interval."""
from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sslbench.base.errors import BenchError
from sslbench.base.run_files import RunFiles

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0                    # fixed: the same records give the same interval
CHECKPOINT_FILES = {"best": RunFiles.METRICS, "last": RunFiles.METRICS_LAST}


def bootstrap_ci(values: Iterable[float], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                 level: float = 95.0) -> tuple[float, float] | None:
    """Percentile bootstrap ``level`` % interval of the mean of ``values`` (non-finite ones left out;
    seeded, so the same values give the same interval); None for fewer than two values. Resampled in
    blocks of a size set by the count alone, so memory stays bounded and the result does not depend
    on anything else."""
    vals = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    n = len(vals)
    if n < 2:
        return None
    rng = np.random.default_rng(seed)
    block = max(1, 4_000_000 // n)
    means = np.concatenate([vals[rng.integers(0, n, size=(min(block, resamples - k), n))].mean(axis=1)
                            for k in range(0, resamples, block)])
    tail = (100.0 - level) / 2
    lo, hi = np.percentile(means, [tail, 100.0 - tail])
    return float(lo), float(hi)


def case_dice(metrics: Mapping[str, Any], cls: str | None = None) -> dict[str, float]:
    """case -> Dice [%] from a checked metrics.json: averaged over the case's classes, or the Dice of
    class ``cls`` (cases without it left out)."""
    out = {}
    for case in metrics.get("metric_per_case") or []:
        per_class = case["metrics"]
        if cls is None:
            out[str(case["case"])] = 100.0 * float(np.mean([m["dice"] for m in per_class.values()]))
        elif cls in per_class:
            out[str(case["case"])] = 100.0 * float(per_class[cls]["dice"])
    return out


class CaseReader:
    """Each run's checked metrics file, read once per view (never cached across views: a file that
    changed between two calls is read again); a missing or damaged one gives no cases, with one
    warning naming it."""

    def __init__(self, checkpoint: str = "best") -> None:
        self.name = CHECKPOINT_FILES[checkpoint]
        self._seen: dict[str, dict[str, Any]] = {}

    def metrics(self, run_dir: str) -> dict[str, Any]:
        if run_dir not in self._seen:
            try:
                self._seen[run_dir] = RunFiles(Path(run_dir)).read_metrics(self.name)
            except BenchError as exc:
                logging.getLogger("sslbench").warning(f"{exc}: its cases are left out of the interval")
                self._seen[run_dir] = {}
        return self._seen[run_dir]

    def interval(self, run_dirs: Iterable[str], cls: str | None = None,
                 level: float = 95.0) -> tuple[tuple[float, float] | None, int]:
        """The bootstrap interval of the mean Dice over the cases of ``run_dirs`` (one cell's seeds),
        pooled, and how many case x seed values it resampled."""
        pooled = [v for d in run_dirs for v in case_dice(self.metrics(d), cls).values()]
        return bootstrap_ci(pooled, level=level), len(pooled)


def interval_method(level: float) -> str:
    """How a table's interval is made, in words (a CSV's ``ci_method`` column)."""
    return (f"{level:g} % percentile bootstrap interval of the mean DSC, resampling the evaluated cases of every "
            f"seed pooled (cases x seeds; a case's Dice averaged over its classes, or the column's class), "
            f"{BOOTSTRAP_RESAMPLES} resamples, RNG seed {BOOTSTRAP_SEED}")


def interval_note(level: float) -> str:
    """What a table's interval is, for its caption."""
    return f"[lo, hi] beside a DSC: its {interval_method(level)}"


__all__ = ["BOOTSTRAP_RESAMPLES", "BOOTSTRAP_SEED", "CaseReader", "bootstrap_ci", "case_dice", "interval_method", "interval_note"]
