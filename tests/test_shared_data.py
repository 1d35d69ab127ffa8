"""Reliability III: what a run reads is what it started with, and neither the cache nor the results
folder takes the other's files with it.

A run holds a shared lock on its prepared dataset from set-up to record, so preparing it again is
refused (naming the dataset and the run); its fingerprint is recorded and checked, so data swapped by
hand fails the run; a results folder inside the cache is refused and a prepared folder holding
anything else is never replaced; case ids leave room for every file name made from them;
``--max-voxels`` bounds the volume a case becomes; predictions follow the umask; a resumed run's
wall time counts its earlier sessions; a training log is read in bounded memory.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sslbench.base.errors import BenchError, DataError
from sslbench.cache import PreparedDataset, prepare
from sslbench.train.trainer import Trainer

from .conftest import TINY_RUN
from .test_cli import bench
from .test_faults import one_error_line, tree
from .test_lits_mmwhs import write_ssl4mis

pytestmark = pytest.mark.faults

NAME = "synthetic-cardiac"
RUN = ("run", "--methods", "unet-l", "--quiet", "--no-table", *TINY_RUN)
LABEL = f"unet-l {NAME} 5% seed 0"
FOLDER = f"{NAME}/quick/unet-l/ratio-5/seed-0"


def private_cache(cardiac: PreparedDataset, where: Path) -> Path:
    """A cache of its own holding the session's prepared synthetic-cardiac (a copy: cheaper than
    preparing it, and whatever a test does to it stays there)."""
    cache = where / "cache"
    shutil.copytree(cardiac.folder, cache / NAME, ignore=shutil.ignore_patterns("slices-*", ".slices*"))
    return cache


def in_use_files(cache: Path) -> list[Path]:
    return sorted(cache.glob(".*@in-use*"))


# --------------------------------------------------------------------------- the lock itself

def test_a_shared_lock_admits_readers_together_and_excludes_the_exclusive_one(tmp_path: Path) -> None:
    from sslbench.base.locks import FolderLock, SharedLock, users

    path = tmp_path / ".ds@in-use"
    a, b = SharedLock(path, "run a"), SharedLock(path, "run b")
    assert a.acquire(wait=False) and b.acquire(wait=False)        # readers together
    named = users(path)
    assert len(named) == 2 and any("(run a)" in u for u in named) and any("(run b)" in u for u in named)
    writer = FolderLock(path, "bench prepare ds")
    assert not writer.acquire(wait=False)                          # no writer while one reads
    a.release()
    assert not writer.acquire(wait=False)
    b.release()
    assert list(tmp_path.iterdir()) == []                          # the last reader leaves nothing behind
    assert writer.acquire(wait=False)
    reader = SharedLock(path, "run c")
    assert not reader.acquire(wait=False) and "(bench prepare ds)" in reader.holder
    took: list[float] = []
    waiting = threading.Thread(target=lambda: (reader.acquire(wait=True), took.append(time.monotonic())))
    waiting.start()
    time.sleep(0.3)
    assert not took                                                # waits while the writer holds it
    released = time.monotonic()
    writer.release()
    waiting.join(10)
    assert took and took[0] >= released
    assert len(users(path)) == 1 and "(run c)" in users(path)[0]
    reader.release()
    assert list(tmp_path.iterdir()) == []


def test_a_reader_in_another_process_blocks_the_writer_until_it_ends(tmp_path: Path) -> None:
    from sslbench.base.locks import FolderLock

    path = tmp_path / ".ds@in-use"
    code = ("import sys, time; from pathlib import Path; from sslbench.base.locks import SharedLock; "
            f"lock = SharedLock(Path({str(path)!r}), 'the other process'); lock.acquire(); print('held', flush=True); "
            "sys.stdin.readline(); lock.release()")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        writer = FolderLock(path)
        assert not writer.acquire(wait=False)
    finally:
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
        proc.wait(30)
    assert writer.acquire(wait=False)
    writer.release()


def test_a_killed_reader_is_never_named_and_its_files_go_with_the_next_reader(tmp_path: Path) -> None:
    from sslbench.base.locks import FolderLock, SharedLock, users

    path = tmp_path / ".ds@in-use"
    code = ("from pathlib import Path; from sslbench.base.locks import SharedLock; "
            f"SharedLock(Path({str(path)!r}), 'killed run').acquire(); print('held', flush=True); input()")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    proc.kill()
    proc.wait(30)
    assert len(list(tmp_path.iterdir())) == 2 and users(path) == []   # its files stay, it is not named
    writer = FolderLock(path)
    assert writer.acquire(wait=False)                                  # the kernel let go of its lock
    writer.release()
    with SharedLock(path, "next run"):
        pass
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- a run holds its dataset

@pytest.fixture(scope="module")
def held_run(tmp_path_factory: pytest.TempPathFactory, cardiac: PreparedDataset) -> dict[str, Any]:
    """One tiny run that, while it trains, tries to prepare its dataset again (in this process, through
    another open file: flock sees another owner)."""
    where = tmp_path_factory.mktemp("held")
    cache = private_cache(cardiac, where)
    before = (cache / NAME).stat().st_ino
    seen: dict[str, Any] = {}
    original = Trainer.fit

    def fit(self: Trainer, *args: Any, **kwargs: Any) -> Any:
        try:
            prepare(NAME, cache_root=cache, force=True)
            seen["error"] = None
        except DataError as exc:
            seen["error"] = str(exc)
        seen["in_use"] = [p.name for p in in_use_files(cache)]
        return original(self, *args, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(Trainer, "fit", fit)
    try:
        code, _, err = bench(*RUN, "--cache", str(cache), "--results", str(where / "r"))
    finally:
        mp.undo()
    return {"code": code, "err": err, "cache": cache, "results": where / "r", "seen": seen, "inode": before}


def test_preparing_a_dataset_again_is_refused_while_a_run_uses_it(held_run: dict[str, Any]) -> None:
    assert held_run["code"] == 0, held_run["err"]
    error = held_run["seen"]["error"]
    assert error is not None, "prepare --force replaced the dataset under a training run"
    assert error.startswith(f"{NAME}: in use by 1 run(s)") and LABEL in error and "\n" not in error
    assert (held_run["cache"] / NAME).stat().st_ino == held_run["inode"]   # never replaced
    assert in_use_files(held_run["cache"]) == []                           # released with the run


def test_the_record_and_configuration_name_the_data_the_run_read(held_run: dict[str, Any]) -> None:
    folder = held_run["results"] / FOLDER
    fingerprint = PreparedDataset(held_run["cache"] / NAME).fingerprint
    record = json.loads((folder / "run.json").read_text())
    assert record["data"] == {"name": NAME, "fingerprint": fingerprint}
    assert json.loads((folder / "config.json").read_text())["prepared"] == record["data"]
    meta = json.loads((held_run["cache"] / NAME / "meta.json").read_text())
    assert meta["fingerprint"] == fingerprint and len(fingerprint) == 16


def test_a_resumed_runs_wall_time_counts_its_earlier_sessions(held_run: dict[str, Any], tmp_path: Path) -> None:
    results = tmp_path / "r"
    shutil.copytree(held_run["results"], results)
    folder = results / FOLDER
    (folder / "DONE").unlink()
    (folder / "run.json").unlink()
    state = torch.load(folder / "ckpt/last.pt", weights_only=True)
    state["elapsed"] = {"train": 1000.0}                # an earlier session trained for 1000 s
    torch.save(state, folder / "ckpt/last.pt")
    code, _, err = bench(*RUN, "--cache", str(held_run["cache"]), "--results", str(results))
    assert code == 0, err
    timing = json.loads((folder / "run.json").read_text())["timing"]
    assert timing["train_s"] >= 1000.0 and timing["resumed_from"] == 12
    assert timing["wall_s"] >= timing["train_s"] + timing["eval_s"] - 1.0, timing


def test_prepare_force_from_the_command_line_names_the_dataset_and_its_user(cardiac: PreparedDataset,
                                                                           tmp_path: Path) -> None:
    from sslbench.cache import DatasetUse

    cache = private_cache(cardiac, tmp_path)
    before = tree(cache)
    with DatasetUse(cache / NAME, "mt synthetic-cardiac 10% seed 3") as use:
        assert use.dataset is not None and use.fingerprint == cardiac.fingerprint
        code, _, err = bench("prepare", NAME, "--force", "--cache", str(cache))
        one_error_line(code, err, f"{NAME}: in use by 1 run(s)", "mt synthetic-cardiac 10% seed 3")
    assert tree(cache) == before                      # nothing replaced, nothing left behind


def test_a_dataset_swapped_between_training_and_evaluation_fails_the_run(cardiac: PreparedDataset, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    cache = private_cache(cardiac, tmp_path)
    meta_path = cache / NAME / "meta.json"
    original = Trainer.fit

    def fit(self: Trainer, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        meta = json.loads(meta_path.read_text())      # swapped by hand, past any lock
        meta["fingerprint"] = "0123456789abcdef"
        meta_path.write_text(json.dumps(meta))
        return result

    monkeypatch.setattr(Trainer, "fit", fit)
    args = (*RUN, "--cache", str(cache), "--results", str(tmp_path / "r"))
    code, _, err = bench(*args)
    folder = tmp_path / "r" / FOLDER
    assert code == 1 and f"{NAME}: the prepared dataset changed under this run before evaluation" in err, err
    assert not (folder / "run.json").exists() and not (folder / "DONE").exists()
    monkeypatch.setattr(Trainer, "fit", original)
    code, _, err = bench(*args)                        # resuming on other data than it started with
    assert code == 1 and f"its dataset {NAME} was prepared again since this run started" in err, err
    assert not (folder / "run.json").exists()
    code, _, err = bench(*args, "--force")             # trains it again from the start, on today's data
    assert code == 0, err
    record = json.loads((folder / "run.json").read_text())
    assert record["data"]["fingerprint"] == "0123456789abcdef" and record["timing"]["resumed_from"] is None


# --------------------------------------------------------------------------- results and cache apart

def test_results_and_cache_must_be_separate_folders(tmp_path: Path) -> None:
    from sslbench.cache import check_separate

    (tmp_path / "c").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "c")
    for results, cache in [("c", "c"), ("c/results", "c"), ("c", "c/cache"), ("link/r", "c"), ("c", "link")]:
        with pytest.raises(BenchError, match="separate folders"):
            check_separate(tmp_path / results, tmp_path / cache)
    check_separate(tmp_path / "r", tmp_path / "c")
    check_separate(tmp_path / "c-results", tmp_path / "c")  # a common prefix is not "inside"


def test_a_run_with_its_results_inside_the_cache_writes_nothing(cardiac: PreparedDataset, tmp_path: Path) -> None:
    from sslbench.run.lifecycle import run_one
    from sslbench.run.specs import RunOptions, expand

    cache = private_cache(cardiac, tmp_path)
    before = tree(cache)
    spec = expand(["unet-l"], [NAME], [5.0], [0], "quick", TINY_RUN[1::2], cache)[0]
    with pytest.raises(BenchError, match="is inside the cache"):
        run_one(spec, RunOptions(results=cache / "results", cache=cache, progress=False), log=lambda m: None)
    assert tree(cache) == before


def test_a_prepared_folder_holding_run_records_is_never_replaced(cardiac: PreparedDataset, tmp_path: Path) -> None:
    cache = private_cache(cardiac, tmp_path)
    run = cache / NAME / "quick/unet-l/ratio-5/seed-0"   # what --results C --cache C leaves there
    run.mkdir(parents=True)
    (run / "run.json").write_text("{}")
    before = tree(cache)
    code, _, err = bench("prepare", NAME, "--force", "--cache", str(cache))
    one_error_line(code, err, f"{cache / NAME}: holds quick besides the prepared data", "not replacing it")
    assert tree(cache) == before


# --------------------------------------------------------------------------- names, sizes, modes

def test_a_case_id_too_long_for_its_prediction_files_is_refused_when_prepared(tmp_path: Path) -> None:
    raw = write_ssl4mis(tmp_path / "raw")
    long_id = "patient002_" + "é" * 114               # 239 bytes, 125 characters: a plain file name
    assert len(long_id.encode()) == 239
    (raw / "data" / "patient002_frame01.h5").rename(raw / "data" / f"{long_id}.h5")
    (raw / "val.list").write_text(f"{long_id}\n")
    cache = tmp_path / "cache"
    code, _, err = bench("prepare", "acdc", "--raw", str(raw), "--cache", str(cache))
    one_error_line(code, err, long_id, "239 bytes long", "at most 234")
    assert tree(cache) == set()


def test_max_voxels_bounds_the_volume_stacked_from_slice_files(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    raw = write_ssl4mis(tmp_path / "raw")               # slices of 12 x 10 = 120 voxels, volumes of 3 of them
    monkeypatch.setenv("SSLBENCH_MAX_VOXELS", "")       # restored after the CLI sets it
    cache = tmp_path / "cache"
    code, _, err = bench("prepare", "acdc", "--raw", str(raw), "--cache", str(cache), "--max-voxels", "300")
    one_error_line(code, err, "'patient099_frame01' stacks to 3 x 12 x 10 = 360 voxels", "--max-voxels")
    assert tree(cache) == set()


def test_the_cache_writer_bounds_every_case_volume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sslbench.cache.prepare import CheckedWriter
    from sslbench.data import DATASETS

    monkeypatch.setenv("SSLBENCH_MAX_VOXELS", "100")
    writer = CheckedWriter(DATASETS.get(NAME)(), tmp_path / "ds")
    vol = np.ones((2, 8, 8), np.float32)
    with pytest.raises(DataError, match=r"case 'big' is a volume of 2 x 8 x 8 = 128 voxels"):
        writer.add("big", vol, vol.astype(np.uint8), "train", None)
    assert tree(tmp_path) == {"ds", "ds/volumes"}


def test_nifti_predictions_follow_the_umask(tmp_path: Path) -> None:
    from sslbench.io.nifti import Geometry, save_volume

    geometry = Geometry(np.eye(4), (3, 4, 5), (0, 1, 2), (1.0, 1.0, 1.0))
    old = os.umask(0o022)
    try:
        save_volume(np.zeros((3, 4, 5), np.uint8), geometry, tmp_path / "case.nii.gz")
    finally:
        os.umask(old)
    assert (tmp_path / "case.nii.gz").stat().st_mode & 0o777 == 0o644


# --------------------------------------------------------------------------- the training log

def test_a_sparse_training_log_is_read_in_bounded_memory(tmp_path: Path) -> None:
    from sslbench.base.log_reader import read_log

    path = tmp_path / "train_log.jsonl"
    with path.open("wb") as fh:
        for i in range(3):
            fh.write((json.dumps({"stage": "train", "iteration": i, "loss": 0.5}) + "\n").encode())
        fh.truncate(1_500_000_000)                      # a 1.5 GB hole, no newline in it
        fh.seek(0, os.SEEK_END)
        fh.write(b'\n{"stage": "train", "iteration": 9}\n')
    warnings: list[str] = []
    tracemalloc.start()
    try:
        records = read_log(path, warn=warnings.append)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [r["iteration"] for r in records] == [0, 1, 2, 9]
    assert peak < 16 * 2 ** 20 and len(warnings) == 1 and "skipped 1 line(s)" in warnings[0]


def test_the_log_reader_skips_long_lines_and_caps_what_it_reads(tmp_path: Path) -> None:
    from sslbench.base.log_reader import read_log

    path = tmp_path / "train_log.jsonl"
    lines = [b'{"iteration": 1}', b"x" * 100_000, b'{"iteration": 2}', b"[1, 2]", b"{torn", b'{"iteration": 3}']
    path.write_bytes(b"\n".join(lines))                 # the last line without its newline
    warnings: list[str] = []
    assert [r["iteration"] for r in read_log(path, warn=warnings.append)] == [1, 2, 3]
    assert len(warnings) == 1 and "longer than 65,536 bytes" in warnings[0]
    warnings.clear()
    assert [r["iteration"] for r in read_log(path, max_lines=2, warn=warnings.append)] == [1, 2]
    assert any("first 2 records" in w for w in warnings)
    warnings.clear()
    assert [r["iteration"] for r in read_log(path, max_bytes=40, warn=warnings.append)] == [1]
    assert any("first 40 bytes" in w for w in warnings)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "link").symlink_to(path)
    assert read_log(fifo) == [] and read_log(tmp_path / "link") == [] and read_log(tmp_path / "none") == []
