"""Text for a terminal is inert: control characters are shown, never acted on.

Strings from disk (a ``failed.json`` error, a lock's host field, a folder or case name, a dataset's
labels) and from users (tags) reach ``bench``'s output. An ESC in them could clear the screen, set
the window title or write the clipboard (OSC 52); a carriage return could overwrite a line. The CLI
writes through ``PrintableStream`` (installed once, in ``sslbench.cli.app.main``), so every C0 and C1
control character except newline and tab, DEL and ESC included, is written as a visible ``\\xNN``
escape, whatever code path printed it. Progress bars, which move the cursor on purpose, write to the
raw stream (``raw_stream``) with descriptions passed through ``printable``.
"""
from __future__ import annotations

import io
import re
from typing import Any, TextIO

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 but tab and newline, DEL, C1
# shown escaped too: the bidirectional overrides and isolates, which reorder what a terminal shows
# ("evil\u202egnp.exe" displays as "evilexe.png")
SHOWN_ESCAPED = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with every control character but newline and tab, and every bidirectional control, as
    a visible escape (``\\xNN``, ``\\uNNNN``)."""
    return SHOWN_ESCAPED.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                             else f"\\u{ord(m.group()):04x}", text)


def one_line(text: str) -> str:
    """``printable`` for a field shown on one line (a table cell, a status detail): newlines and tabs
    become spaces too."""
    return printable(text.replace("\r\n", " ").replace("\n", " ").replace("\t", " "))


class PrintableStream(io.TextIOBase):
    """A text stream that writes ``printable(s)`` to the stream it wraps."""

    def __init__(self, raw: TextIO) -> None:
        super().__init__()
        self.raw = raw

    def write(self, s: str) -> int:
        if not isinstance(s, str):  # click probes a stream with bytes to tell text from binary
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        self.raw.write(printable(s))
        return len(s)

    def flush(self) -> None:
        self.raw.flush()

    def isatty(self) -> bool:
        return self.raw.isatty()

    def fileno(self) -> int:
        return self.raw.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> Any:  # type: ignore[override]
        return getattr(self.raw, "encoding", "utf-8")

    @property
    def errors(self) -> Any:  # type: ignore[override]
        return getattr(self.raw, "errors", "strict")


def raw_stream(stream: TextIO) -> TextIO:
    """The stream under a ``PrintableStream`` (for a progress bar's own cursor control)."""
    return stream.raw if isinstance(stream, PrintableStream) else stream


def run_bar(total: int, desc: str, enabled: bool, **options: Any) -> Any:
    """A run's transient progress bar on stderr (a training stage, an evaluation pass): redrawn five
    times a second on a terminal, every 30 s into a log file, the description made one printable line."""
    import sys

    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, dynamic_ncols=True, leave=False, desc=one_line(desc),
                mininterval=0.2 if sys.stderr.isatty() else 30.0, file=raw_stream(sys.stderr), **options)
