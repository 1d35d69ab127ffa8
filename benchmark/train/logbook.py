"""The training log: named losses summed on the device between log lines, read back only at a log
line (with validation, the only host syncs of a run), checked for NaN/Inf, and written with the
run's progress for ``bench status``. With the optional ``tensorboard`` package installed
(``pip install -e ".[tb]"``) the same values also go to TensorBoard event files in
``<run>/tb/<schedule>`` (``<schedule>``: the readable profile key, ``quick`` or
``quick+f2ea37_train.iterations=40``, so TensorBoard's run names say which schedule a run trained
on), so ``tensorboard --logdir results/`` follows a live sweep; without it nothing changes. There,
scalars are ``<stage>/<term>`` against the stage's iteration, the validation Dice in percent as
``<stage>/val_dice_percent`` (the unit of every other view); the run's configuration is a text
(``run/config``) and its hyper-parameters go to the HParams dashboard with the best and the last
validation Dice [%] of its last stage when training ends.

Each loss line also states the learning rate of its last step (``lr``) and the mean wall time of a
training step over the steps since the previous line (``step_s``, seconds): a ``time.perf_counter``
stamp per step, no device sync added (the line's own read-back waits for the queued steps, and that
wait counts); validation, checkpoints and a stage's start are not step time (the clock restarts after
them). ``step_s`` differs between two runs of the same seed: compare logs without ``TIMING_KEYS``.
Logs written before it have no ``step_s``; every reader treats a missing key as not logged."""
from __future__ import annotations

import json
import logging
import math
import os
import re
import socket
import time
from typing import Any

import torch
from torch import Tensor

from sslbench.base.errors import TrainingDiverged
from sslbench.base.fields import FieldError, integer, mapping, number
from sslbench.base.run_files import RunFiles

TIMING_KEYS = ("step_s",)  # wall-clock values of a log line: not reproducible, left out when logs are compared


