"""Train / val / test assignment of cases for datasets without official lists."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sslbench.errors import DataError

SPLIT_SEED = 12345


def seeded_split(case_ids: list[str], fractions: tuple[float, float] = (0.1, 0.2),
                 seed: int = SPLIT_SEED) -> dict[str, str]:
    """case -> split: a fixed seeded permutation gives val (10 %) and test (20 %), at least one case
    each, the rest train. The same ids always give the same split (sorted first)."""
    ids = sorted(case_ids)
    if len(ids) < 3:
        raise DataError(f"need at least 3 cases for a train/val/test split, found {len(ids)}")
    order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    n_val = max(1, round(fractions[0] * len(ids)))
    n_test = max(1, round(fractions[1] * len(ids)))
    split = {c: "val" for c in order[:n_val]}
    split.update({c: "test" for c in order[n_val:n_val + n_test]})
    split.update({c: "train" for c in order[n_val + n_test:]})
    return split


def read_split_file(path: Path, case_ids: list[str]) -> dict[str, str]:
    """A user's ``splits.json``: {"train": [...], "val": [...], "test": [...]} over the case ids."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable split file ({exc})") from exc
    out: dict[str, str] = {}
    for split in ("train", "val", "test"):
        for cid in data.get(split, []):
            if cid not in case_ids:
                raise DataError(f"{path}: case '{cid}' in '{split}' has no image")
            if cid in out:
                raise DataError(f"{path}: case '{cid}' is in both '{out[cid]}' and '{split}'")
            out[cid] = split
    return out
