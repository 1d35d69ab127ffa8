"""A request to stop training, raised by a signal handler and honoured at the next step boundary.

A cluster warns a job before its time limit or a preemption with a signal (SLURM: ``--signal``).
Handling it inside the handler would checkpoint a half-finished step (weights updated, EMA teacher
not yet); so the handler only records the request, and the trainer, between two steps, writes
``last.pt`` and raises :class:`Interrupted`. The executor that installed the handler then requeues.
"""
from __future__ import annotations

import signal
from collections.abc import Iterable
from types import FrameType

_reason = ""


class Interrupted(Exception):
    """Training stopped at a step boundary on request, after writing its checkpoint."""


def request_stop(reason: str) -> None:
    global _reason
    _reason = _reason or reason


def stop_requested() -> str:
    """Why a stop was requested ("" when none was)."""
    return _reason


def clear() -> None:
    global _reason
    _reason = ""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    request_stop(f"signal {signal.Signals(signum).name}")


def stop_on_signals(names: Iterable[str]) -> dict[int, object]:
    """Make each named signal (``"USR2"``, ``"SIGTERM"``) request a stop; returns the handlers it replaced."""
    previous: dict[int, object] = {}
    for name in names:
        sig = getattr(signal, name if name.startswith("SIG") else f"SIG{name}")
        previous[int(sig)] = signal.signal(sig, _on_signal)
    return previous
