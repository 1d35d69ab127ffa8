"""The fault suite: what a hostile or careless user can do to a clean install, and what must happen.

Hostile names never reach outside the cache or the results folder; crafted or corrupt files run no
code and stop nothing for good; header bombs are refused before any allocation; bad inputs are one
``error:`` line with exit code 2 and nothing written; kills at random points and two concurrent
sweeps on one folder end with every run trained exactly once and records equal to an uninterrupted
sweep's.
"""
from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from sslbench.train.logbook import TIMING_KEYS
from sslbench.cache import PreparedDataset, prepare
from sslbench.base.errors import DataError

from .conftest import TINY_RUN
from .test_cli import bench
from .test_lits_mmwhs import write_ssl4mis
from .test_nifti import write_nnunet

pytestmark = pytest.mark.faults


def one_error_line(code: int, err: str, *needles: str) -> None:
    lines = [x for x in err.strip().splitlines() if not x.startswith("warning: ")]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], err


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


# --------------------------------------------------------------------------- names -> paths
@pytest.mark.parametrize("name", ["", ".", "..", "../outside", "/tmp/sslbench-x", "a/b", "-x", " x", "x y"])
def test_prepare_never_touches_folders_outside_the_cache(tmp_path: Path, name: str) -> None:
    raw = write_nnunet(tmp_path / "raw")
    cache = tmp_path / "box" / "cache"
    (cache / "kept").mkdir(parents=True)
    (cache / "kept" / "meta.json").write_text("{}")
    (tmp_path / "box" / "sentinel").write_text("mine")
    before = tree(tmp_path / "box")
    code, _, err = bench("prepare", "--raw", str(raw), "--format", "nnunet", "--cache", str(cache), "--", name)
    one_error_line(code, err, "not allowed")
    assert tree(tmp_path / "box") == before
    assert not Path("/tmp/sslbench-x").exists()


def test_prepare_replaces_only_folders_it_prepared(tmp_path: Path) -> None:
    raw = write_nnunet(tmp_path / "raw")
    cache = tmp_path / "cache"
    (cache / "mydata").mkdir(parents=True)
    (cache / "mydata" / "thesis.tex").write_text("years of work")
    for meta in (None, "not json", json.dumps({"name": "mydata"})):
        if meta is not None:
            (cache / "mydata" / "meta.json").write_text(meta)
        for force in ((), ("--force",)):
            code, _, err = bench("prepare", "mydata", "--raw", str(raw), "--format", "nnunet", "--cache",
                                 str(cache), *force)
            one_error_line(code, err, "not a prepared dataset", "not touching it")
            assert (cache / "mydata" / "thesis.tex").read_text() == "years of work"


def test_prepare_refuses_other_raw_data_and_built_in_names(tmp_path: Path) -> None:
    first, other = write_nnunet(tmp_path / "first"), write_nnunet(tmp_path / "other", n=5)
    cache = tmp_path / "cache"
    args = ("--format", "nnunet", "--cache", str(cache))
    assert bench("prepare", "mydata", "--raw", str(first), *args)[0] == 0
    meta = (cache / "mydata" / "meta.json").read_text()
    assert bench("prepare", "mydata", "--raw", str(first), *args)[0] == 0          # same data: a no-op
    code, _, err = bench("prepare", "mydata", "--raw", str(other), *args)
    one_error_line(code, err, "already prepared from other raw data", "--force")
    assert (cache / "mydata" / "meta.json").read_text() == meta                    # untouched
    assert bench("prepare", "mydata", "--raw", str(other), *args, "--force")[0] == 0
    assert len(PreparedDataset(cache / "mydata").cases) == 5
    code, _, err = bench("prepare", "acdc", "--raw", str(first), *args)
    one_error_line(code, err, "'acdc' is a built-in dataset")
    assert not (cache / "acdc").exists()


