"""Bad input from the command line, a sweep file or a raw dataset is one line naming what is wrong, exit
code 2, before anything is written; a full disk or a read-only results folder never leaves a run
looking other than it is."""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest

from .conftest import TINY_RUN
from .test_cli import bench

RUN = ("run", "--methods", "unet-l", "--ratios", "5", "--seeds", "0", "--quiet", "--no-table", *TINY_RUN)


def _one_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ------------------------------------------------------------------ sweep files and tags
@pytest.mark.parametrize("body, message", [
    ('datasets = "synthetic-cardiac"\nmethods = ["unet-l"]', "datasets: expected a non-empty list, got 'synthetic-cardiac'"),
    ('datasets = ["synthetic-cardiac"]\nmethods = ["unet-l"]\nseeds = [true]', "seeds: expected a list of ints, got the item True"),
    ('datasets = ["synthetic-cardiac"]\nmethods = ["unet-l"]\nratios = ["5"]', "ratios: expected a list of floats, got the item '5'"),
    ('datasets = ["synthetic-cardiac"]\nmethods = "unet-l"', "methods: expected a non-empty list"),
    ('datasets = ["synthetic-cardiac"]\nmethods = ["unet-l"]\nprofile = 3', "profile: expected a string"),
])
def test_sweep_fields_of_the_wrong_type_are_refused(tmp_path: Path, body: str, message: str) -> None:
    sweep = tmp_path / "s.toml"
    sweep.write_text(f"[sweep]\n{body}\n")
    code, _, err = bench("run", "--sweep", str(sweep), "--results", str(tmp_path / "r"), "--dry-run")
    assert code == 2 and f"{sweep}: {message}" in _one_error(err)
    assert not (tmp_path / "r").exists()


def test_a_tag_too_long_for_a_folder_name_is_refused_before_anything_is_written(tmp_path: Path, cache_dir: Path) -> None:
    code, _, err = bench(*RUN, "--results", str(tmp_path / "r"), "--tag", "x" * 300)
    assert code == 2 and "at most 100 characters" in _one_error(err)
    assert not (tmp_path / "r").exists()


def test_two_tags_that_slug_alike_get_folders_of_their_own(tmp_path: Path, cache_dir: Path) -> None:
    """'a/b' and 'a b' have one folder-safe form; each tag gets its own folder (a hash of the tag
    where the safe form drops characters), so neither is taken for the other nor refused."""
    assert bench(*RUN, "--results", str(tmp_path / "r"), "--tag", "a/b")[0] == 0
    code, _, err = bench(*RUN, "--results", str(tmp_path / "r"), "--tag", "a b")
    assert code == 0 and "already done" not in err, err
    variants = sorted(json.loads(p.read_text())["variant"] for p in (tmp_path / "r").rglob("run.json"))
    assert variants == ["a b", "a/b"]
    assert len({p.parent.parent.parent.name for p in (tmp_path / "r").rglob("run.json")}) == 2


# ------------------------------------------------------------------ outputs and devices
@pytest.mark.parametrize("dry_run", [(), ("--dry-run",)])
def test_a_2d_method_on_the_3d_track_is_refused_before_anything_is_written(tmp_path: Path, cache_dir: Path,
                                                                           dry_run: tuple[str, ...]) -> None:
    """A sweep that pairs a 2-D-only method with a volume dataset is bad input, not a run that fails."""
    code, _, err = bench("run", "--dataset", "synthetic-la", "--methods", "unet-l,abd", "--results",
                         str(tmp_path / "r"), "--quiet", *dry_run)
    assert code == 2 and "method 'abd' is written for 2-D training, not 3-D" in _one_error(err)
    assert not (tmp_path / "r").exists()


def test_a_2d_method_on_a_volume_dataset_made_2d_by_set_is_a_run(tmp_path: Path, cache_dir: Path) -> None:
    """``--set train.dims=2`` makes the pairing legal: the refusal reads the run's configuration with its
    --set items (the protocol's configuration without them is 3-D and must not refuse it)."""
    code, out, err = bench("run", "--dataset", "la", "--profile", "uamt", "--methods", "cct", "--set", "train.dims=2",
                           "--results", str(tmp_path / "r"), "--dry-run")
    assert code == 0 and "cct la 5% seed 0" in out and "error" not in err, err


