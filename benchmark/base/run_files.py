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

``NoRunFiles`` (``no_run_files.py``) is the same interface for a run without a folder (the conformance
kit, ``bench speed``, notebooks): JSON and log writes go nowhere, checkpoints are kept in memory, so a
run without a folder selects and carries its best weights exactly as one with a folder.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import stat
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from sslbench.base.atomic import atomic_path, file_mode, remove_orphans, write_json, write_text
from sslbench.base.errors import BenchError, UnsafePath
from sslbench.base.fields import FieldError
from sslbench.base.file_kinds import not_regular
from sslbench.base.records import check_metrics, check_record


def format_ratio(ratio: float) -> str:
    return f"{ratio:g}"


def run_dir(root: Path, dataset: str, profile: str, method: str, ratio: float, seed: int) -> Path:
    return root / dataset / profile / method / f"ratio-{format_ratio(ratio)}" / f"seed-{seed}"


MiB = 1 << 20
# The most bytes read back of each JSON file of a run folder (a bigger file is damaged: the same
# one-line error, warning or skip as a truncated one). Each is many times what the benchmark writes
# in the largest case it supports (docs/reliability.md, "Files read back"):
READ_LIMITS: dict[str, int] = {
    # ~1.3 KB: the resolved configuration, its sources and overrides; nothing in it grows with the data
    "config.json": 4 * MiB,
    # ~4 KB; grows with ``labeled_cases`` (10,000 ids of 200 characters: 2.1 MB) and the classes
    # (255 classes, best and last: 0.13 MB)
    "run.json": 16 * MiB,
    # ~440 bytes per case and class (indented, 17-digit numbers, 200-character ids): 1,000 evaluated
    # volumes of a 255-class label map (the most a label map holds) is 112 MB
    "metrics.json": 256 * MiB,
    "metrics-last.json": 256 * MiB,
    "progress.json": 1 * MiB,  # ~250 bytes: a stage, iterations, rate, host, pid
    "failed.json": 1 * MiB,    # its error line is cut to 500 characters
    "slurm.json": 1 * MiB,     # ~250 bytes: a job id, a time, two paths
}
DEFAULT_READ_LIMIT = 4 * MiB   # a JSON file of another name
ERROR_LOG_LIMIT = 4 * MiB      # error.log: one formatted traceback (repeated frames are folded: KBs)
_CHUNK = MiB


def read_limit(path: str | os.PathLike[str]) -> int:
    """The most bytes read of the JSON file ``path`` (by its name: ``READ_LIMITS``)."""
    return READ_LIMITS.get(Path(path).name, DEFAULT_READ_LIMIT)


def _has_hole(fd: int, size: int) -> bool:
    """Whether the open file holds a hole of a sparse file before its end (zeros, never JSON text);
    False when the system cannot tell."""
    if not hasattr(os, "SEEK_HOLE") or size == 0:
        return False
    try:
        return os.lseek(fd, 0, os.SEEK_HOLE) < size
    except OSError:
        return False