class LossLog:
    def __init__(self, files: RunFiles, desc: str) -> None:
        self.files = files
        self.desc = desc
        self.sums: dict[str, Tensor | float] = {}
        self.count = 0
        self.start = 0                    # the iteration the sums began at
        self._mark = (time.time(), -1, 0)  # (when, stage index, iteration) of the last progress write
        self._board: Any = None            # the TensorBoard writer once opened; False: not installed
        self._about: dict[str, Any] = {}   # the run's schedule name, hyper-parameters and config text
        self.checkpointed: dict[str, Any] | None = None  # the stage and iteration ``last.pt`` holds
        self._progress: dict[str, Any] | None = None     # what ``progress.json`` last said
        self._clock = time.perf_counter()  # when the step being timed began (the last step's end or a pause's)
        self._timed = (0.0, 0)             # (seconds, steps) timed since the last line

    def board(self) -> Any:
        """A ``SummaryWriter`` on ``<run>/tb/<schedule>`` when tensorboard is installed and the run has a
        folder (none where that folder is a planted link or a file: never written through)."""
        if self._board is None:
            self._board = False
            folder = self.files.board_folder()
            if folder is not None:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError:
                    pass
                else:
                    about = board_identity(self.files.read_if_any(RunFiles.CONFIG))
                    run = folder / about["name"]
                    if folder.is_symlink() or run.is_symlink() or (run.exists() and not run.is_dir()):
                        logging.getLogger("sslbench").warning(f"{run}: not a folder; no TensorBoard events written")
                        return None
                    self._board = SummaryWriter(str(run), flush_secs=30)
                    self._about = about
                    self._board.add_text("run/config", about["text"], 0)
        return self._board or None

    def close(self) -> None:
        """Close the writer, after the run's hyper-parameters and final validation Dice [%] went to the
        HParams dashboard."""
        if self._board:
            try:  # through this run's own writer (``add_hparams`` would open a second one on a new folder)
                from torch.utils.tensorboard.summary import hparams as hparams_summaries

                hparams, metrics, step = self._final_hparams()
                for summary in hparams_summaries(hparams, metrics):
                    self._board.file_writer.add_summary(summary, step)
                for key, value in metrics.items():
                    self._board.add_scalar(key, value, step)
            finally:
                self._board.close()
        self._board = None

    def _final_hparams(self) -> tuple[dict[str, Any], dict[str, float], int]:
        """The hyper-parameters and, from the whole log (every resumed session), the best and the last
        validation Dice [%] of the last stage that was validated, with that last iteration."""
        scores = []
        for r in self.files.read_log():
            try:  # a foreign line (a string, an absurd number) is no score
                value = number(r.get("val_dice"), "val_dice")
                it = integer(r.get("iteration"), "iteration", 0)
            except FieldError:
                continue
            if isinstance(r.get("stage"), str):
                scores.append((r["stage"], it, value))
        if not scores:
            return dict(self._about.get("hparams", {})), {}, 0
        mine = [(it, v) for stage, it, v in scores if stage == scores[-1][0]]
        metrics = {"hparams/best_val_dice_percent": 100.0 * max(v for _, v in mine),
                   "hparams/last_val_dice_percent": 100.0 * mine[-1][1]}
        return dict(self._about.get("hparams", {})), metrics, mine[-1][0]

    def add(self, logged: dict[str, Tensor | float]) -> None:
        """One step's terms; device tensors stay on the device, plain floats on the host."""
        for k, v in logged.items():
            self.sums[k] = self.sums[k] + v if k in self.sums else (v.clone() if torch.is_tensor(v) else v)
        self.count += 1
        self._tick(1)

    def _tick(self, steps: int) -> None:
        """Add the time since the clock's last stamp to ``steps`` timed steps (0: a read-back's wait)."""
        now = time.perf_counter()
        seconds, n = self._timed
        self._timed, self._clock = (seconds + now - self._clock, n + steps), now

    def pause_clock(self) -> None:
        """What follows is no training step (validation, a checkpoint, a new stage): the clock restarts
        when it is done, so the time in between is in no ``step_s``."""
        self._clock = time.perf_counter()

    def flush(self, stage: str, iteration: int, lr: float) -> dict[str, float] | None:
        """Means since the last line, written as one log record; None when nothing was summed.
        A NaN/Inf term stops the run (its last checkpoint is kept)."""
        if not self.count:
            return None
        means = {k: float(v) / self.count for k, v in self.sums.items()}
        self._tick(0)  # the read-back above waited for the queued steps: their time
        (seconds, timed), self._timed = self._timed, (0.0, 0)
        timing = {"step_s": round(seconds / timed, 6)} if timed else {}  # none timed: resumed at this line
        bad = [k for k, v in means.items() if not math.isfinite(v)]
        start, self.start = self.start, iteration
        self.sums, self.count = {}, 0
        if bad:
            raise TrainingDiverged(f"{self.desc}: {', '.join(bad)} became NaN/Inf between iterations {start} and "
                                   f"{iteration} of stage '{stage}'; the last checkpoint is kept")
        self.files.append_log({"stage": stage, "iteration": iteration, "lr": lr, **timing,
                               **{k: round(v, 6) for k, v in means.items()}})
        board = self.board()
        if board is not None:
            for k, v in {"lr": lr, **timing, **means}.items():
                board.add_scalar(f"{stage}/{k}", v, iteration)
        return means

    def write(self, record: dict[str, Any]) -> None:
        """A record of its own (a validation score), to the log and to TensorBoard."""
        self.pause_clock()  # the validation that made it was no training step
        self.files.append_log(record)
        board = self.board()
        if board is not None:
            for k, v in record.items():
                if k not in ("stage", "iteration") and isinstance(v, (int, float)) and not isinstance(v, bool):
                    name, value = (f"{k}_percent", 100.0 * v) if k == "val_dice" else (k, v)  # % as every view
                    board.add_scalar(f"{record['stage']}/{name}", value, record["iteration"])
            board.flush()

    def new_stage(self, stage_index: int, iteration: int) -> None:
        """Rates restart with each stage (its steps cost differently)."""
        self._mark = (time.time(), stage_index, iteration)
        self._timed = (0.0, 0)
        self.pause_clock()

    def progress(self, stage_index: int, stage: str, iteration: int, lengths: dict[str, int]) -> None:
        """``progress.json``: where this run is and how fast it goes, for ``bench status``."""
        now = time.time()
        mark_t, mark_stage, mark_it = self._mark
        rate = ((iteration - mark_it) / (now - mark_t)
                if mark_stage == stage_index and now > mark_t and iteration > mark_it else None)
        self._mark = (now, stage_index, iteration)
        self._progress = {
            "stage": stage, "iteration": iteration, "stages": dict(lengths),
            "it_s": None if rate is None else round(rate, 4), "updated": round(now, 3),
            "host": socket.gethostname(), "pid": os.getpid(), "checkpoint": self.checkpointed}
        self.files.write(RunFiles.PROGRESS, self._progress)

    @property
    def has_progress(self) -> bool:
        """Whether this session wrote ``progress.json``."""
        return self._progress is not None

    def evaluation_progress(self, weights: str, done: int, cases: int, started: float) -> None:
        """``progress.json`` during the test-set evaluation after training: which weights, how many
        volumes of how many, since when (wall clock), so ``bench status`` shows it instead of a
        finished training's "ETA 0m00s". Only over this session's own progress (``Trainer`` writes
        it first where training wrote none)."""
        if self._progress is None:
            return
        self._progress = {**self._progress, "updated": round(time.time(), 3), "evaluation": {
            "weights": weights, "done": done, "cases": cases, "started": round(started, 3)}}
        self.files.write(RunFiles.PROGRESS, self._progress)

    def mark_checkpoint(self, stage: str, iteration: int) -> None:
        """Where ``last.pt`` is (written once it is saved): a resume starts there, whatever
        ``progress.json`` says of steps trained after it (a checkpoint that failed on a full disk)."""
        self.checkpointed = {"stage": stage, "iteration": iteration}
        self.pause_clock()  # saving it was no training step

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


