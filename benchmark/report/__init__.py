"""The reporting layer: evaluation of trained methods, metrics, tables (with the paper's numbers and
significance marks) and figures, all built from one frame of the run records.

    import sslbench.report as report
    df = report.load_results("results")      # one row per run x case x class (pandas)
"""
from __future__ import annotations

from typing import Any


def load_results(path: Any) -> Any:
    """The tidy results frame of a results folder (``sslbench.report.frame.load_results``)."""
    from .frame import load_results as _load

    return _load(path)


__all__ = ["load_results"]
