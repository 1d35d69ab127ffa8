"""Reading a run's training log (``train_log.jsonl``) in bounded memory.

A log is a results folder's file, so someone else's input: a sparse or garbage file of gigabytes
with no newline would otherwise be read whole and split into one giant line (a 1.5 GB sparse log
took 3.4 GB to plot). ``iter_log`` reads it in chunks, never holds more than one line of at most
``max_line`` bytes, skips longer lines (and the holes of a sparse file, without reading them),
stops after ``max_bytes`` of data or ``max_lines`` records, and says once what it skipped or left
unread. Only a regular file is read (never through a link, never a FIFO); a torn or foreign line
(a killed writer) is skipped, as ``RunFiles.read_log`` does, and so is a record holding anything
but scalars (the trainer writes flat objects of numbers and strings): with the keys shared between
records, what is kept is at most a few times the data read (~3x for a real log, ~6x for one made
of the most keys a line can hold), so the records of a log never exceed a few hundred MB.
"""
from __future__ import annotations

import errno
import json
import os
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["MAX_BYTES", "MAX_LINE", "MAX_LINES", "iter_log", "read_log"]

MAX_LINE = 64 * 1024          # a logged record is well under 1 KB; 64 KiB leaves room for many keys
MAX_LINES = 200_000           # 30,000 iterations logged every 10 with validation: ~4,000 lines
MAX_BYTES = 64 * 1024 * 1024  # of data read (holes of a sparse file are skipped, not counted)
MAX_NAMES = 4096              # keys and string values shared between records (a log holds tens)
CHUNK = 1 << 20
_SCALARS = (str, int, float, bool, type(None))


def _stderr_warning(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _next_data(fd: int, at: int) -> int | None:
    """Where the next data after ``at`` starts (a sparse file's hole is skipped without being read);
    ``at`` when the system cannot tell; None when only a hole is left."""
    if not hasattr(os, "SEEK_DATA"):
        return at
    try:
        return os.lseek(fd, at, os.SEEK_DATA)
    except OSError as exc:  # ENXIO: no data after ``at`` (a trailing hole, or the end); else unsupported
        return None if exc.errno == errno.ENXIO else at


def iter_log(path: Path, *, max_line: int = MAX_LINE, max_lines: int = MAX_LINES, max_bytes: int = MAX_BYTES,
             warn: Callable[[str], None] | None = None) -> Iterator[dict[str, Any]]:
    """The log's records (JSON objects, one a line), read within the bounds above; ``warn`` (default:
    a ``warning:`` line on stderr) is told once per kind of bound that cut something."""
    say = warn or _stderr_warning
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return  # missing, a link or unreadable: no log (the callers' own rule)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return
        line = bytearray()
        names: dict[str, str] = {}
        skipping = False   # in a line already longer than max_line: drop bytes until its newline
        long_lines = yielded = 0
        read = at = 0
        cut = ""
        while True:
            start = _next_data(fd, at)
            if start is None:
                if os.fstat(fd).st_size > at and (line or skipping):  # the last line ends in a hole
                    skipping, line = True, bytearray()
                break
            if start > at:  # a hole: the line it falls in is not a record
                skipping, line = True, bytearray()
                at = start
            if read >= max_bytes:
                cut = f"read only its first {max_bytes:,} bytes of data"
                break
            block = os.pread(fd, min(CHUNK, max_bytes - read), at)
            if not block:
                break
            read += len(block)
            at += len(block)
            pos = 0
            while pos < len(block):
                end = block.find(b"\n", pos)
                piece = block[pos:] if end < 0 else block[pos:end]
                if not skipping:
                    if len(line) + len(piece) > max_line:
                        skipping, line = True, bytearray()
                    else:
                        line += piece
                if end < 0:
                    break
                pos = end + 1
                if skipping:
                    long_lines += 1
                    skipping = False
                    continue
                record = _parse(bytes(line), names)
                line = bytearray()
                if record is not None:
                    yield record
                    yielded += 1
                    if yielded >= max_lines:
                        cut = f"read only its first {max_lines:,} records"
                        break
            if cut:
                break
        if not cut and not skipping and line:
            record = _parse(bytes(line), names)  # a last line without its newline (a killed writer's, or complete)
            if record is not None:
                yield record
        if skipping:
            long_lines += 1
        if long_lines:
            say(f"{path}: skipped {long_lines} line(s) longer than {max_line:,} bytes or holding a hole of a sparse "
                "file (not a training log's)")
        if cut:
            say(f"{path}: {cut}; the rest is not shown")
    finally:
        os.close(fd)


def _parse(line: bytes, names: dict[str, str]) -> dict[str, Any] | None:
    """A line's record: a JSON object of scalar values (a number, a string, true, false, null), as
    every line the trainer writes is; else None (a torn line, a foreign one, a nested value). Keys and
    string values are shared through ``names`` (at most ``MAX_NAMES`` of them): thousands of records
    hold the same few keys, and a parsed record is otherwise several times its line's size."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict):
        return None
    out = {}
    for key, value in record.items():
        if not isinstance(value, _SCALARS):
            return None
        if isinstance(value, str):
            value = _shared(value, names)
        out[_shared(key, names)] = value
    return out


def _shared(text: str, names: dict[str, str]) -> str:
    """``text`` as the one copy ``names`` holds (added while there is room)."""
    known = names.get(text)
    if known is not None:
        return known
    if len(names) < MAX_NAMES and len(text) <= 100:
        names[text] = text
    return text


def read_log(path: Path, **bounds: Any) -> list[dict[str, Any]]:
    """``list(iter_log(path, **bounds))``: what ``RunFiles.read_log`` returns, within the bounds."""
    return list(iter_log(path, **bounds))