def _folder_name(text: str) -> str:
    """``text`` as one folder name: letters, digits and ``._=+-`` kept, the rest ``_``, at most 120."""
    name = re.sub(r"[^A-Za-z0-9._=+-]+", "_", text).strip("_")[:120]
    return name if name.strip(".") else "run"


def _hparam(value: Any) -> bool | int | float | str:
    """A value the HParams dashboard takes: a number, a bool or a string (anything else as JSON)."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def board_identity(config: Any) -> dict[str, Any]:
    """From a run's ``config.json`` (None when it has none): its TensorBoard run folder name (the
    readable profile key: the profile, the hash of the schedule values its ``--set`` changed and those
    values), the hyper-parameters (the spec and every resolved ``train.``/``data.``/``method.`` key)
    and the configuration as a text (Markdown, indented: shown verbatim)."""
    if not isinstance(config, dict):
        return {"name": "run", "hparams": {}, "text": "no config.json"}
    spec = config.get("spec") if isinstance(config.get("spec"), dict) else {}
    profile = str(spec.get("profile", "?"))
    protocol, key = _protocol(config, spec)
    hparams: dict[str, Any] = {k: _hparam(spec.get(k)) for k in ("dataset", "method", "tag", "ratio", "seed", "profile")
                               if k in spec}
    hparams["profile_key"] = key
    hparams["overrides"] = "; ".join(str(o) for o in spec.get("overrides") or [])
    for section in ("train", "data", "method"):
        if isinstance(config.get(section), dict):
            hparams.update({f"{section}.{k}": _hparam(v) for k, v in sorted(config[section].items())})
    readable = f"{key} ({'; '.join(protocol)})" if protocol else key
    body = json.dumps({k: config.get(k) for k in ("spec", "train", "data", "method", "hash")}, indent=1, default=str)
    text = f"schedule: {readable}\n\n" + "\n".join(f"    {line}" for line in body.splitlines())
    return {"name": _folder_name(f"{key} {'; '.join(protocol)}" if protocol else profile), "hparams": hparams,
            "text": text, "profile_key": key, "profile_text": readable}


def _protocol(config: dict[str, Any], spec: dict[str, Any]) -> tuple[list[str], str]:
    """The schedule values a run's ``--set`` changed from its profile and its profile key, as the run
    layer wrote them into ``config.json`` (``schedule_key``, as the record will state them); for a config
    without them, the ``train.``/``data.`` items as given, under the profile's name."""
    profile = str(spec.get("profile", "?"))
    schedule = config.get("schedule_key") if isinstance(config.get("schedule_key"), dict) else {}
    protocol, key = schedule.get("protocol_overrides"), schedule.get("profile_key")
    if isinstance(protocol, list) and isinstance(key, str):
        return [str(o) for o in protocol], key
    given = sorted(str(o) for o in spec.get("overrides") or [] if str(o).startswith(("train.", "data.")))
    return given, profile
