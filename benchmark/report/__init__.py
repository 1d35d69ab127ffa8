"""The reporting layer: evaluation of trained methods, metrics, tables (with the paper's numbers and
significance marks) and figures, all built from one frame of the run records.

    import sslbench.report as report
    df = report.load_results("results")      # one row per run x case x class (pandas)
    per_run = df.groupby([*report.CELL_KEYS, "seed"]).dsc.mean()
    per_run.groupby(level=list(report.CELL_KEYS)).agg(["mean", "std", "count"])  # bench table's cells
"""
from __future__ import annotations

from typing import Any


def load_results(path: Any) -> Any:
    """The tidy results frame of a results folder (``sslbench.report.frame.load_results``)."""
    from .frame import load_results as _load

    return _load(path)


def __getattr__(name: str) -> Any:
    """``CELL_KEYS`` and ``NO_TAG`` from the frame module, imported on first use (pandas is slow to load)."""
    if name in ("CELL_KEYS", "NO_TAG"):
        from . import frame

        return getattr(frame, name)
    raise AttributeError(f"module 'sslbench.report' has no attribute {name!r}")


__all__ = ["CELL_KEYS", "NO_TAG", "load_results"]
