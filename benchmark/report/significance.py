"""Paired significance between methods: per-volume Dice of two methods on the same test volumes and
seeds, compared with the Wilcoxon signed-rank test (two-sided)."""
from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import stats

from sslbench.base.errors import BenchError
from sslbench.base.run_files import RunFiles

CHECKPOINT_FILES = {"best": RunFiles.METRICS, "last": RunFiles.METRICS_LAST}


@lru_cache(maxsize=4096)
def per_case_dice(run_dir: str, checkpoint: str = "best") -> dict[str, float]:
    """case -> Dice averaged over foreground classes, from a run's metrics.json (the selected weights,
    ``checkpoint="best"``) or metrics-last.json (``"last"``); none when the file is missing or damaged:
    that run then has no pairs, with a warning naming the file."""
    try:
        data = RunFiles(Path(run_dir)).read_metrics(CHECKPOINT_FILES[checkpoint])
    except BenchError as exc:
        logging.getLogger("sslbench").warning(f"no paired test for {exc}")
        return {}
    return {c["case"]: float(np.mean([m["dice"] for m in c["metrics"].values()])) for c in data["metric_per_case"]}


def paired_values(runs_a: dict[int, str], runs_b: dict[int, str], checkpoint: str = "best",
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Dice pairs over (seed, case) present in both, of the weights a table shows (``checkpoint``):
    ``runs_*`` map seed -> run folder."""
    a, b = [], []
    for seed in sorted(set(runs_a) & set(runs_b)):
        da, db = per_case_dice(runs_a[seed], checkpoint), per_case_dice(runs_b[seed], checkpoint)
        for case in sorted(set(da) & set(db)):
            a.append(da[case])
            b.append(db[case])
    return np.asarray(a), np.asarray(b)


def wilcoxon_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value; 1.0 when there are fewer than 5 pairs or no differences."""
    diff = a - b
    if len(diff) < 5 or not np.any(diff != 0):
        return 1.0
    return float(stats.wilcoxon(a, b, zero_method="wilcox").pvalue)