def test_output_files_are_files_in_existing_folders(tmp_path: Path, cache_dir: Path) -> None:
    (tmp_path / "r").mkdir()
    folder = tmp_path / "out"
    folder.mkdir()
    for args in (("table", "--results", str(tmp_path / "r")), ("speed", "--methods", "unet-l", "--steps", "1")):
        code, _, err = bench(*args, "-o", str(folder))
        assert code == 2 and f"{folder}: is a folder" in _one_error(err)
        missing = tmp_path / "nowhere" / "x.md"
        code, _, err = bench(*args, "-o", str(missing))
        assert code == 2 and "no such folder" in _one_error(err) and not missing.parent.exists()


@pytest.mark.parametrize("device", ["meta", "cuda:7", "tpu"])
def test_a_device_that_cannot_train_is_refused_up_front(tmp_path: Path, cache_dir: Path, device: str) -> None:
    code, _, err = bench(*RUN, "--results", str(tmp_path / "r"), "--device", device)
    assert code == 2 and f"--device {device}" in _one_error(err)
    assert not (tmp_path / "r").exists()
    code, _, err = bench("speed", "--methods", "unet-l", "--steps", "1", "--device", device)
    assert code == 2 and f"--device {device}" in _one_error(err)


# ------------------------------------------------------------------ raw data
def test_an_nnunet_dataset_json_with_more_labels_than_uint8_holds(tmp_path: Path, cache_dir: Path) -> None:
    from .test_nifti import write_nnunet

    raw = write_nnunet(tmp_path / "raw", n=3)
    meta = json.loads((raw / "dataset.json").read_text())
    meta["labels"] = {f"c{i}": i for i in range(300)}
    (raw / "dataset.json").write_text(json.dumps(meta))
    code, _, err = bench("prepare", "mine", "--raw", str(raw), "--format", "nnunet", "--cache", str(tmp_path / "c"))
    assert code == 2 and "300 labels; at most 255 classes" in _one_error(err)


def test_a_wrong_raw_folder_is_refused_before_it_is_walked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import sslbench.cache  # noqa: F401 - the package re-exports the function under the module's name
    prepare = sys.modules["sslbench.cache.prepare"]

    def no_walk(*args: object, **kwargs: object) -> None:
        raise AssertionError("the raw folder was walked before its dataset.json was read")

    monkeypatch.setattr(prepare, "source_fingerprint", no_walk)
    code, _, err = bench("prepare", "mine", "--raw", "/", "--format", "nnunet", "--cache", str(tmp_path / "c"))
    assert code == 2 and "/dataset.json: not found" in _one_error(err)
    code, _, err = bench("prepare", "acdc", "--raw", str(tmp_path), "--cache", str(tmp_path / "c"))
    assert code == 2 and "not an ACDC folder" in _one_error(err)


def test_a_cache_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    from .test_nifti import write_nnunet

    raw = write_nnunet(tmp_path / "raw", n=3)
    (tmp_path / "cachefile").write_text("not a folder")
    code, _, err = bench("prepare", "mine", "--raw", str(raw), "--format", "nnunet", "--cache", str(tmp_path / "cachefile"))
    assert code == 2 and "the cache is not a folder" in _one_error(err)


