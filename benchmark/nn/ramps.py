"""Ramp-up schedules (SSL4MIS `utils/ramps.py`) and the consistency weight every SSL method uses."""
from __future__ import annotations

import math


def sigmoid_rampup(current: float, length: float) -> float:
    """exp(-5 (1 - t)^2) with t = clip(current / length, 0, 1) (Laine & Aila)."""
    if length <= 0:
        return 1.0
    t = min(max(current, 0.0), length) / length
    return float(math.exp(-5.0 * (1.0 - t) ** 2))


def ssl4mis_consistency_weight(weight: float, iteration: int, total: int, ramp_steps: int = 200) -> float:
    """SSL4MIS's ``w(t) = weight * sigmoid_rampup(iter // 150, 200)``.

    SSL4MIS hard-codes 150 for its 30k-iteration schedule, so the ramp spans the whole run. Here the
    quantum is ``max(total // ramp_steps, 1)`` so that every profile keeps that shape (150 at 30k
    iterations): the weight is constant within a quantum and full from ``ramp_steps`` quanta on; a run
    shorter than ``ramp_steps`` iterations has quantum 1 and ends before the full weight.
    ``StepInfo.consistency_weight(weight, ramp_length=L)`` is the continuous ramp over L iterations.
    """
    quantum = max(total // ramp_steps, 1)
    return weight * sigmoid_rampup(iteration // quantum, ramp_steps)
