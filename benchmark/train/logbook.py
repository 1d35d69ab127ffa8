"""The training log: named losses summed on the device between log lines, read back only at a log
line (with validation, the only host syncs of a run), checked for NaN/Inf, and written with the
run's progress for ``bench status``. With the optional ``tensorboard`` package installed
(``pip install -e ".[tb]"``) the same values also go to TensorBoard event files in ``<run>/tb``, so
``tensorboard --logdir results/`` follows a live sweep; without it nothing changes."""
from __future__ import annotations

import math
import os
import socket
import time
from typing import Any

import torch
from torch import Tensor

from sslbench.base.errors import TrainingDiverged
from sslbench.base.fields import FieldError, integer, mapping
from sslbench.base.run_files import RunFiles


class LossLog:
    def __init__(self, files: RunFiles, desc: str) -> None:
        self.files = files
        self.desc = desc
        self.sums: dict[str, Tensor | float] = {}
        self.count = 0
        self.start = 0                    # the iteration the sums began at
        self._mark = (time.time(), -1, 0)  # (when, stage index, iteration) of the last progress write
        self._board: Any = None            # the TensorBoard writer once opened; False: not installed
        self.checkpointed: dict[str, Any] | None = None  # the stage and iteration ``last.pt`` holds

    def board(self) -> Any:
        """A ``SummaryWriter`` on ``<run>/tb`` when tensorboard is installed and the run has a folder."""
        if self._board is None:
            self._board = False
            folder = self.files.board_folder()
            if folder is not None:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError:
                    pass
                else:
                    self._board = SummaryWriter(str(folder), flush_secs=30)
        return self._board or None

    def close(self) -> None:
        if self._board:
            self._board.close()
        self._board = None

    def add(self, logged: dict[str, Tensor | float]) -> None:
        """One step's terms; device tensors stay on the device, plain floats on the host."""
        for k, v in logged.items():
            self.sums[k] = self.sums[k] + v if k in self.sums else (v.clone() if torch.is_tensor(v) else v)
        self.count += 1

    def flush(self, stage: str, iteration: int, lr: float) -> dict[str, float] | None:
        """Means since the last line, written as one log record; None when nothing was summed.
        A NaN/Inf term stops the run (its last checkpoint is kept)."""
        if not self.count:
            return None
        means = {k: float(v) / self.count for k, v in self.sums.items()}
        bad = [k for k, v in means.items() if not math.isfinite(v)]
        start, self.start = self.start, iteration
        self.sums, self.count = {}, 0
        if bad:
            raise TrainingDiverged(f"{self.desc}: {', '.join(bad)} became NaN/Inf between iterations {start} and "
                                   f"{iteration} of stage '{stage}'; the last checkpoint is kept")
        self.files.append_log({"stage": stage, "iteration": iteration, "lr": lr,
                               **{k: round(v, 6) for k, v in means.items()}})
        board = self.board()
        if board is not None:
            for k, v in {"lr": lr, **means}.items():
                board.add_scalar(f"{stage}/{k}", v, iteration)
        return means

    def write(self, record: dict[str, Any]) -> None:
        """A record of its own (a validation score), to the log and to TensorBoard."""
        self.files.append_log(record)
        board = self.board()
        if board is not None:
            for k, v in record.items():
                if k not in ("stage", "iteration") and isinstance(v, (int, float)):
                    board.add_scalar(f"{record['stage']}/{k}", v, record["iteration"])
            board.flush()

    def new_stage(self, stage_index: int, iteration: int) -> None:
        """Rates restart with each stage (its steps cost differently)."""
        self._mark = (time.time(), stage_index, iteration)

    def progress(self, stage_index: int, stage: str, iteration: int, lengths: dict[str, int]) -> None:
        """``progress.json``: where this run is and how fast it goes, for ``bench status``."""
        now = time.time()
        mark_t, mark_stage, mark_it = self._mark
        rate = ((iteration - mark_it) / (now - mark_t)
                if mark_stage == stage_index and now > mark_t and iteration > mark_it else None)
        self._mark = (now, stage_index, iteration)
        self.files.write(RunFiles.PROGRESS, {
            "stage": stage, "iteration": iteration, "stages": dict(lengths),
            "it_s": None if rate is None else round(rate, 4), "updated": round(now, 3),
            "host": socket.gethostname(), "pid": os.getpid(), "checkpoint": self.checkpointed})

    def mark_checkpoint(self, stage: str, iteration: int) -> None:
        """Where ``last.pt`` is (written once it is saved): a resume starts there, whatever
        ``progress.json`` says of steps trained after it (a checkpoint that failed on a full disk)."""
        self.checkpointed = {"stage": stage, "iteration": iteration}

    # the sums since the last line go into the checkpoint: a resume between two log lines writes the
    # same next line as an uninterrupted run
    def state_dict(self) -> dict[str, Any]:
        return {"log_acc": dict(self.sums), "log_acc_n": self.count, "log_start": self.start}

    def load_state_dict(self, state: dict[str, Any], iteration: int) -> None:
        sums = mapping(state.get("log_acc", {}), "log_acc")
        for key, value in sums.items():
            if not (isinstance(key, str) and (torch.is_tensor(value) and value.numel() == 1
                                              or isinstance(value, float) and not isinstance(value, bool))):
                raise FieldError(f"log_acc[{key!r}]: expected a number, got {type(value).__name__}")
        self.sums = dict(sums)
        self.count = integer(state.get("log_acc_n", 0), "log_acc_n", 0, max(iteration, 0))
        self.start = integer(state.get("log_start", iteration), "log_start", 0, max(iteration, 0))
