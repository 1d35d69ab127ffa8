"""CSV written for spreadsheets is inert: no cell starts a formula.

A case id, class name, tag or method name read from someone's files can start with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return; Excel, LibreOffice and Google Sheets run such a cell as a
formula (``=HYPERLINK(...)``, DDE). As OWASP recommends for CSV injection, such text cells get a
leading single quote, which spreadsheets show as text. Numbers are written as numbers (a negative
difference stays ``-7.6``): only text is changed. Every CSV the tool writes goes through
``to_safe_csv`` (docs/reliability.md).
"""
from __future__ import annotations

from typing import Any

import pandas as pd

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula, quoted; anything else as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        value = "'" + value
    if isinstance(value, str) and "\r" in value:  # the csv module quotes a "\n" but not a lone CR: a reader
        value = value.replace("\r\n", "\n").replace("\r", "\n")  # would start a row (a formula) after it
    return value


def safe_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose text cells and column names are safe (numeric columns untouched)."""
    out = df.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(safe_cell)
    out.columns = [safe_cell(str(c)) if isinstance(c, str) else c for c in out.columns]
    return out


def to_safe_csv(df: pd.DataFrame, path: Any = None, **kwargs: Any) -> str | None:
    """``df.to_csv`` of ``safe_frame(df)`` (no index unless asked)."""
    kwargs.setdefault("index", False)
    return safe_frame(df).to_csv(path, **kwargs)
