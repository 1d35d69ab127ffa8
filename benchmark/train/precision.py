"""Numeric precision of training and evaluation: bf16 autocast on CUDA when ``train.amp`` is on,
fp32 everywhere else (the ``ssl4mis`` and ``paper`` profiles, and every CPU run)."""
from __future__ import annotations

import contextlib
from typing import Any

import torch


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA; a no-op elsewhere (CPU runs stay in fp32 and deterministic)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def precision(device: torch.device, amp: bool) -> str:
    """What ``autocast(device, amp)`` computes in: "bf16-autocast" (CUDA with amp) or "fp32"."""
    return "bf16-autocast" if amp and device.type == "cuda" else "fp32"
