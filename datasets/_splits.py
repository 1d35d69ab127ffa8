"""Train / val / test assignment of cases for datasets without official lists."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sslbench.base.errors import DataError
from sslbench.io.readers import regular_input

if TYPE_CHECKING:
    from sslbench.data import CacheWriter

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
    regular_input(path)  # a FIFO would hang, a folder is not a split
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise DataError(f"{path}: unreadable split file ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(data, dict) or set(data) - {"train", "val", "test"}:
        raise DataError(f"{path}: expected an object {{\"train\": [...], \"val\": [...], \"test\": [...]}}")
    out: dict[str, str] = {}
    for split in ("train", "val", "test"):
        ids = data.get(split, [])
        if not isinstance(ids, list) or not all(isinstance(c, str) for c in ids):
            raise DataError(f"{path}: '{split}' must be a list of case ids")
        for cid in ids:
            if cid not in case_ids:
                raise DataError(f"{path}: case '{cid}' in '{split}' has no image")
            if cid in out:
                raise DataError(f"{path}: case '{cid}' is in both '{out[cid]}' and '{split}'")
            out[cid] = split
    return out


def paper_rows(kind: str, cases: dict[str, tuple[Path, Path]]) -> list[tuple[str, Path, Path, str]]:
    """(case, image, label, split) with the shipped val/test lists of ``configs/splits/<kind>``, the
    training cases ordered with the largest labeled list first (so ``paper`` splits find them)."""
    from sslbench.splits import paper_list

    test, val = set(paper_list(kind, "test") or []), set(paper_list(kind, "val") or [])
    first = paper_list(kind, "labeled_10") or []
    order = [c for c in first if c in cases] + sorted(c for c in cases if c not in first)
    return [(cid, *cases[cid], "test" if cid in test else "val" if cid in val else "train") for cid in order]


def note_missing(writer: CacheWriter, rows: list[tuple[str, Path, Path, str]], kind: str, raw: Path) -> None:
    """Record evaluation splits the raw folder has no volume of (evaluating on them then says why)."""
    for split in ("val", "test"):
        if not any(r[3] == split for r in rows):
            writer.missing[split] = f"none of the volumes of configs/splits/{kind}/{split}.txt under {raw}"
