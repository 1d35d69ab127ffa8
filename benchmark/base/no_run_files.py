"""``NoRunFiles``: the run-folder interface for a run without a folder (the conformance kit, ``bench
speed``, notebooks): JSON and log writes go nowhere and checkpoints are kept in memory, so such a run
selects and carries its best weights exactly as one with a folder."""
from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from sslbench.base.run_files import RunFiles


class NoRunFiles(RunFiles):
    """A run without a folder: JSON and log writes are dropped, checkpoints live in memory (copies)."""

    def __init__(self) -> None:
        super().__init__(Path(os.devnull))
        self._checkpoints: dict[str, Any] = {}

    def __repr__(self) -> str:
        return "NoRunFiles()"

    def write(self, name: str, obj: Any) -> None:
        pass

    def read_if_any(self, name: str) -> Any:
        return None

    def has(self, name: str) -> bool:
        return False

    def board_folder(self) -> Path | None:
        return None

    def remove(self, name: str) -> None:
        pass

    def append_log(self, record: dict[str, Any]) -> None:
        pass

    def read_log(self) -> list[dict[str, Any]]:
        return []

    def trim_log(self, keep: Callable[[dict[str, Any]], bool]) -> None:
        pass

    def has_checkpoint(self, name: str) -> bool:
        return name in self._checkpoints

    def save_checkpoint(self, name: str, obj: Any) -> None:
        self._checkpoints[name] = copy.deepcopy(obj)  # a copy, as a file would be: training goes on

    def load_checkpoint(self, name: str, device: torch.device) -> Any:
        if name not in self._checkpoints:
            raise FileNotFoundError(f"no checkpoint {name} in memory")
        return copy.deepcopy(self._checkpoints[name])

    def set_aside(self, name: str) -> str:
        self._checkpoints.pop(name, None)
        return f"{name} (dropped)"

    def remove_checkpoint(self, name: str) -> None:
        self._checkpoints.pop(name, None)