def read_bounded(path: str | os.PathLike[str], limit: int, *, holes: bool = True) -> bytearray:
    """The bytes of the regular file ``path``, at most ``limit`` of them: the file is opened without
    following a link (and without blocking on a FIFO), its size is checked with ``fstat`` on the open
    descriptor (what is checked is what is read) and at most ``limit + 1`` bytes are read (a file that
    grew after the check is caught too). A ``BenchError`` naming the file and its size when it is
    larger, an ``UnsafePath`` when it is not a regular file. ``holes=False``: a file holding a hole of
    a sparse file (zeros, never JSON) is refused before it is read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise BenchError(f"{path}: unreadable ({type(exc).__name__}: {exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafePath(f"{path}: is not a regular file; refusing to read it")
        if info.st_size > limit:
            raise BenchError(f"{path}: unreadable (too large: {info.st_size:,} bytes; the limit for "
                             f"{Path(path).name} is {limit:,})")
        if not holes and _has_hole(fd, info.st_size):
            raise BenchError(f"{path}: unreadable ({info.st_size:,} bytes holding a hole of a sparse file: "
                             "zeros, not JSON)")
        data = bytearray()
        while len(data) <= limit:
            block = os.pread(fd, min(_CHUNK, limit + 1 - len(data)), len(data))  # (SEEK_HOLE moved the offset)
            if not block:
                break
            data += block
        if len(data) > limit:  # it grew after fstat
            raise BenchError(f"{path}: unreadable (too large: it grew past {limit:,} bytes while read; the limit "
                             f"for {Path(path).name} is {limit:,})")
        return data
    except OSError as exc:
        raise BenchError(f"{path}: unreadable ({type(exc).__name__}: {exc.strerror})") from None
    finally:
        os.close(fd)


def read_json(path: Path, limit: int | None = None) -> Any:
    """A JSON file's content; a ``BenchError`` naming it when it cannot be read or decoded (larger than
    ``limit``, by default its kind's ``READ_LIMITS``; a hole of a sparse file; bad UTF-8, bad JSON, a
    number of more digits than Python reads, nesting too deep). At most ``limit + 1`` bytes are read."""
    data = read_bounded(path, read_limit(path) if limit is None else limit, holes=False)
    try:
        text = data.decode("utf-8")
        del data
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise BenchError(f"{path}: unreadable ({type(exc).__name__}: {str(exc)[:200]})") from None


class RunFiles:
    """The files of the run folder ``folder`` (``root``: the results root it must stay under).

    A results folder is someone else's input (a shared lab folder, a SLURM sweep's): ``check`` refuses
    a run folder, ``ckpt/`` or ``predictions/`` that is a symbolic link or leaves the root, and any of
    the benchmark's file names that is not a regular file (a planted link, FIFO, device, folder);
    appends never follow a link; reads see regular files only, each within its kind's size limit
    (``READ_LIMITS``); ``clear`` (``--force``) removes only the files the benchmark writes."""

    CONFIG, RECORD, METRICS, METRICS_LAST, DONE = "config.json", "run.json", "metrics.json", "metrics-last.json", "DONE"
    LOG, PROGRESS, FAILED, SLURM, LOCK = "train_log.jsonl", "progress.json", "failed.json", "slurm.json", ".lock"
    ERROR_LOG, TENSORBOARD, RESERVE = "error.log", "tb", ".reserve"
    LAST, BEST = "last.pt", "best.pt"
    KEEP = {"all": (LAST, BEST), "last": (LAST,), "best": (BEST,), "none": ()}

    FILES = (CONFIG, RECORD, METRICS, METRICS_LAST, DONE, LOG, PROGRESS, FAILED, SLURM, LOCK, ERROR_LOG, RESERVE)
    RESERVE_BYTES = 64 * 1024  # freed to write failed.json and error.log when the disk is full
    FOLDERS = ("ckpt", "predictions", TENSORBOARD)

    def __init__(self, folder: Path, root: Path | None = None) -> None:
        self.folder = Path(folder)
        self.root = Path(root) if root is not None else None

    def __repr__(self) -> str:
        return f"RunFiles({str(self.folder)!r})"

    def check(self) -> None:
        """Refuse (one line naming the path) a run folder that a planted link or special file makes
        unsafe to write into; nothing is changed."""
        chain = [self.folder]
        if self.root is not None:
            try:
                rel = self.folder.relative_to(self.root)
            except ValueError:
                raise UnsafePath(f"{self.folder}: outside the results folder {self.root}") from None
            chain = [self.root / Path(*rel.parts[:k]) for k in range(1, len(rel.parts) + 1)]
        for path in [*chain, *(self.folder / name for name in self.FOLDERS)]:
            if path.is_symlink():
                raise UnsafePath(f"{path}: is a symbolic link; a run folder and its ckpt/, predictions/ must be "
                                 "real folders under the results folder (remove the link)")
            if path.exists() and not path.is_dir():
                raise UnsafePath(f"{path}: is not a folder; remove it")
        if self.root is not None and self.folder.exists():
            real_root, real = os.path.realpath(self.root), os.path.realpath(self.folder)
            if os.path.commonpath([real_root, real]) != real_root:
                raise UnsafePath(f"{self.folder}: resolves to {real}, outside the results folder {real_root}")
        names = [self.folder / n for n in self.FILES] + [self.ckpt / n for n in (self.LAST, self.BEST)]
        if self.ckpt.is_dir():
            names += [p for p in self.ckpt.iterdir() if p.name.endswith(".pt")]
        for path in names:
            if path.is_symlink() or (path.exists() and not path.is_file()):
                raise UnsafePath(f"{path}: is {'a symbolic link' if path.is_symlink() else 'not a regular file'}; "
                                 "the benchmark reads and writes only regular files there (remove it)")

    def _regular(self, path: Path) -> Path:
        """``path`` if it is a regular file (checked without following a link); else a one-line error."""
        problem = not_regular(path)
        if problem == "missing":
            raise BenchError(f"{path}: missing")
        if problem:
            raise UnsafePath(f"{path}: is {problem}; refusing to read it")
        return path

    # ------------------------------------------------------------------ paths
    def path(self, name: str) -> Path:
        return self.folder / name

    def board_folder(self) -> Path | None:
        """Where TensorBoard event files go (none for a run without a folder)."""
        return self.path(self.TENSORBOARD)

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
        self.check()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.check()  # a link planted while the folders were made

    def remove_orphans(self) -> None:
        """What a killed session left half written (temp files and folders); call it under the lock."""
        for sub in (self.folder, self.ckpt, self.predictions):
            remove_orphans(sub, ".*.tmp")
        remove_orphans(self.predictions, ".tmp-*")  # a NIfTI prediction being written

    def clear(self) -> None:
        """Remove what the benchmark wrote, for ``--force``, keeping the lock its caller holds; any other
        file in the folder is someone else's and stays. A link is removed as a link, never followed."""
        for name in self.FILES:
            if name != self.LOCK:
                self.path(name).unlink(missing_ok=True)
        for name in self.FOLDERS:
            path = self.folder / name
            if path.is_symlink():
                path.unlink()
            elif path.is_dir():
                ours = {self.LAST, self.BEST} if name == "ckpt" else None
                for child in path.iterdir():
                    if child.is_symlink() or child.is_file():
                        if ours is None or child.name in ours or child.name.endswith((".pt", ".tmp")) \
                                or ".pt.unusable-" in child.name:
                            child.unlink()
                    elif child.is_dir() and name == RunFiles.TENSORBOARD:
                        shutil.rmtree(child)
                if not any(path.iterdir()):
                    path.rmdir()

    def is_done(self) -> bool:
        """The DONE marker and a readable, valid record (a truncated ``run.json`` means not done: the
        run is evaluated again from its checkpoints, or trained again)."""
        return self.path(self.DONE).is_file() and self.record() is not None

    def record(self) -> dict[str, Any] | None:
        """The run's record when it is a regular file holding a valid record; else None."""
        try:
            return check_record(self.read_if_any(self.RECORD))
        except FieldError:
            return None

    def mark_done(self) -> None:
        write_text(self.path(self.DONE), time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")

    # ------------------------------------------------------------------ JSON files
    def write(self, name: str, obj: Any) -> None:
        write_json(self.path(name), obj)

    def read(self, name: str) -> Any:
        """A JSON file of the folder (a ``BenchError`` naming it when it cannot be read)."""
        return read_json(self._regular(self.path(name)))

    def read_metrics(self, name: str = METRICS) -> dict[str, Any]:
        """``metrics.json`` (or ``metrics-last.json``) checked field by field; a ``BenchError`` naming
        the file when it is missing, unreadable or damaged."""
        try:
            return check_metrics(self.read(name))
        except FieldError as exc:
            raise BenchError(f"{self.path(name)}: damaged ({exc})") from None

    def read_if_any(self, name: str) -> Any:
        """A JSON file, or None when it is missing, unreadable or not a regular file (``bench status``
        reads live folders)."""
        try:
            return read_json(self._regular(self.path(name)))
        except BenchError:
            return None

    def has(self, name: str) -> bool:
        return self.path(name).exists()

    def remove(self, name: str) -> None:
        self.path(name).unlink(missing_ok=True)

    def reserve(self) -> None:
        """Set aside a little disk space for ``note_failure`` (a session that dies of a full disk can
        still say so); call it under the lock when a session starts. Best effort."""
        try:
            with atomic_path(self.path(self.RESERVE)) as tmp:
                tmp.write_bytes(bytes(self.RESERVE_BYTES))
        except OSError:
            pass

    def release_reserve(self) -> None:
        self.path(self.RESERVE).unlink(missing_ok=True)

    def note_failure(self, exc: BaseException) -> None:
        """``failed.json`` with the error's last line (``bench status`` says why a run stopped) and
        ``error.log`` with its whole traceback (what a plugin author needs). On a full disk the
        reserve is freed first and the writes tried again."""
        kind = "" if isinstance(exc, BenchError) else f"{type(exc).__name__}: "
        lines = str(exc).strip().splitlines() or [""]
        where = getattr(exc, "filename", None)
        error = f"{kind}{lines[-1]}" + (f" ({where})" if where and str(where) not in lines[-1] else "")
        for attempt in range(2):
            try:
                self.write(self.FAILED, {"error": error[:500], "traceback": str(self.path(self.ERROR_LOG)),
                                         "host": platform.node(), "pid": os.getpid(),
                                         "when": time.strftime("%Y-%m-%dT%H:%M:%S")})
                write_text(self.path(self.ERROR_LOG), "".join(traceback.format_exception(exc)))
                break
            except OSError:  # the error itself is what matters; the caller reports it
                if attempt == 0:
                    self.release_reserve()

    def error_log(self) -> str | None:
        """The traceback of the last session's failure, if it left one (read within ``ERROR_LOG_LIMIT``:
        one line saying why in its place when it is larger, or not a regular file)."""
        path = self.path(self.ERROR_LOG)
        if not_regular(path) == "missing":
            return None
        try:
            return read_bounded(self._regular(path), ERROR_LOG_LIMIT).decode("utf-8", errors="replace")
        except BenchError as exc:
            return str(exc)

    # ------------------------------------------------------------------ the training log
    def append_log(self, record: dict[str, Any]) -> None:
        try:  # never through a planted link
            fd = os.open(self.path(self.LOG), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK,
                         file_mode())
        except OSError as exc:
            raise UnsafePath(f"{self.path(self.LOG)}: cannot append to it ({exc.strerror}); remove it") from exc
        with os.fdopen(fd, "a") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise UnsafePath(f"{self.path(self.LOG)}: is not a regular file; remove it")
            fh.write(json.dumps(record) + "\n")

    def read_log(self) -> list[dict[str, Any]]:
        """The log's records; a torn or foreign line (a killed writer) is skipped, and the file is read
        streaming within bounds (``sslbench.base.log_reader``: a sparse or huge log never fills memory)."""
        from sslbench.base.log_reader import read_log

        return read_log(self.path(self.LOG))

    def trim_log(self, keep: Callable[[dict[str, Any]], bool]) -> None:
        """Keep the log records ``keep`` accepts (a resumed run drops those written after its checkpoint).
        The log is read as ``read_log`` reads it (streaming, within ``sslbench.base.log_reader``'s
        bounds: a torn, foreign or over-long line is dropped) and each kept record written back as
        ``append_log`` wrote it."""
        from sslbench.base.log_reader import iter_log

        path = self.path(self.LOG)
        if not path.exists() and not path.is_symlink():
            return
        self._regular(path)
        kept = []
        for rec in iter_log(path):
            try:
                ok = keep(rec)
            except (ValueError, KeyError, TypeError):
                continue  # a foreign record (a stage this run does not have, an iteration that is no number)
            if ok:
                kept.append(json.dumps(rec))
        with atomic_path(path) as tmp:
            tmp.write_text("".join(f"{line}\n" for line in kept))

    # ------------------------------------------------------------------ checkpoints
    def has_checkpoint(self, name: str) -> bool:
        return (self.ckpt / name).exists() or (self.ckpt / name).is_symlink()

    def save_checkpoint(self, name: str, obj: Any) -> None:
        with atomic_path(self.ckpt / name) as tmp:
            torch.save(obj, tmp)

    def load_checkpoint(self, name: str, device: torch.device) -> Any:
        """A checkpoint's content; ``weights_only``: a checkpoint is data, a crafted pickle never runs here.
        Raises whatever the load raises (the caller decides what an unusable file means)."""
        return torch.load(self._regular(self.ckpt / name), map_location=device, weights_only=True)

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
