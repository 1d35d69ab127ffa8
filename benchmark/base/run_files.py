"""A run folder's files, all in one place: every name, every read and every write of a run folder goes
through ``RunFiles``, so the rules for them (atomic writes, ``weights_only`` loads, what ``--force``
may remove) live once.

    <results>/<dataset>/<profile>/<method>/ratio-<r>/seed-<s>/
        config.json       resolved configuration and its hash (written before training)
        train_log.jsonl   losses every log_every iterations and validation scores
        ckpt/last.pt      resumable checkpoint (optimiser, samplers, RNG states, teachers, banks)
        ckpt/best.pt      the best-validated weights of the evaluated network
        ckpt/<stage>-best.pt  a ``carry_best_of`` stage's best weights until the next stage holds them
        metrics.json      per case, per class metrics of the selected weights; means; policy
        metrics-last.json the same for the last weights (both ends of the checkpoint protocol)
        run.json          the record: summary, selection, timing, environment, code version
        DONE              marker: the run is complete (written last)
        progress.json     while training: stage, iteration, it/s, host (read by ``bench status``)
        failed.json       the last session's error (cleared when a session starts the run again)
        error.log         that error's full traceback (``bench run --debug`` prints it)
        tb/               TensorBoard event files of the training log (with the optional tensorboard)
        slurm.json        the SLURM job given the run (``--executor slurm``)
        predictions/      predicted label volumes (``--save-predictions``)
        .lock             who is training the run (``sslbench.base.locks``)

``NoRunFiles`` is the same interface for a run without a folder (the conformance kit, ``bench
speed``, notebooks): JSON and log writes go nowhere, checkpoints are kept in memory, so a run without
a folder selects and carries its best weights exactly as one with a folder.
"""
from __future__ import annotations

import copy
import json
import logging
import os
import platform
import shutil
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from sslbench.base.atomic import atomic_path, remove_orphans, write_json, write_text
from sslbench.base.errors import BenchError


def format_ratio(ratio: float) -> str:
    return f"{ratio:g}"


def run_dir(root: Path, dataset: str, profile: str, method: str, ratio: float, seed: int) -> Path:
    return root / dataset / profile / method / f"ratio-{format_ratio(ratio)}" / f"seed-{seed}"


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BenchError(f"{path}: unreadable ({exc})") from exc


