"""The declared range of every numeric configuration field, checked when a configuration is resolved
(before anything is written): ``--set train.lr=nan``, ``momentum=-3`` or ``mt.ema_decay=2`` is one
line naming the key, never a ZeroDivisionError or a silently diverging run.

A field's range is, first, its class's ``ranges`` entry (``ranges: ClassVar[dict[str, Range]]``),
else the rule its name follows:

- an int: a count or a size, >= 1 (``pretrain_*`` and ``*_iterations``: >= 0), at most 10^9;
- a float named ``*beta1`` / ``*beta2`` (Adam's): in [0, 0.9999];
- a float named ``*decay``, ``*momentum``, ``*threshold``, ``*thresh``, ``*confidence``, ``*_p``,
  ``*fraction``, ``*dropout`` or ``*jitter``: a probability or a fraction, in [0, 1];
- a float named ``lr`` or ``*_lr``: a learning rate, in (0, 10];
- a float named ``*percent``: in [0, 100];
- a float named ``tau*`` (a temperature) or ``alpha`` (a Beta distribution's): > 0;
- any other float (a loss weight, a noise scale): in [0, 10^6].

Every float must be finite. String fields declare their choices with ``typing.Literal``.
"""
from __future__ import annotations

import math
import typing
from dataclasses import dataclass, fields
from typing import Any

from sslbench.base.errors import ConfigError

UNIT_SUFFIXES = ("decay", "momentum", "threshold", "thresh", "confidence", "_p", "fraction", "dropout", "jitter")
MAX_INT = 10 ** 9
MAX_FLOAT = 1e6


@dataclass(frozen=True)
class Range:
    lo: float | None = 0.0
    hi: float | None = None
    open_lo: bool = False  # ``lo`` itself is excluded (a temperature, a learning rate)

    def __str__(self) -> str:
        lo = "-inf" if self.lo is None else f"{self.lo:g}"
        hi = "inf" if self.hi is None else f"{self.hi:g}"
        return f"{'(' if self.open_lo else '['}{lo}, {hi}]"

    def holds(self, value: float) -> bool:
        if self.lo is not None and (value < self.lo or (self.open_lo and value == self.lo)):
            return False
        return self.hi is None or value <= self.hi


def default_range(name: str, kind: type) -> Range:
    """The range a field's name and type give it when its class declares none."""
    if kind is int:
        return Range(0 if name.startswith("pretrain") or name.endswith("_iterations") else 1, MAX_INT)
    if name.endswith(("beta1", "beta2")):
        return Range(0.0, 0.9999)
    if name.endswith(UNIT_SUFFIXES):
        return Range(0.0, 1.0)
    if name == "lr" or name.endswith("_lr"):
        return Range(0.0, 10.0, open_lo=True)
    if name.endswith("percent"):
        return Range(0.0, 100.0)
    if name.startswith("tau") or name == "alpha":
        return Range(0.0, MAX_FLOAT, open_lo=True)
    return Range(0.0, MAX_FLOAT)


def field_range(cls: type, name: str, kind: type) -> Range:
    """The range a class (or the nearest base that declares one) gives ``name``, else its name's rule."""
    for klass in cls.__mro__:
        declared = klass.__dict__.get("ranges") or {}
        if name in declared:
            return declared[name]
    return default_range(name, kind)


def _check_number(cls: type, section: str, name: str, value: float, kind: type) -> None:
    if not math.isfinite(value):
        raise ConfigError(f"{section}.{name} must be a finite number, got {value}")
    allowed = field_range(cls, name, kind)
    if not allowed.holds(value):
        raise ConfigError(f"{section}.{name} = {value} is outside its range {allowed} (a plugin declares "
                          "its own: ranges = {'" + name + "': Range(lo, hi)}, see docs/configuration.md)")


def _kind(hint: Any, value: Any) -> type:
    """int or float, from the field's annotation (a ``float`` field set to 0 is still a float)."""
    if hint in (int, float):
        return hint
    args = [a for a in typing.get_args(hint) if a in (int, float)]
    if args:
        return args[0]
    return int if isinstance(value, int) else float


def check_ranges(obj: Any, section: str) -> None:
    """Every int and float field of the dataclass ``obj`` inside its range (floats finite); a
    ``(low, high)`` pair of numbers: both inside the range, low <= high."""
    hints = typing.get_type_hints(type(obj))
    for f in fields(obj):
        value, hint = getattr(obj, f.name), hints.get(f.name)
        if isinstance(value, (tuple, list)) and value and all(_is_number(v) for v in value):
            for v in value:
                _check_number(type(obj), section, f.name, v, _kind(hint, v))
            if len(value) == 2 and value[0] > value[1]:
                raise ConfigError(f"{section}.{f.name} = {tuple(value)}: an interval needs low <= high")
        elif _is_number(value):
            _check_number(type(obj), section, f.name, value, _kind(hint, value))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_choices(obj: Any, section: str) -> None:
    """Every ``Literal[...]`` field of the dataclass ``obj`` holds one of its choices."""
    hints = typing.get_type_hints(type(obj))
    for f in fields(obj):
        hint = hints.get(f.name)
        if typing.get_origin(hint) is typing.Literal and getattr(obj, f.name) not in typing.get_args(hint):
            raise ConfigError(f"{section}.{f.name} must be one of {', '.join(map(str, typing.get_args(hint)))}; "
                              f"got {getattr(obj, f.name)!r}")


def check_values(obj: Any, section: str) -> None:
    """The ranges and choices of every field of a configuration section."""
    check_ranges(obj, section)
    check_choices(obj, section)
