"""Typed reads of fields from files someone else may have written (checkpoints, run records,
``progress.json``, ``meta.json``): each returns the value with its declared type and range or raises
``FieldError`` naming the field, so a damaged file is one line, never an ``IndexError`` ten calls later."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from sslbench.base.names import MAX_NAME, NAME
from sslbench.base.printable import CONTROL


class FieldError(ValueError):
    """A field of a read-back file has the wrong type or is out of range."""


def _show(value: Any) -> str:
    try:
        text = repr(value)
    except ValueError:  # an integer of more digits than Python converts to text
        return "a huge integer"
    return text if len(text) <= 60 else text[:57] + "..."


def mapping(value: Any, name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise FieldError(f"{name}: expected a mapping, got {_show(value)}")
    return value


def integer(value: Any, name: str, lo: int | None = None, hi: int | None = None) -> int:
    """An int (never a bool, a float or a string) with ``lo <= value <= hi``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(f"{name}: expected an integer, got {_show(value)}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise FieldError(f"{name}: {_show(value)} is outside [{'' if lo is None else lo}, {'' if hi is None else hi}]")
    return value


def number(value: Any, name: str, lo: float | None = None, hi: float | None = None,
           finite: bool = True, nan: bool = False) -> float:
    """A real number (int or float, never a bool or a string), finite unless ``finite=False``, NaN
    only with ``nan=True`` (a metric undefined for a case)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FieldError(f"{name}: expected a number, got {_show(value)}")
    try:
        value = float(value)
    except OverflowError:  # an integer beyond any float
        raise FieldError(f"{name}: {_show(value)} is too large") from None
    if math.isnan(value):
        if nan:
            return value
        raise FieldError(f"{name}: expected a number, got NaN")
    if finite and math.isinf(value):
        raise FieldError(f"{name}: expected a finite number, got {value}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise FieldError(f"{name}: {value} is outside [{'' if lo is None else lo}, {'' if hi is None else hi}]")
    return value


def text(value: Any, name: str, most: int = 1000) -> str:
    if not isinstance(value, str):
        raise FieldError(f"{name}: expected a string, got {_show(value)}")
    if len(value) > most:
        raise FieldError(f"{name}: longer than {most} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800" in JSON): it could never be printed
        raise FieldError(f"{name}: not valid text (a lone surrogate)") from None
    bad = CONTROL.search(value)
    if bad:  # an ESC or another control character: a terminal would act on it (sslbench.base.printable)
        raise FieldError(f"{name}: holds the control character \\x{ord(bad.group()):02x}")
    return value


def strings(value: Any, name: str) -> list[str]:
    """A list of strings (case ids, ``--set`` items), each printable text."""
    if not isinstance(value, list):
        raise FieldError(f"{name}: expected a list of strings, got {_show(value)}")
    return [text(item, name) for item in value]


def name(value: Any, field: str) -> str:
    """A dataset, profile or method name as the command line allows it (it becomes a folder name)."""
    if not (isinstance(value, str) and NAME.fullmatch(value) and len(value) <= MAX_NAME):
        raise FieldError(f"{field}: {_show(value)} is not a name (letters, digits, '.', '_', '-')")
    return value


def choice(value: Any, field: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise FieldError(f"{field}: {_show(value)} is not one of {', '.join(allowed)}")
    return value
