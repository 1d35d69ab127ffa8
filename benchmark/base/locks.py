"""Exclusive locks on folders, so two processes never train one run or prepare one dataset at once.

A lock is a small file holding who has it (host, pid, start time) plus an advisory ``flock`` on it.
The kernel drops the ``flock`` when its process dies, however it dies, so a lock is never left held
by a dead process; the file's text only says who holds it (for "running elsewhere") and, when we take
a lock whose file still names someone, that they died without letting go (a stale lock, reported as
a warning). A clean release removes the file while still holding it; a process that was waiting on
the removed file sees that the path no longer names the file it locked and tries again, so two
processes never hold "the same" lock through different files. Linux NFS clients map ``flock`` to POSIX locks, which
the NFS lock manager shares between hosts, so the same code guards a cluster's shared results folder.

``SharedLock`` is the reader's side of a ``FolderLock`` path: any number of processes hold it at once
(``LOCK_SH``), none while a ``FolderLock`` on the same path is held, and the other way round. Its
file is never removed by a reader (others may hold it); each reader names itself in a file of its
own beside it (``<lock>.<host>-<pid>-<hex>.user``, an exclusive ``FolderLock``), so whoever is refused
learns who uses it (``users``), and a reader that died is told from a live one by ``probe``.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from sslbench.base.atomic import file_mode
from sslbench.base.errors import LockError


def _printable(text: object, most: int = 200) -> str:
    """``text`` without control characters, at most ``most`` characters: a lock file is someone
    else's input, and what it says reaches a terminal."""
    return "".join(ch for ch in str(text) if ch.isprintable())[:most]


def _describe(text: str) -> str:
    try:
        info = json.loads(text)
        what = f" ({_printable(info['what'])})" if isinstance(info, dict) and info.get("what") else ""
        return f"pid {info['pid']} on {info['host']} since {info['since']}{what}"
    except (ValueError, KeyError, TypeError, RecursionError):
        return "an unknown process"


def _flock_retrying(fd: int, wait: bool, kind: int = fcntl.LOCK_EX) -> None:
    """Take the lock (``kind``: exclusive unless told); without waiting, try a few times over ~50 ms
    first, so that ``probe`` (``bench status``), which holds a lock for an instant, never makes a run
    look busy."""
    if wait:
        fcntl.flock(fd, kind)
        return
    for attempt in range(5):
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
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


class _Held:
    """``with lock:`` waits for the lock and lets it go at the end (both lock kinds)."""

    def acquire(self, wait: bool = True) -> bool:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.acquire(wait=True)
        return self

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


class FolderLock(_Held):
    """``with FolderLock(path) as lock:`` waits for the lock; ``lock.acquire(wait=False)`` returns
    False at once when another live process holds it (``lock.holder`` says who). ``note``: what the
    holder does, shown to whoever is refused (``pid 12 on host since ... (note)``)."""

    def __init__(self, path: Path, note: str = "") -> None:
        self.path = Path(path)
        self.note = note
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
        if self.note:
            me["what"] = _printable(self.note)
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



def _open_lock_file(path: Path) -> int:
    """An fd on the lock file ``path``, created if missing; never through a link, never blocking on a
    FIFO. A file that exists in a folder this process may not write (a read-only cache) is opened
    read-only: ``flock`` needs no write access."""
    flags = os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | flags, file_mode())
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise LockError(f"{path}: cannot be used as a lock file ({exc.strerror}; a symbolic link or a special "
                            "file?); remove it") from exc
        try:
            fd = os.open(path, os.O_RDONLY | flags)
        except OSError as again:
            raise LockError(f"{path}: cannot be used as a lock file ({again.strerror})") from again
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise LockError(f"{path}: is not a regular file; remove it")
    return fd


class SharedLock(_Held):
    """A shared lock on ``path`` (see the module docstring): ``with SharedLock(path, note) as lock:``
    waits while a ``FolderLock`` on ``path`` is held; ``acquire(wait=False)`` returns False at once
    then (``holder`` says who has it). ``note`` says what this holder does, for ``users``."""

    def __init__(self, path: Path, note: str = "") -> None:
        self.path = Path(path)
        self.note = note
        self.fd: int | None = None
        self.holder = ""                      # who held the exclusive lock when acquire(wait=False) failed
        self.me: FolderLock | None = None      # this holder's own file, naming it to others

    def acquire(self, wait: bool = True) -> bool:
        while True:
            fd = _open_lock_file(self.path)
            try:
                _flock_retrying(fd, wait, fcntl.LOCK_SH)
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
            os.close(fd)  # an exclusive holder removed it as we waited: lock the new file instead
        self.fd = fd
        if os.access(self.path.parent, os.W_OK):  # a read-only folder: held, but nobody learns by whom
            import secrets

            me = self.path.with_name(f"{self.path.name}.{socket.gethostname()}-{os.getpid()}-"
                                     f"{secrets.token_hex(4)}.user")
            self.me = FolderLock(me, self.note)
            try:
                self.me.acquire(wait=False)
            except (OSError, LockError):  # naming itself is a courtesy; holding the lock is what counts
                self.me = None
        return True

    def release(self) -> None:
        """Let go; the last holder removes the file and the files of readers that were killed (while
        holding it exclusively, as ``FolderLock`` does), so a lock nobody holds leaves nothing behind."""
        if self.me is not None:  # unnamed first, then unlocked: a listed user always holds the lock
            self.me.release()
            self.me = None
        if self.fd is None:
            return
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # only when no one else holds it
            if os.stat(self.path).st_ino == os.fstat(self.fd).st_ino:  # still the file we hold
                remove_dead_users(self.path)  # no reader is alive now: what killed ones left goes too
                self.path.unlink()
        except OSError:
            pass  # others hold it (or a read-only folder): the file stays for them
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None



def users(path: Path) -> list[str]:
    """Who holds the shared lock ``path`` now (each live reader's description; a reader that died
    without letting go is not listed)."""
    found = []
    for note in sorted(path.parent.glob(f"{path.name}.*.user")) if path.parent.is_dir() else []:
        state, who = probe(note)
        if state == "held":
            found.append(who)
    return found


def remove_dead_users(path: Path) -> None:
    """Remove the files of readers that died holding ``path`` (call it while holding its exclusive
    ``FolderLock``: then no reader is alive, and only files no live process holds are removed)."""
    for note in path.parent.glob(f"{path.name}.*.user") if path.parent.is_dir() else []:
        if probe(note)[0] != "held" and not note.is_symlink():
            note.unlink(missing_ok=True)
