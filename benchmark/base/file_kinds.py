"""What a path is, without following a link: the one check behind "reads see regular files only" for
run folders and prepared caches (a FIFO would hang a read, a link could point anywhere), and what a path
is in words, for an error line that says it (``kind_of``)."""
from __future__ import annotations

import os
import stat
from pathlib import Path


def not_regular(path: Path) -> str | None:
    """None when ``path`` is a regular file (a link is not followed); else what it is instead:
    ``"missing"``, ``"a symbolic link"`` or ``"not a regular file"`` (a FIFO, device, socket, folder)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return "missing"
    if stat.S_ISREG(mode):
        return None
    return "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"


def kind_of(path: Path, follow: bool = True) -> str:
    """What ``path`` is, in words for an error line (``"a folder"``, ``"a regular file"``, ``"a FIFO"``,
    ``"a socket"``, ``"a character device"``, ``"a block device"``, ``"a symbolic link"``, ``"a
    symbolic link to nothing"`` or ``"missing"``): a FIFO given where a folder belongs is named as
    one, not reported missing. ``follow``: describe what a link points to (a link to a folder is one)."""
    try:
        mode = (os.stat if follow else os.lstat)(path).st_mode
    except FileNotFoundError:
        return "a symbolic link to nothing" if os.path.islink(path) else "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISREG, "a regular file"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "not a file or folder"
