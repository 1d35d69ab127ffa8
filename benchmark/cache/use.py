"""A prepared dataset in use: what a run reads stays what it started with.

A run reads its dataset for its whole life (training slices at set-up, validation volumes while it
trains, evaluation volumes at the end), so it holds a shared lock on it from set-up to its record
(``DatasetUse``); preparing the dataset again (``bench prepare NAME --force``, or another raw folder
over it) takes the same lock exclusively (``replacing``) and is refused at once, naming the dataset
and the runs that use it, while any run holds it. A run that starts while a preparation holds the
lock waits for it (saying so) and then reads the new data from the start.

Each prepared dataset has a fingerprint (``PreparedDataset.fingerprint``): the run records it
(``config.json`` ``prepared``, ``run.json`` ``data``), and ``DatasetUse.check`` compares it with the
cache's before every validation and before and after evaluation, so a folder swapped by hand (or on a
read-only cache, where no lock can be taken) fails the run naming the dataset, never a record that
mixes two datasets.

The lock is ``<cache>/.<name>@in-use`` (``@`` is in no dataset name, so it never names another
dataset's file), with each user's own ``.<name>@in-use.<host>-<pid>-<hex>.user`` beside it; the last
user removes them, so a dataset nobody uses leaves nothing behind.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from sslbench.base.errors import DataError
from sslbench.base.locks import FolderLock, SharedLock, remove_dead_users, users
from sslbench.cache.reader import PreparedDataset, current_fingerprint


def use_lock_path(folder: Path) -> Path:
    """The lock file of the prepared dataset in ``folder`` (beside it, in the cache)."""
    return folder.parent / f".{folder.name}@in-use"


def _lockable(path: Path) -> bool:
    """Whether ``path`` can be locked: it exists, or its folder can be written (a read-only cache that
    never held the lock cannot be re-prepared by this user either)."""
    return path.exists() or os.access(path.parent, os.W_OK)


class DatasetUse:
    """``with DatasetUse(folder, who, log) as use:``: the dataset in ``folder`` opened under its shared
    lock (``use.dataset``), with the fingerprint it had then (``use.fingerprint``); ``who`` names the
    user to a refused preparation (a run's label). ``lock=False``: opened without the lock (the
    fingerprint checks still apply)."""

    def __init__(self, folder: Path, who: str, log: Callable[[str], None] = print, lock: bool = True) -> None:
        self.folder = Path(folder)
        self.name = self.folder.name
        self.who = who
        self.log = log
        self.want_lock = lock
        self.lock: SharedLock | None = None
        self.dataset: PreparedDataset | None = None
        self.fingerprint = ""

    def __enter__(self) -> DatasetUse:
        return self.open()

    def open(self) -> DatasetUse:
        """Take the lock (waiting while the dataset is being prepared again) and open the dataset."""
        path = use_lock_path(self.folder)
        if self.want_lock and _lockable(path):
            lock = SharedLock(path, self.who)
            if not lock.acquire(wait=False):
                self.log(f"{self.name}: being prepared again ({lock.holder}); waiting for it to finish")
                lock.acquire(wait=True)
            self.lock = lock
        try:
            self.dataset = PreparedDataset(self.folder)  # opened under the lock: what the run reads throughout
        except BaseException:
            self.release()
            raise
        self.fingerprint = self.dataset.fingerprint
        return self

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    @property
    def identity(self) -> dict[str, str]:
        """What a run records of its data: ``{"name", "fingerprint"}``."""
        return {"name": self.name, "fingerprint": self.fingerprint}

    def check(self, when: str) -> None:
        """Fail, naming the dataset, when the cache's copy is no longer the one this run started with
        (``when``: "before evaluation", ...)."""
        try:
            now = current_fingerprint(self.folder)
        except DataError as exc:
            raise DataError(f"{self.name}: the prepared dataset this run started with is gone {when} ({exc})") from None
        if now != self.fingerprint:
            raise DataError(f"{self.name}: the prepared dataset changed under this run {when} (fingerprint "
                            f"{self.fingerprint} -> {now}: prepared again or its folder replaced); its results would "
                            "mix two datasets: run it again (bench run --force) on the data you mean")


def data_changed(stored: object, fingerprint: str) -> str:
    """Why a run's ``config.json`` (``stored``) says it started on other data than ``fingerprint``
    ("" when it says the same, or nothing: a run begun before fingerprints were recorded)."""
    prepared = stored.get("prepared") if isinstance(stored, dict) else None
    old = prepared.get("fingerprint") if isinstance(prepared, dict) else None
    if not isinstance(old, str) or not old or old == fingerprint:
        return ""
    return f"fingerprint {old[:16]!r} when it started, {fingerprint} now"


@contextmanager
def replacing(folder: Path) -> Iterator[None]:
    """Held while the dataset in ``folder`` is built and moved into place: refused at once, naming the
    dataset and its users, while a run holds it (waiting could take days; the refusal says who)."""
    path = use_lock_path(folder)
    lock = FolderLock(path, f"bench prepare {folder.name}")
    if not lock.acquire(wait=False):
        who = users(path) or ["a process that did not say which run it is"]
        raise DataError(f"{folder.name}: in use by {len(who)} run(s) ({'; '.join(who[:3])}"
                        f"{'; ...' if len(who) > 3 else ''}); preparing it again would change the data under "
                        "them: wait until they end (bench status), or prepare it under another name")
    try:
        remove_dead_users(path)  # left by runs that were killed; no run holds the lock now
        yield
    finally:
        lock.release()