@pytest.mark.parametrize("image, label, message", [
    (np.zeros((0, 0), np.float32), np.zeros((0, 0), np.uint8), "'image' is empty (shape (0, 0))"),
    (np.zeros((0, 12, 10), np.float32), np.zeros((0, 12, 10), np.uint8), "'image' is empty"),
    (np.array([b"a", b"b"]), np.zeros(2, np.uint8), "'image' holds |S1 values, not numbers"),
])
def test_h5_images_that_are_empty_or_not_numbers(tmp_path: Path, image: np.ndarray, label: np.ndarray,
                                                 message: str) -> None:
    import h5py

    from sslbench.base.errors import DataError
    from sslbench.io.readers import read_h5

    path = tmp_path / "case.h5"
    with h5py.File(path, "w") as fh:
        fh.create_dataset("image", data=image)
        fh.create_dataset("label", data=label)
    with pytest.raises(DataError) as info:
        read_h5(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


def test_an_empty_volume_is_refused_by_the_cache_writer(tmp_path: Path) -> None:
    from sslbench.base.errors import DataError
    from sslbench.data import DATASETS, CacheWriter

    writer = CacheWriter(DATASETS.get("synthetic-cardiac")(), tmp_path / "ds", "x")
    with pytest.raises(DataError, match="empty volume"):
        writer.add("c1", np.zeros((0, 12, 10), np.float32), np.zeros((0, 12, 10), np.uint8), "train", None)


# ------------------------------------------------------------------ full disk, read-only folders
def test_a_full_disk_while_training_fails_the_run_and_says_where(tmp_path: Path, cache_dir: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from sslbench.base.run_files import RunFiles

    save = RunFiles.save_checkpoint
    calls = {"n": 0}

    def full_after_one(self: RunFiles, name: str, obj: object) -> None:
        if name == RunFiles.LAST:
            calls["n"] += 1
            if calls["n"] == 2:  # the second checkpoint (iteration 12) finds the disk full
                raise OSError(errno.ENOSPC, "No space left on device", str(self.ckpt / name))
        save(self, name, obj)

    monkeypatch.setattr(RunFiles, "save_checkpoint", full_after_one)
    results = tmp_path / "r"
    code, _, err = bench(*RUN, "--results", str(results))
    assert code == 1 and "No space left on device" in err
    code, out, _ = bench("status", "--results", str(results), "--format", "json")
    row = json.loads(out)["runs"][0]
    assert row["state"] == "failed" and "No space left on device" in row["error"] and "last.pt" in row["error"]
    progress = json.loads(next(results.rglob("progress.json")).read_text())
    assert progress["iteration"] == 12 and progress["checkpoint"] == {"stage": "train", "iteration": 6}
    assert not any(results.rglob(".reserve"))


def test_the_reserve_lets_a_failure_be_recorded_on_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sslbench.base.run_files as run_files

    files = run_files.RunFiles(tmp_path / "run")
    files.create()
    files.reserve()
    assert (tmp_path / "run" / ".reserve").stat().st_size == run_files.RunFiles.RESERVE_BYTES
    write_json = run_files.write_json

    def full_unless_freed(path: Path, obj: object) -> None:  # the disk has room only once the reserve is gone
        if (tmp_path / "run" / ".reserve").exists():
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        write_json(path, obj)

    monkeypatch.setattr(run_files, "write_json", full_unless_freed)
    files.note_failure(OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "ckpt" / "last.pt")))
    failed = json.loads((tmp_path / "run" / "failed.json").read_text())
    assert "No space left on device" in failed["error"] and "last.pt" in failed["error"]


def test_finished_runs_are_read_without_write_access(tmp_path: Path, cache_dir: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    results = tmp_path / "r"
    assert bench(*RUN, "--results", str(results))[0] == 0
    import sslbench.base.locks as locks

    def read_only(self: object, *args: object, **kwargs: object) -> bool:
        raise PermissionError(errno.EROFS, "Read-only file system", str(results))

    monkeypatch.setattr(locks.FolderLock, "acquire", read_only)
    before = {p: p.stat().st_mtime_ns for p in results.rglob("*")}
    code, _, err = bench(*RUN, "--results", str(results))
    assert code == 0 and "FAILED" not in err, err
    assert {p: p.stat().st_mtime_ns for p in results.rglob("*")} == before
    assert os.access(results, os.R_OK)


def test_a_full_disk_while_preparing_is_one_line_and_leaves_nothing_half_written(tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import sslbench.data as data

    from .test_nifti import write_nnunet

    raw = write_nnunet(tmp_path / "raw", n=4)
    write_slabs, calls = data.write_slabs, {"n": 0}

    def full_on_the_third(path: Path, *args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        write_slabs(path, *args, **kwargs)

    monkeypatch.setattr(data, "write_slabs", full_on_the_third)
    cache = tmp_path / "cache"
    code, _, err = bench("prepare", "mine", "--raw", str(raw), "--format", "nnunet", "--cache", str(cache))
    assert code == 2 and "No space left on device" in _one_error(err) and ".slabs" in _one_error(err)
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []  # no dataset, no temp folder


@pytest.mark.parametrize("args, message", [
    (["table", "--format", "html"], "bench table: Invalid value for '--format'"),
    (["run", "--bogus"], "bench run: No such option '--bogus'"),
    (["nosuch"], "bench: No such command 'nosuch'"),
    (["run", "--ratios", "1,abc"], "bench run: Invalid value for '--ratios': not a list of ratios: '1,abc'"),
    (["status", "--results"], "Option '--results' requires an argument"),
])
def test_what_click_refuses_is_one_error_line_too(args: list[str], message: str) -> None:
    """An unknown option or a value outside a choice: one ``error:`` line naming the command and its
    help, exit code 2 (not click's three-line usage block)."""
    code, out, err = bench(*args)
    assert code == 2 and out == ""
    line = _one_error(err)
    command = message.split(":")[0] if message.startswith("bench") else "bench COMMAND"
    assert message in line and line.endswith(f"(see {command} --help)")
