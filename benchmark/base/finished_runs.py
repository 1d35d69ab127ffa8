"""Every finished run under a results folder, as its checked record."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sslbench.base.errors import BenchError
from sslbench.base.fields import FieldError
from sslbench.base.records import check_record
from sslbench.base.run_files import RunFiles


def iter_records(root: Path, warn: Callable[[str], None] | None = None) -> Iterator[dict[str, Any]]:
    """Every completed run record under ``root``; an unreadable one is skipped with a warning (one
    damaged file must not hide every other result)."""
    say = warn or (lambda message: logging.getLogger("sslbench").warning(message))
    for marker in sorted(root.rglob(RunFiles.DONE)):
        files = RunFiles(marker.parent)
        try:
            record = check_record(files.read(RunFiles.RECORD))
        except BenchError as exc:
            say(f"skipping {exc}")
            continue
        except FieldError as exc:
            say(f"skipping {files.path(RunFiles.RECORD)}: damaged record ({exc})")
            continue
        record["_dir"] = str(marker.parent)
        yield record
