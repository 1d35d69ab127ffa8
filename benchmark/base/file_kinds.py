"""What a path is, without following a link: the one check behind "reads see regular files only" for
run folders and prepared caches (a FIFO would hang a read, a link could point anywhere)."""
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
