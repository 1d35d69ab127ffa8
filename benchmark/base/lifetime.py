"""Worker processes that die with the process that owns them.

A worker pool's processes outlive a parent killed with ``SIGKILL`` (``kill -9``, the OOM killer): they
go on training or wait forever on a queue nobody writes to, each holding its memory. A worker calls
:func:`die_with` first thing; afterwards it is killed when its owner dies, however the owner dies:

* its owner is its parent (spawned workers): on Linux the kernel sends it ``SIGKILL`` when the parent
  exits (``prctl(PR_SET_PDEATHSIG)``); elsewhere a daemon thread checks every second that the parent
  is still its parent;
* its owner is not its parent (forkserver workers, whose parent is the fork server): a daemon thread
  waits on a pidfd of the owner (Linux), else polls the owner's pid every second.

Standard library only: forkserver workers import this module without the trainer's imports.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die() -> None:
    """End this process at once, as the kernel's parent-death signal would (no cleanup: the owner is
    gone, nobody reads what a clean exit would flush)."""
    os.kill(os.getpid(), signal.SIGKILL)
    os._exit(1)  # pragma: no cover - not reached


def _set_parent_death_signal() -> bool:
    """Ask the kernel for ``SIGKILL`` when this process's parent exits; False where that is not
    available (not Linux, no libc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's (a reused pid): cannot be ours, but exists
        return True
    return True


def _watch_parent(parent: int, poll_s: float) -> None:
    """The portable fallback: when this process is re-parented (its parent died), end it."""
    while True:
        time.sleep(poll_s)
        if os.getppid() != parent:
            _die()


def _wait_pidfd(fd: int) -> None:
    """Block until the process behind pidfd ``fd`` exits (the fd turns readable), then end this one."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while not poller.poll():
        pass
    _die()


def _poll_owner(owner: int, poll_s: float) -> None:
    """The portable fallback for an owner that is not the parent: poll its pid."""
    while _pid_alive(owner):
        time.sleep(poll_s)
    _die()


def die_with(owner: int, poll_s: float = 1.0) -> str:
    """Make this process die when process ``owner`` dies; call it first thing in a worker (a pool's
    initializer). Returns how it watches (``"pdeathsig"``, ``"poll-parent"``, ``"pidfd"`` /
    ``"poll-owner"``; for tests and logs). When the owner is already gone, this process ends here.

    The parent-death signal fires when the thread that created this process exits, so the owner must
    create its pool from a thread that lives as long as the pool (the main thread, in sslbench)."""
    parent = os.getppid()
    if parent == owner:
        if _set_parent_death_signal():
            if os.getppid() != owner:  # the owner died before the signal was armed: nobody would send it
                _die()
            return "pdeathsig"
        threading.Thread(target=_watch_parent, args=(owner, poll_s), name="sslbench-parent-watch",
                         daemon=True).start()
        return "poll-parent"
    _set_parent_death_signal()  # also end with the intermediate parent (the fork server), if it dies
    pidfd_open = getattr(os, "pidfd_open", None)
    fd = -1
    if pidfd_open is not None:
        try:
            fd = pidfd_open(owner)
        except ProcessLookupError:  # already gone
            _die()
        except OSError:  # an old kernel (ENOSYS) or a sandbox that forbids it: poll instead
            fd = -1
    if fd >= 0:
        threading.Thread(target=_wait_pidfd, args=(fd,), name="sslbench-owner-watch", daemon=True).start()
        return "pidfd"
    if not _pid_alive(owner):
        _die()
    threading.Thread(target=_poll_owner, args=(owner, poll_s), name="sslbench-owner-watch", daemon=True).start()
    return "poll-owner"