@pytest.mark.parametrize("args, needle", [
    (("--profile", "/tmp/sslbench-profile"), "profile name"),
    (("--profile", "../profiles/quick"), "profile name"),
    (("--dataset", "../other/lits"), "dataset name"),
    (("--dataset", "/abs"), "dataset name"),
    (("--ratios", "nan"), "label ratio"),
    (("--ratios", "inf"), "label ratio"),
    (("--seeds", "99999999999999999999"), "seed must be"),
    (("--seeds", "-1"), "seed must be"),
    (("--device", "foo"), "--device foo"),
])
def test_bad_run_options_are_one_line_and_write_nothing(tmp_path: Path, args: tuple[str, ...], needle: str) -> None:
    code, _, err = bench("run", "--methods", "unet-l", "--results", str(tmp_path / "r"), "--quiet", *args)
    one_error_line(code, err, needle)
    assert not (tmp_path / "r").exists()
    assert not Path("/tmp/sslbench-profile").exists()


def test_a_sweep_file_cannot_name_paths(tmp_path: Path) -> None:
    sweep = tmp_path / "s.toml"
    sweep.write_text('[sweep]\nmethods = ["unet-l"]\ndatasets = ["../../etc"]\nratios = [5]\n')
    code, _, err = bench("run", "--sweep", str(sweep), "--results", str(tmp_path / "r"))
    one_error_line(code, err, "dataset name")
    sweep.write_text('[sweep]\nmethods = ["unet-l"]\ndatasets = ["synthetic-cardiac"]\nprofile = "/tmp/p"\n')
    code, _, err = bench("run", "--sweep", str(sweep), "--results", str(tmp_path / "r"))
    one_error_line(code, err, "profile name")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("entry", ["/abs/path/x", "sub/dir/x", "../x", "..\\x", ".hidden"])
def test_list_file_ids_never_become_paths(tmp_path: Path, entry: str) -> None:
    raw = write_ssl4mis(tmp_path / "raw")
    (raw / "test.list").write_text(f"{entry}\n")
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"test\.list: case id .* is not a plain file name"):
        prepare("acdc", raw, cache_root=cache)
    assert tree(cache) == set() and not Path("/abs").exists() and not (tmp_path / "x.image.npy").exists()


def test_the_cache_writer_refuses_path_ids_too(tmp_path: Path) -> None:
    from sslbench.data import DATASETS, CacheWriter

    writer = CacheWriter(DATASETS.get("synthetic-cardiac")(), tmp_path / "ds")
    vol = np.zeros((2, 4, 4), np.float32)
    for bad in ("../x", "/abs/x", "a/b"):
        with pytest.raises(DataError, match="not a plain file name"):
            writer.add(bad, vol, vol.astype(np.uint8), "train", None)
    assert tree(tmp_path) == {"ds", "ds/volumes"}


