"""Behaviour pinned across refactors: a tiny sweep of seven methods (incl. MONA's two stages, CPS,
DAN, UAMT, CCT) reproduces the committed per-volume metrics and logged losses exactly.

Regenerate (only in a commit that changes behaviour on purpose, saying why):
``SSLBENCH_WRITE_GOLDEN=1 python -m pytest -q tests/test_golden.py``. Floating-point results depend
on the CPU's kernels and the thread count, so the comparison runs where the file was recorded (same
torch, CPU model and threads) and is skipped, saying so, elsewhere.
"""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import pytest
import torch

from .test_cli import bench
from sslbench.train.logbook import TIMING_KEYS

pytestmark = pytest.mark.slow

GOLDEN = Path(__file__).parent / "golden" / "tiny-sweep.json"
METHODS = "unet-l,mt,uamt,cps,dan,cct,mona"
SETTINGS = ("train.iterations=80", "train.image_size=32", "train.batch_size=8", "train.labeled_bs=4",
            "train.val_every=40", "train.log_every=10", "train.base_width=8", "train.lr=0.1",
            "train.pretrain_iterations=20")


def machine() -> dict[str, object]:
    cpu = ""
    if Path("/proc/cpuinfo").is_file():
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "")
    return {"torch": torch.__version__, "arch": platform.machine(), "cpu": cpu, "threads": torch.get_num_threads()}


def outcome(root: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    for record in sorted(root.rglob("run.json")):
        folder = record.parent
        rec = json.loads(record.read_text())
        metrics = json.loads((folder / "metrics.json").read_text())
        log = [{k: v for k, v in json.loads(x).items() if k not in TIMING_KEYS}  # wall clock: not pinned
               for x in (folder / "train_log.jsonl").read_text().splitlines()]
        out[rec["id"]] = {"per_case": metrics["metric_per_case"], "log": log, "selection": rec["selection"]}
    return out


def test_a_tiny_sweep_reproduces_the_golden_file(tmp_path: Path, cache_dir: Path) -> None:
    sets = [x for s in SETTINGS for x in ("--set", s)]
    code, _, err = bench("run", "--methods", METHODS, "--results", str(tmp_path), "--quiet", "--no-table",
                         "--device", "cpu", *sets)
    assert code == 0, err
    got = outcome(tmp_path)
    assert len(got) == len(METHODS.split(","))
    if os.environ.get("SSLBENCH_WRITE_GOLDEN"):
        GOLDEN.write_text(json.dumps({"machine": machine(), "runs": got}, indent=1) + "\n")
        pytest.skip(f"wrote {GOLDEN}")
    golden = json.loads(GOLDEN.read_text())
    if golden["machine"] != machine():
        pytest.skip(f"golden file recorded on {golden['machine']}, this is {machine()}")
    assert got.keys() == golden["runs"].keys()
    for run_id, expected in golden["runs"].items():
        assert got[run_id] == expected, run_id
