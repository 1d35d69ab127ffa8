"""Peak memory as the run records report it: CUDA max allocated on a GPU, process max RSS on a CPU."""
from __future__ import annotations

import resource
import sys

import torch


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / 2**20


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak (CUDA only: a process's max RSS cannot be reset, so CPU peaks are cumulative)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_kind(device: torch.device) -> str:
    return "cuda max allocated" if device.type == "cuda" else "process max RSS"