# --------------------------------------------------------------------------- input files
def nifti_header_bomb(path: Path, shape: tuple[int, int, int], dtype: type = np.uint8) -> None:
    """A valid NIfTI header that claims ``shape`` voxels, followed by no voxel data at all."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header.set_zooms((1.0, 1.0, 1.0))
    header["vox_offset"] = 352
    blob = header.binaryblock + b"\x00" * 4
    path.write_bytes(gzip.compress(blob) if path.name.endswith(".gz") else blob)


@pytest.mark.parametrize("shape, name, needle", [
    ((1024, 1024, 1024), "bomb.nii.gz", "truncated or corrupt"),
    ((30000, 30000, 30000), "bomb.nii.gz", "too large"),
    ((64, 64, 64), "short.nii", "truncated or corrupt"),
])
def test_nifti_header_bombs_are_refused_before_reading(tmp_path: Path, shape: tuple[int, int, int], name: str,
                                                       needle: str) -> None:
    from sslbench.io.nifti import load_volume

    path = tmp_path / name
    nifti_header_bomb(path, shape)
    assert path.stat().st_size < 400
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=needle) as info:
            load_volume(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(path) in str(info.value) and peak < 8 << 20      # refused from the header alone


def test_voxel_limit_is_an_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = write_nnunet(tmp_path / "raw")
    monkeypatch.setenv("SSLBENCH_MAX_VOXELS", "")   # restored after the CLI sets it
    code, _, err = bench("prepare", "small", "--raw", str(raw), "--format", "nnunet", "--cache",
                         str(tmp_path / "c"), "--max-voxels", "1000")
    one_error_line(code, err, "too large", "--max-voxels")
    assert tree(tmp_path / "c") == set()


def test_h5_bombs_are_refused(tmp_path: Path) -> None:
    import h5py

    from sslbench.io.readers import read_h5

    path = tmp_path / "bomb.h5"
    with h5py.File(path, "w") as fh:   # declared, never written: no storage behind the shape
        fh.create_dataset("image", shape=(1024, 1024, 1024), dtype="f4", chunks=(1, 64, 64))
        fh.create_dataset("label", shape=(1024, 1024, 1024), dtype="u1", chunks=(1, 64, 64))
    assert path.stat().st_size < 100_000
    with pytest.raises(DataError, match=r"bomb\.h5:image: truncated or corrupt"):
        read_h5(path)


@pytest.mark.parametrize("problem, needle", [
    ("not utf-8", "not UTF-8"),
    ("a list", "expected a JSON object"),
    ("channel_names 5", "'channel_names' must be a mapping"),
    ("file_ending path", "file_ending"),
    ("splits a list", "splits.json: expected an object"),
])
def test_bad_nnunet_metadata_is_one_line(tmp_path: Path, problem: str, needle: str) -> None:
    raw = write_nnunet(tmp_path / "raw")
    meta = json.loads((raw / "dataset.json").read_text())
    if problem == "not utf-8":
        (raw / "dataset.json").write_bytes(b"\xff\xfe{" + json.dumps(meta).encode("utf-16-le"))
    elif problem == "a list":
        (raw / "dataset.json").write_text("[1, 2]")
    elif problem == "channel_names 5":
        (raw / "dataset.json").write_text(json.dumps({**meta, "channel_names": 5}))
    elif problem == "file_ending path":
        (raw / "dataset.json").write_text(json.dumps({**meta, "file_ending": "/../../*"}))
    else:
        (raw / "splits.json").write_text('["case_000"]')
    code, _, err = bench("prepare", "bad", "--raw", str(raw), "--format", "nnunet", "--cache", str(tmp_path / "c"))
    one_error_line(code, err, needle)
    assert tree(tmp_path / "c") == set()


ROTATED = np.array([[0.0, -1.25, 0.0, 100.0], [-1.25, 0.0, 0.0, 50.0], [0.0, 0.0, 10.0, -30.0], [0, 0, 0, 1]])


def test_a_label_that_lost_its_orientation_takes_the_images_geometry(tmp_path: Path) -> None:
    """The public-dataset quirk: the label has the image's shape and spacing but an identity
    rotation and zero origin. nnU-Net uses the voxel grid (a warning); so do we, unless strict."""
    good = write_nnunet(tmp_path / "good", affine=ROTATED)
    quirk = write_nnunet(tmp_path / "quirk", affine=ROTATED)
    lab = quirk / "labelsTr" / "case_002.nii.gz"
    data = np.asarray(nib.load(str(lab)).dataobj)
    nib.save(nib.Nifti1Image(data, np.diag([1.25, 1.25, 10.0, 1.0])), str(lab))   # same voxels, lost geometry
    cache = tmp_path / "cache"
    code, _, err = bench("prepare", "quirk", "--raw", str(quirk), "--format", "nnunet", "--cache", str(cache))
    assert code == 0, err
    assert "case_002.nii.gz: label affine differs" in err and "using the image's geometry" in err
    assert "1 label(s) took their image's geometry" in err
    ds = PreparedDataset(cache / "quirk")
    assert ds.meta["geometry_fixed"] == ["case_002"]
    reference = prepare("good", good, cache_root=cache, kind="nnunet")
    assert np.array_equal(ds.volume("case_002")[1], reference.volume("case_002")[1])   # voxel for voxel
    assert ds.volume("case_002")[1].any()
    code, _, err = bench("prepare", "strict", "--raw", str(quirk), "--format", "nnunet", "--cache", str(cache),
                         "--strict-geometry")
    one_error_line(code, err, "case_002.nii.gz: label affine differs")
    assert not (cache / "strict").exists()


def test_preparation_reads_labels_in_their_own_type_and_peaks_below_3x_the_volume(tmp_path: Path) -> None:
    from sslbench.data import DATASETS, CacheWriter
    from sslbench.datasets._nifti_cases import add_nifti_cases

    shape = (40, 160, 192)   # an int16 CT-like volume, 4.9 MB as float32
    rng = np.random.default_rng(0)
    image = rng.integers(-1000, 1000, shape, dtype=np.int16)
    label = np.zeros(shape, np.int16)
    label[10:30, 40:120, 50:150] = 1
    (tmp_path / "raw").mkdir()
    nib.save(nib.Nifti1Image(image, np.eye(4)), str(tmp_path / "raw" / "img.nii.gz"))
    nib.save(nib.Nifti1Image(label, np.eye(4)), str(tmp_path / "raw" / "lab.nii.gz"))
    writer = CacheWriter(DATASETS.get("nnunet")(), tmp_path / "ds")
    writer.classes = ("background", "organ")
    tracemalloc.start()
    try:
        add_nifti_cases(writer, tmp_path / "raw", [("c", tmp_path / "raw" / "img.nii.gz",
                                                    tmp_path / "raw" / "lab.nii.gz", "train")], {0: 0, 1: 1},
                        clip=(-200.0, 250.0))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    volume_f32 = image.size * 4
    assert peak <= 3 * volume_f32, f"peak {peak / 2**20:.1f} MB for a {volume_f32 / 2**20:.1f} MB volume"
    from sslbench.io.slabs import read_slabs

    assert np.array_equal(read_slabs(tmp_path / "ds" / "volumes" / "c.label.slabs"), label.astype(np.uint8))


# --------------------------------------------------------------------------- results and checkpoints
@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    """One tiny finished run to damage in the tests below (copied for each)."""
    root = tmp_path_factory.mktemp("finished")
    code, _, err = bench("run", "--methods", "unet-l", "--results", str(root), "--quiet", "--no-table", *TINY_RUN)
    assert code == 0, err
    return root


def damaged_copy(finished: Path, tmp_path: Path) -> tuple[Path, Path]:
    import shutil

    root = tmp_path / "results"
    shutil.copytree(finished, root)
    folder = root / "synthetic-cardiac/quick/unet-l/ratio-5/seed-0"
    return root, folder


def rerun(root: Path) -> tuple[int, str, str]:
    return bench("run", "--methods", "unet-l", "--results", str(root), "--quiet", "--no-table", *TINY_RUN)


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("damage", ["truncated", "empty", "crafted pickle", "another network"])
def test_an_unusable_last_checkpoint_is_kept_aside_and_the_run_restarts(finished: Path, tmp_path: Path,
                                                                         damage: str) -> None:
    root, folder = damaged_copy(finished, tmp_path)
    reference = json.loads((folder / "run.json").read_text())["summary"]
    (folder / "DONE").unlink()                       # as if killed before the record was written
    last = folder / "ckpt" / "last.pt"
    marker = tmp_path / "pwned"
    if damage == "truncated":
        last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    elif damage == "empty":
        last.write_bytes(b"")
    elif damage == "crafted pickle":
        torch.save({"iteration": 3, "evil": _Payload(marker)}, last)
    else:
        torch.save({"stage_index": 0, "iteration": 6, "method": {"w": torch.zeros(1)}}, last)
    code, _, err = rerun(root)
    assert code == 0, err
    assert "unusable checkpoint" in err and "training this run from the start" in err
    assert not marker.exists()
    assert len(list((folder / "ckpt").glob("last.pt.unusable-*"))) == 1
    record = json.loads((folder / "run.json").read_text())
    assert record["summary"] == reference            # the restarted run is the same run
    assert record["timing"]["resumed_from"] is None


@pytest.mark.parametrize("damage", ["truncated", "deleted", "stale"])
def test_a_bad_best_checkpoint_is_a_stated_reselection(finished: Path, tmp_path: Path, damage: str) -> None:
    root, folder = damaged_copy(finished, tmp_path)
    (folder / "DONE").unlink()
    best = folder / "ckpt" / "best.pt"
    if damage == "truncated":
        best.write_bytes(best.read_bytes()[:100])
    elif damage == "deleted":
        best.unlink()
    else:   # a kill between best.pt and last.pt: best.pt holds weights the state does not name
        saved = torch.load(best, weights_only=True)
        torch.save({**saved, "iteration": saved["iteration"] + 1}, best)
    code, _, err = rerun(root)
    assert code == 0, err
    selection = json.loads((folder / "run.json").read_text())["selection"]
    assert selection["rule"] == "last" and "ckpt/best.pt" in selection["note"]
    assert "the last weights" in err


def test_a_corrupt_record_is_skipped_by_bench_table(finished: Path, tmp_path: Path) -> None:
    import shutil

    root, folder = damaged_copy(finished, tmp_path)
    other = folder.parent / "seed-1"
    shutil.copytree(folder, other)
    (other / "run.json").write_text('{"summary": ')
    code, out, err = bench("table", "--results", str(root))
    assert code == 0 and "UNet-L" in out and "skipping" in err and "seed-1/run.json" in err


def test_orphans_of_a_kill_are_cleaned_and_modes_follow_the_umask(finished: Path, tmp_path: Path,
                                                                  cache_dir: Path) -> None:
    root, folder = damaged_copy(finished, tmp_path)
    (folder / "DONE").unlink()
    orphans = [folder / ".run.json.x1.tmp", folder / "ckpt" / ".last.pt.x2.tmp"]
    for path in orphans:
        path.write_bytes(b"half")
    old = os.umask(0o022)
    try:
        code, _, err = rerun(root)
    finally:
        os.umask(old)
    assert code == 0, err
    assert not any(p.exists() for p in orphans)
    assert not list(folder.rglob(".lock"))                      # released
    for name in ("run.json", "metrics.json", "DONE", "ckpt/last.pt"):
        assert (folder / name).stat().st_mode & 0o777 == 0o644, name
    # a preparation folder left by a kill, next to a prepared dataset
    orphan = cache_dir / ".synthetic-cardiac+killed"
    orphan.mkdir()
    prepare("synthetic-cardiac", cache_root=cache_dir)
    assert not orphan.exists()


def test_a_stale_lock_is_taken_over_with_a_warning(finished: Path, tmp_path: Path) -> None:
    root, folder = damaged_copy(finished, tmp_path)
    (folder / "DONE").unlink()
    (folder / ".lock").write_text(json.dumps({"host": "node7", "pid": 4_000_000, "since": "2026-01-01T00:00:00"}))
    code, _, err = rerun(root)
    assert code == 0, err
    assert "pid 4000000 on node7" in err and "taking over" in err


def test_a_run_held_by_another_process_is_skipped(finished: Path, tmp_path: Path) -> None:
    from sslbench.base.locks import FolderLock

    root, folder = damaged_copy(finished, tmp_path)
    (folder / "DONE").unlink()
    lock = FolderLock(folder / ".lock")
    assert lock.acquire(wait=False)
    try:
        code, _, err = rerun(root)
    finally:
        lock.release()
    assert code == 0, err
    assert "running elsewhere" in err and f"pid {os.getpid()}" in err
    assert not (folder / "DONE").exists()                       # left to the holder


# --------------------------------------------------------------------------- kills and concurrency
SWEEP = ["--methods", "unet-l,mt", "--quiet", "--no-table", *TINY_RUN,
         "--set", "train.iterations=30", "--set", "train.val_every=10", "--set", "train.log_every=5"]


def bench_process(root: Path, cache: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "SSLBENCH_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "sslbench.cli", "run", "--results", str(root), *SWEEP],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def records(root: Path) -> dict[str, tuple[object, ...]]:
    out = {}
    for path in sorted(root.rglob("run.json")):
        rec = json.loads(path.read_text())
        log = [{k: v for k, v in json.loads(x).items() if k not in TIMING_KEYS}  # wall clock: never equal
               for x in (path.parent / "train_log.jsonl").read_text().splitlines()]
        out[rec["id"]] = (rec["summary"], rec["per_class"], rec["selection"], log)
    return out


def assert_each_run_once(root: Path) -> None:
    for log in root.rglob("train_log.jsonl"):
        lines = [json.loads(x) for x in log.read_text().splitlines()]
        keys = [(x["stage"], x["iteration"], "val_dice" in x) for x in lines]
        assert len(keys) == len(set(keys)), f"{log}: an iteration was trained twice"
    assert not list(root.rglob(".lock")) and not list(root.rglob("*.tmp"))


def test_kills_at_random_points_end_with_the_uninterrupted_records(tmp_path: Path, cache_dir: Path) -> None:
    """SIGKILL at random moments (start-up, training, validation, checkpoint and record writes); each
    sweep that then completes must hold exactly the uninterrupted sweep's records and logs."""
    t0 = time.perf_counter()
    proc = bench_process(tmp_path / "reference", cache_dir)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    duration = time.perf_counter() - t0
    reference = records(tmp_path / "reference")
    assert len(reference) == 2
    rng = random.Random(12)
    kills, completed, attempt = 0, 0, 0
    root = tmp_path / "killed-0"
    while kills < 10 or completed == 0:
        attempt += 1
        assert attempt < 60, f"{kills} kills, {completed} completed sweeps"
        proc = bench_process(root, cache_dir)
        try:
            proc.wait(timeout=rng.uniform(0.5, duration))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            kills += 1
            continue
        assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
        assert records(root) == reference, root
        assert_each_run_once(root)
        completed += 1
        root = tmp_path / f"killed-{completed}"   # a fresh sweep to kill again
    assert kills >= 10 and completed >= 1


