"""Run folders and records: one folder per run, resolved config beside it, record written atomically,
``DONE`` written last.

    <results>/<dataset>/<profile>/<method>/ratio-<r>/seed-<s>/
        config.json       resolved configuration and its hash (written before training)
        train_log.jsonl   losses every log_every iterations and validation scores
        ckpt/last.pt      resumable checkpoint; ckpt/best.pt best validation weights
        metrics.json      per case, per class metrics; per-class and foreground means; policy
        run.json          the record: summary, selection, timing, environment, code version
        DONE              marker: the run is complete
        progress.json     while training: stage, iteration, it/s, host (read by ``bench status``)
        failed.json       the last session's error (cleared when a session starts the run again)
        slurm.json        the SLURM job given the run (``--executor slurm``)
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sslbench.base.errors import BenchError


def format_ratio(ratio: float) -> str:
    return f"{ratio:g}"


def run_dir(root: Path, dataset: str, profile: str, method: str, ratio: float, seed: int) -> Path:
    return root / dataset / profile / method / f"ratio-{format_ratio(ratio)}" / f"seed-{seed}"


def is_done(folder: Path) -> bool:
    return (folder / "DONE").exists() and (folder / "run.json").exists()


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BenchError(f"{path}: unreadable ({exc})") from exc


def iter_records(root: Path, warn: Callable[[str], None] | None = None) -> Iterator[dict[str, Any]]:
    """Every completed run record under ``root``; an unreadable one is skipped with a warning (one
    damaged file must not hide every other result)."""
    say = warn or (lambda message: logging.getLogger("sslbench").warning(message))
    for marker in sorted(root.rglob("DONE")):
        try:
            record = read_json(marker.parent / "run.json")
            if not isinstance(record, dict) or "summary" not in record:
                raise BenchError(f"{marker.parent / 'run.json'}: not a run record")
        except BenchError as exc:
            say(f"skipping {exc}")
            continue
        record["_dir"] = str(marker.parent)
        yield record
