"""Run folders and records: one folder per run, resolved config beside it, record written atomically,
``DONE`` written last.

    <results>/<dataset>/<profile>/<method>/ratio-<r>/seed-<s>/
        config.json       resolved configuration and its hash (written before training)
        train_log.jsonl   losses every log_every iterations and validation scores
        ckpt/last.pt      resumable checkpoint; ckpt/best.pt best validation weights
        metrics.json      per case, per class metrics; per-class and foreground means; policy
        run.json          the record: summary, selection, timing, environment, code version
        DONE              marker: the run is complete
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import BenchError


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


def iter_records(root: Path) -> Iterator[dict[str, Any]]:
    """Every completed run record under ``root``."""
    for marker in sorted(root.rglob("DONE")):
        record = read_json(marker.parent / "run.json")
        record["_dir"] = str(marker.parent)
        yield record