def test_two_concurrent_sweeps_never_train_a_run_twice(tmp_path: Path, cache_dir: Path) -> None:
    root = tmp_path / "shared"
    procs = [bench_process(root, cache_dir) for _ in range(2)]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errs
    both = "\n".join(errs)
    for label in ("unet-l synthetic-cardiac 5% seed 0", "mt synthetic-cardiac 5% seed 0"):
        assert both.count(f"{label}: done") == 1, both          # trained by exactly one of them
    assert len(list(root.rglob("DONE"))) == 2
    assert_each_run_once(root)


def test_a_session_killed_before_its_first_checkpoint_leaves_no_log_behind(tmp_path: Path) -> None:
    """Log lines of a session that never reached a checkpoint are dropped when the run starts again
    (otherwise the restarted run logs those iterations twice)."""
    from .test_trainer import build

    (tmp_path / "train_log.jsonl").write_text(
        '{"stage": "train", "iteration": 3, "loss": 1.0}\n{"stage": "train", "iter')   # torn last line
    t = build("unet-l", folder=tmp_path)
    assert t.resume() is None
    assert (tmp_path / "train_log.jsonl").read_text() == ""


def test_checkpoints_kept_after_a_run_are_the_users_choice(tmp_path: Path, cache_dir: Path) -> None:
    import torch

    code, _, err = bench("run", "--methods", "mt", "--results", str(tmp_path), "--quiet", "--no-table",
                         "--keep-checkpoints", "best", *TINY_RUN)
    assert code == 0, err
    ckpt = next(tmp_path.rglob("ckpt"))
    assert not (ckpt / "last.pt").exists()
    best = torch.load(ckpt / "best.pt", weights_only=True)
    assert not any(k.startswith("teacher") for k in best["weights"])
    code, _, err = bench("run", "--methods", "mt", "--results", str(tmp_path / "n"), "--quiet", "--no-table",
                         "--keep-checkpoints", "none", *TINY_RUN)
    assert code == 0 and not list((tmp_path / "n").rglob("*.pt"))
