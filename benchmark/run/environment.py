"""Where a run executes: the device, the seeds, and the environment its record states."""
from __future__ import annotations

import platform
import random
from typing import Any

import numpy as np
import torch

from sslbench.base.errors import BenchError
from sslbench.base.code_identity import code_version


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise BenchError(f"--device {name}: {exc}") from exc
    if device.type not in ("cpu", "cuda"):  # "meta" holds no data, others are not supported here
        raise BenchError(f"--device {name}: one of auto, cpu, cuda, cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise BenchError(f"--device {name}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise BenchError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def environment(device: torch.device) -> dict[str, Any]:
    return {
        "sslbench": code_version(), "python": platform.python_version(), "torch": torch.__version__,
        "numpy": np.__version__, "platform": platform.platform(), "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "threads": torch.get_num_threads(),
    }
