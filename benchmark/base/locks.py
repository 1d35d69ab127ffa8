"""Exclusive locks on folders, so two processes never train one run or prepare one dataset at once.

A lock is a small file holding who has it (host, pid, start time) plus an advisory ``flock`` on it.
The kernel drops the ``flock`` when its process dies, however it dies, so a lock is never left held
by a dead process; the file's text only says who holds it (for "running elsewhere") and, when we take
a lock whose file still names someone, that they died without letting go (a stale lock, reported as
a warning). A clean release removes the file while still holding it; a process that was waiting on
the removed file sees that the path no longer names the file it locked and tries again, so two
processes never hold "the same" lock through different files. Linux NFS clients map ``flock`` to POSIX locks, which
the NFS lock manager shares between hosts, so the same code guards a cluster's shared results folder.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import stat
import time
from pathlib import Path
from types import TracebackType

from sslbench.base.atomic import file_mode
from sslbench.base.errors import LockError


def _describe(text: str) -> str:
    try:
        info = json.loads(text)
        return f"pid {info['pid']} on {info['host']} since {info['since']}"
    except (ValueError, KeyError, TypeError, RecursionError):
        return "an unknown process"


def _flock_retrying(fd: int, wait: bool) -> None:
    """Take the exclusive lock; without waiting, try a few times over ~50 ms first, so that
    ``probe`` (``bench status``), which holds a lock for an instant, never makes a run look busy."""
    if wait:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    for attempt in range(5):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if attempt == 4:
                raise
            time.sleep(0.01 * (attempt + 1))


def probe(path: Path) -> tuple[str, str]:
    """Whether a lock file is ``"held"`` by a live process, ``"stale"`` (its holder died without letting
    go) or ``"free"`` (no file), and who holds or held it. Reads only: a stale file stays for the next
    run to take over (and report)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return "free", ""
    except OSError:  # a symbolic link or special file planted as the lock: not a lock of ours
        return "free", ""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a folder or FIFO planted as the lock: not a lock of ours
            return "free", ""
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return "held", _describe(text)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return ("stale", _describe(text)) if text else ("free", "")
    finally:
        os.close(fd)


class FolderLock:
    """``with FolderLock(path) as lock:`` waits for the lock; ``lock.acquire(wait=False)`` returns
    False at once when another live process holds it (``lock.holder`` says who)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.fd: int | None = None
        self.holder = ""        # who held it when acquire(wait=False) failed
        self.stale = ""         # who held it and died, when we took it over

    def acquire(self, wait: bool = True) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            try:  # never through a planted link, never blocking on a planted FIFO
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, file_mode())
            except OSError as exc:
                raise LockError(f"{self.path}: cannot be used as a lock file ({exc.strerror}; a symbolic link "
                                "or a special file?); remove it") from exc
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise LockError(f"{self.path}: is not a regular file; remove it")
            try:
                _flock_retrying(fd, wait)
            except BlockingIOError:
                self.holder = _describe(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
                os.close(fd)
                return False
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder removed it as we waited: lock the new file instead
        previous = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        self.stale = _describe(previous) if previous else ""
        os.ftruncate(fd, 0)
        me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
        os.pwrite(fd, json.dumps(me).encode(), 0)
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # still ours while we hold the flock
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> FolderLock:
        self.acquire(wait=True)
        return self

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
