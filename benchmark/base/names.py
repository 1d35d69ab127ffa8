"""Names that become paths: dataset, profile and case names are checked before they touch the disk.

A name typed by a user (``bench prepare NAME``, ``--dataset``, ``--profile``) or read from a file
(a case id in an ACDC ``*.list``) ends up as a folder or file name under the cache or the results
folder. Without a check, ``..``, ``""``, ``/abs/path`` or ``sub/dir`` would point outside them, so
``prepare`` could replace a folder it does not own. One rule for every user-chosen folder name, and
one for case ids (which may come from other people's file names, so they allow more characters).
"""
from __future__ import annotations

import re

from sslbench.base.errors import BenchError, DataError

# the tidy export's tag of an untagged run: an explicit value (an empty CSV cell reads back as NaN in
# pandas and drops out of a groupby) that no user tag can be (``run.specs.slug`` refuses it)
NO_TAG = "(none)"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_NAME = 100


def check_name(name: str, what: str = "dataset") -> str:
    """A dataset or profile name: a letter or digit, then letters, digits, ``.``, ``_`` or ``-``
    (so never ``.``, ``..``, empty, absolute or with a separator)."""
    if not isinstance(name, str) or not NAME.fullmatch(name) or len(name) > MAX_NAME:
        raise BenchError(f"{what} name {name!r} is not allowed: use letters, digits, '.', '_' and '-', "
                         f"starting with a letter or digit (at most {MAX_NAME} characters)")
    return name


def check_case_id(case_id: str, where: str) -> str:
    """A case id that becomes a file name under the cache: no path separators, no ``..``, not empty,
    no leading ``.`` (hidden files and ``.``/``..``), no control characters."""
    bad = (not isinstance(case_id, str) or not case_id or case_id.startswith(".") or "/" in case_id
           or "\\" in case_id or ".." in case_id or any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in case_id)
           or len(case_id) > 200)  # C0, DEL and C1 controls: refused here, not after every volume is read
    if bad:
        raise DataError(f"{where}: case id {case_id!r} is not a plain file name "
                        "(no '/', '\\', '..', leading '.' or control characters)")
    return case_id