class RunFiles:
    """The files of the run folder ``folder``."""

    CONFIG, RECORD, METRICS, METRICS_LAST, DONE = "config.json", "run.json", "metrics.json", "metrics-last.json", "DONE"
    LOG, PROGRESS, FAILED, SLURM, LOCK = "train_log.jsonl", "progress.json", "failed.json", "slurm.json", ".lock"
    ERROR_LOG, TENSORBOARD = "error.log", "tb"
    LAST, BEST = "last.pt", "best.pt"
    KEEP = {"all": (LAST, BEST), "last": (LAST,), "best": (BEST,), "none": ()}

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def __repr__(self) -> str:
        return f"RunFiles({str(self.folder)!r})"

    # ------------------------------------------------------------------ paths
    def path(self, name: str) -> Path:
        return self.folder / name

    @property
    def ckpt(self) -> Path:
        return self.folder / "ckpt"

    @property
    def predictions(self) -> Path:
        return self.folder / "predictions"

    @property
    def lock_path(self) -> Path:
        return self.folder / self.LOCK

    @staticmethod
    def stage_best(stage: str) -> str:
        """The checkpoint name of a ``carry_best_of`` stage's best weights."""
        return f"{stage}-best.pt"

    # ------------------------------------------------------------------ the folder's life
    def create(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)

    def remove_orphans(self) -> None:
        """What a killed session left half written (temp files and folders); call it under the lock."""
        for sub in (self.folder, self.ckpt, self.predictions):
            remove_orphans(sub, ".*.tmp")
        remove_orphans(self.predictions, ".tmp-*")  # a NIfTI prediction being written

    def clear(self) -> None:
        """Empty the folder for ``--force``, keeping the lock its caller holds."""
        for child in self.folder.iterdir():
            if child.name == self.LOCK:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()

    def is_done(self) -> bool:
        return self.path(self.DONE).exists() and self.path(self.RECORD).exists()

    def mark_done(self) -> None:
        write_text(self.path(self.DONE), time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")

    # ------------------------------------------------------------------ JSON files
    def write(self, name: str, obj: Any) -> None:
        write_json(self.path(name), obj)

    def read(self, name: str) -> Any:
        """A JSON file of the folder (a ``BenchError`` naming it when it cannot be read)."""
        return read_json(self.path(name))

    def read_if_any(self, name: str) -> Any:
        """A JSON file, or None when it is missing or unreadable (``bench status`` reads live folders)."""
        try:
            return json.loads(self.path(name).read_text())
        except (OSError, ValueError):
            return None

    def has(self, name: str) -> bool:
        return self.path(name).exists()

    def remove(self, name: str) -> None:
        self.path(name).unlink(missing_ok=True)

    def note_failure(self, exc: BaseException) -> None:
        """``failed.json`` with the error's last line (``bench status`` says why a run stopped) and
        ``error.log`` with its whole traceback (what a plugin author needs)."""
        kind = "" if isinstance(exc, BenchError) else f"{type(exc).__name__}: "
        lines = str(exc).strip().splitlines() or [""]
        try:
            write_text(self.path(self.ERROR_LOG), "".join(traceback.format_exception(exc)))
            self.write(self.FAILED, {"error": f"{kind}{lines[-1]}"[:500], "traceback": str(self.path(self.ERROR_LOG)),
                                     "host": platform.node(), "pid": os.getpid(),
                                     "when": time.strftime("%Y-%m-%dT%H:%M:%S")})
        except OSError:
            pass  # the error itself is what matters; the caller reports it

    def error_log(self) -> str | None:
        """The traceback of the last session's failure, if it left one."""
        try:
            return self.path(self.ERROR_LOG).read_text()
        except OSError:
            return None

    # ------------------------------------------------------------------ the training log
    def append_log(self, record: dict[str, Any]) -> None:
        with self.path(self.LOG).open("a") as fh:
            fh.write(json.dumps(record) + "\n")

    def read_log(self) -> list[dict[str, Any]]:
        """The log's records; a torn or foreign line (a killed writer) is skipped."""
        out = []
        try:
            lines = self.path(self.LOG).read_text().splitlines()
        except OSError:
            return []
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out

    def trim_log(self, keep: Callable[[dict[str, Any]], bool]) -> None:
        """Keep the log lines ``keep`` accepts (a resumed run drops those written after its checkpoint)."""
        path = self.path(self.LOG)
        if not path.exists():
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
                ok = isinstance(rec, dict) and keep(rec)
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line from the interrupted process
            if ok:
                kept.append(line)
        with atomic_path(path) as tmp:
            tmp.write_text("".join(f"{line}\n" for line in kept))

    # ------------------------------------------------------------------ checkpoints
    def has_checkpoint(self, name: str) -> bool:
        return (self.ckpt / name).exists()

    def save_checkpoint(self, name: str, obj: Any) -> None:
        with atomic_path(self.ckpt / name) as tmp:
            torch.save(obj, tmp)

    def load_checkpoint(self, name: str, device: torch.device) -> Any:
        """A checkpoint's content; ``weights_only``: a checkpoint is data, a crafted pickle never runs here.
        Raises whatever the load raises (the caller decides what an unusable file means)."""
        return torch.load(self.ckpt / name, map_location=device, weights_only=True)

    def set_aside(self, name: str) -> str:
        """Move an unusable checkpoint out of the way (never deleted); returns its new name."""
        aside = f"{name}.unusable-{time.strftime('%Y%m%d-%H%M%S')}"
        (self.ckpt / name).replace(self.ckpt / aside)
        return aside

    def remove_checkpoint(self, name: str) -> None:
        (self.ckpt / name).unlink(missing_ok=True)

    def prune_checkpoints(self, keep: str) -> None:
        """After the record is written: drop the checkpoints the user does not keep (``last.pt``
        carries optimiser state, teachers and memory banks, hundreds of MB for MONA)."""
        if keep not in self.KEEP:
            raise BenchError(f"--keep-checkpoints {keep!r}: one of {', '.join(self.KEEP)}")
        for name in (self.LAST, self.BEST):
            if name not in self.KEEP[keep]:
                self.remove_checkpoint(name)


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


def iter_records(root: Path, warn: Callable[[str], None] | None = None) -> Iterator[dict[str, Any]]:
    """Every completed run record under ``root``; an unreadable one is skipped with a warning (one
    damaged file must not hide every other result)."""
    say = warn or (lambda message: logging.getLogger("sslbench").warning(message))
    for marker in sorted(root.rglob(RunFiles.DONE)):
        files = RunFiles(marker.parent)
        try:
            record = files.read(RunFiles.RECORD)
            if not isinstance(record, dict) or "summary" not in record:
                raise BenchError(f"{files.path(RunFiles.RECORD)}: not a run record")
        except BenchError as exc:
            say(f"skipping {exc}")
            continue
        record["_dir"] = str(marker.parent)
        yield record
