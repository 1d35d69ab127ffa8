"""A results folder or a raw dataset is someone else's input: a planted symbolic link or special file
never makes the benchmark write outside its folders, follow the link, or hang; each is one line
naming the path, before anything is written (exit code 2)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .conftest import TINY_RUN
from .test_cli import bench

RUN = ("run", "--methods", "unet-l", "--ratios", "5", "--seeds", "0", "--quiet", "--no-table", *TINY_RUN)


def _run_folder(results: Path) -> Path:
    folder = results / "synthetic-cardiac" / "quick" / "unet-l" / "ratio-5" / "seed-0"
    folder.mkdir(parents=True)
    return folder


@pytest.mark.parametrize("plant", ["lock", "log", "config"])
def test_a_planted_link_in_a_run_folder_is_refused_and_its_target_untouched(tmp_path: Path, cache_dir: Path,
                                                                             plant: str) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    folder = _run_folder(tmp_path / "r")
    name = {"lock": ".lock", "log": "train_log.jsonl", "config": "config.json"}[plant]
    (folder / name).symlink_to(target)
    code, _, err = bench(*RUN, "--results", str(tmp_path / "r"))
    assert code == 2 and f"{folder / name}: is a symbolic link" in err
    assert target.read_text() == "keep me\n"


def test_a_dangling_log_link_creates_nothing_outside(tmp_path: Path, cache_dir: Path) -> None:
    folder = _run_folder(tmp_path / "r")
    (folder / "train_log.jsonl").symlink_to(tmp_path / "outside.jsonl")
    code, _, err = bench(*RUN, "--results", str(tmp_path / "r"))
    assert code == 2 and "is a symbolic link" in err and not (tmp_path / "outside.jsonl").exists()


def test_a_run_folder_or_ckpt_that_is_a_link_is_refused(tmp_path: Path, cache_dir: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "theirs.txt").write_text("not ours")
    parent = tmp_path / "r" / "synthetic-cardiac" / "quick" / "unet-l" / "ratio-5"
    parent.mkdir(parents=True)
    (parent / "seed-0").symlink_to(elsewhere, target_is_directory=True)
    code, _, err = bench(*RUN, "--results", str(tmp_path / "r"), "--force")
    assert code == 2 and "seed-0: is a symbolic link" in err
    assert sorted(p.name for p in elsewhere.iterdir()) == ["theirs.txt"]
    (parent / "seed-0").unlink()
    folder = parent / "seed-0"
    folder.mkdir()
    (folder / "ckpt").symlink_to(elsewhere, target_is_directory=True)
    code, _, err = bench(*RUN, "--results", str(tmp_path / "r"))
    assert code == 2 and "ckpt: is a symbolic link" in err and sorted(p.name for p in elsewhere.iterdir()) == ["theirs.txt"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_as_a_checkpoint_is_one_line_not_a_hang(tmp_path: Path, cache_dir: Path) -> None:
    folder = _run_folder(tmp_path / "r")
    (folder / "ckpt").mkdir()
    os.mkfifo(folder / "ckpt" / "last.pt")
    script = ("import sys; from click.testing import CliRunner; from sslbench.cli import main; "
              f"r = CliRunner().invoke(main, {[*RUN, '--results', str(tmp_path / 'r')]!r}); "
              "sys.stderr.write(r.output); sys.exit(r.exit_code)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "SSLBENCH_CACHE": str(cache_dir)})
    assert done.returncode == 2 and "last.pt: is not a regular file" in done.stderr


def test_force_removes_only_what_the_benchmark_wrote(tmp_path: Path, cache_dir: Path) -> None:
    results = tmp_path / "r"
    assert bench(*RUN, "--results", str(results))[0] == 0
    folder = next(results.rglob("seed-0"))
    (folder / "my-notes.txt").write_text("mine")
    (folder / "ckpt" / "my-weights.bin").write_bytes(b"mine")
    code, _, err = bench(*RUN, "--results", str(results), "--set", "train.lr=0.02", "--force")
    assert code == 0, err
    assert (folder / "my-notes.txt").read_text() == "mine" and (folder / "ckpt" / "my-weights.bin").exists()
    assert json.loads((folder / "config.json").read_text())["train"]["lr"] == 0.02


def test_hdf5_data_kept_outside_its_file_is_refused(tmp_path: Path) -> None:
    import h5py

    from sslbench.base.errors import DataError
    from sslbench.io.readers import read_h5

    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(64, dtype=np.float32).tobytes())
    path = tmp_path / "case.h5"
    with h5py.File(path, "w") as fh:
        fh.create_dataset("image", shape=(4, 4, 4), dtype="f4", external=[(str(secret), 0, 256)])
        fh.create_dataset("label", data=np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(DataError, match="keeps its data outside this file"):
        read_h5(path)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as fh:
        fh.create_dataset("image", data=np.zeros((2, 4, 4), np.float32))
    linked = tmp_path / "linked.h5"
    with h5py.File(linked, "w") as fh:
        fh["image"] = h5py.ExternalLink(str(other), "image")
        fh.create_dataset("label", data=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(DataError, match="'image' is a ExternalLink"):
        read_h5(linked)
    fifo = tmp_path / "fifo.h5"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="not a regular file"):
        read_h5(fifo)


def test_a_meta_json_kind_that_walks_out_is_refused(tmp_path: Path, cardiac) -> None:  # noqa: ANN001
    import shutil

    from sslbench.base.errors import DataError
    from sslbench.cache import PreparedDataset

    copy = tmp_path / "copy"
    shutil.copytree(cardiac.folder, copy, ignore=shutil.ignore_patterns("slices-*"))
    meta = json.loads((copy / "meta.json").read_text())
    meta["kind"] = "../../../../tmp/x"
    (copy / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"meta.json: not a valid prepared dataset \(kind: '../../../../tmp/x' is not a name"):
        PreparedDataset(copy)


def test_a_huge_meta_json_is_refused_without_being_read(tmp_path: Path, cardiac) -> None:  # noqa: ANN001
    """A planted sparse meta.json of 1 TB names itself and its size; nothing is read into memory."""
    import shutil

    from sslbench.base.errors import DataError
    from sslbench.cache import PreparedDataset
    from sslbench.cache.reader import current_fingerprint

    copy = tmp_path / "copy"
    shutil.copytree(cardiac.folder, copy, ignore=shutil.ignore_patterns("slices-*"))
    with open(copy / "meta.json", "r+b") as fh:
        fh.truncate(2**40)
    for read in (PreparedDataset, current_fingerprint):
        with pytest.raises(DataError, match=r"meta.json: unreadable \(too large: 1,099,511,627,776 bytes.*--force"):
            read(copy)


def test_the_code_version_reads_git_without_taking_its_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    import sslbench.base.code_identity as runner

    calls: list[list[str]] = []

    class Done:
        returncode, stdout = 0, "abc1234\n"

    monkeypatch.setattr(runner.subprocess, "run", lambda args, **kw: calls.append(list(args)) or Done())
    runner.code_version.cache_clear() if hasattr(runner.code_version, "cache_clear") else None
    runner.code_version()
    runner.code_version.cache_clear()  # the next caller reads git for real
    assert calls and all(args[:2] == ["git", "--no-optional-locks"] for args in calls)


def test_the_slurm_submission_pickles_live_in_a_private_folder(tmp_path: Path) -> None:
    """The array tasks unpickle what the submission folder holds: it is made 0700, and one that others
    can write is refused before anything is submitted."""
    from sslbench.base.errors import BenchError
    from sslbench.run.slurm import private_folder

    logs = tmp_path / "r" / "slurm-logs"
    private_folder(logs)
    assert logs.is_dir() and (logs.stat().st_mode & 0o777) == 0o700
    os.chmod(logs, 0o777)
    with pytest.raises(BenchError, match="writable by others .*chmod 700"):
        private_folder(logs)
    os.chmod(logs, 0o700)
    private_folder(logs)
    linked = tmp_path / "linked"
    linked.symlink_to(logs, target_is_directory=True)
    with pytest.raises(BenchError, match="is a symbolic link"):
        private_folder(linked)


def test_a_planted_link_as_a_cache_lock_is_never_followed(tmp_path: Path) -> None:
    """``ln -s /some/file $CACHE/.NAME.lock``: preparation refuses the lock (O_NOFOLLOW) with one line
    and the link's target keeps its content."""
    cache = tmp_path / "cache"
    cache.mkdir()
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    (cache / ".synthetic-liver.lock").symlink_to(target)
    code, _, err = bench("prepare", "synthetic-liver", "--cache", str(cache))
    assert code == 2 and ".synthetic-liver.lock: cannot be used as a lock file" in err
    assert target.read_text() == "keep me\n"


def test_run_files_read_regular_files_only(tmp_path: Path) -> None:
    """Every read of a run folder's file checks, without following a link, that it is a regular file:
    a link (even to a valid file) or a FIFO is refused, never opened (a FIFO would block)."""
    import torch

    from sslbench.base.errors import UnsafePath
    from sslbench.base.run_files import RunFiles

    folder = tmp_path / "run"
    (folder / "ckpt").mkdir(parents=True)
    real = tmp_path / "elsewhere.json"
    real.write_text('{"hash": "x"}')
    (folder / "config.json").symlink_to(real)
    os.mkfifo(folder / "progress.json")
    torch.save({"weights": {}}, tmp_path / "w.pt")
    (folder / "ckpt" / "best.pt").symlink_to(tmp_path / "w.pt")
    files = RunFiles(folder)
    with pytest.raises(UnsafePath, match="config.json: is a symbolic link"):
        files.read(RunFiles.CONFIG)
    with pytest.raises(UnsafePath, match="progress.json: is not a regular file"):
        files.read(RunFiles.PROGRESS)
    assert files.read_if_any(RunFiles.CONFIG) is None and files.read_if_any(RunFiles.PROGRESS) is None
    with pytest.raises(UnsafePath, match="best.pt: is a symbolic link"):
        files.load_checkpoint(RunFiles.BEST, torch.device("cpu"))


def _sentinel(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "sentinel"
    folder.mkdir()
    (folder / "target").write_text("keep me\n")
    return folder, folder / "target"


@pytest.mark.parametrize("name", ["config.json", "run.json", "metrics.json", "metrics-last.json", "DONE",
                                  "train_log.jsonl", "progress.json", "failed.json", "slurm.json", ".lock",
                                  "error.log", ".reserve", "ckpt/last.pt", "ckpt/best.pt", "ckpt/pretrain-best.pt",
                                  "ckpt", "predictions", "tb"])
def test_every_path_a_run_writes_refuses_a_planted_link(tmp_path: Path, cache_dir: Path, name: str) -> None:
    sentinel, target = _sentinel(tmp_path)
    folder = _run_folder(tmp_path / "r")
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(sentinel if "." not in name and name != "DONE" else target)
    code, _, err = bench(*RUN, "--results", str(tmp_path / "r"), "--save-predictions")
    assert code == 2 and f"{path}: is a symbolic link" in err
    assert sorted(p.name for p in sentinel.iterdir()) == ["target"] and target.read_text() == "keep me\n"


def test_report_and_output_files_replace_a_planted_link_never_write_through_it(tmp_path: Path,
                                                                             cache_dir: Path) -> None:
    sentinel, target = _sentinel(tmp_path)
    results = tmp_path / "r"
    assert bench(*RUN, "--results", str(results))[0] == 0
    for out in ("table.md", "export.csv"):
        (tmp_path / out).symlink_to(target)
    assert bench("table", "--results", str(results), "-o", str(tmp_path / "table.md"))[0] == 0
    assert bench("export", "--results", str(results), "-o", str(tmp_path / "export.csv"))[0] == 0
    report = tmp_path / "report"
    (report / "runs").mkdir(parents=True)
    (report / "index.html").symlink_to(target)
    assert bench("report", "--results", str(results), "-o", str(report))[0] == 0
    assert not (report / "index.html").is_symlink() and target.read_text() == "keep me\n"
    assert not (tmp_path / "table.md").is_symlink() and not (tmp_path / "export.csv").is_symlink()
    (report / "runs").rename(tmp_path / "old-runs")
    (report / "runs").symlink_to(sentinel)
    code, _, err = bench("report", "--results", str(results), "-o", str(report))
    assert code == 2 and f"{report / 'runs'}: is a symbolic link" in err
    assert sorted(p.name for p in sentinel.iterdir()) == ["target"]


def test_a_prepared_dataset_that_is_a_link_is_never_written_through(tmp_path: Path, cardiac) -> None:  # noqa: ANN001
    import shutil

    from sslbench.base.errors import DataError
    from sslbench.cache import PreparedDataset

    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(cardiac.folder, elsewhere, ignore=shutil.ignore_patterns("slices-*"))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "synthetic-cardiac").symlink_to(elsewhere)
    with pytest.raises(DataError, match="synthetic-cardiac: is a symbolic link"):
        PreparedDataset(tmp_path / "cache" / "synthetic-cardiac").train_slices(32)
    assert not list(elsewhere.glob("slices-*"))
    os.mkfifo(elsewhere / "fifo")
    (elsewhere / "meta.json").rename(elsewhere / "meta.real")
    (elsewhere / "meta.json").symlink_to(elsewhere / "fifo")
    _feed_fifo_if_opened(elsewhere / "fifo")  # were the FIFO read, the test would fail, not hang
    with pytest.raises(DataError, match="meta.json: is a symbolic link"):
        PreparedDataset(elsewhere)


def _feed_fifo_if_opened(fifo: Path, seconds: float = 5.0) -> None:
    """A writer that, should anyone open ``fifo`` for reading within ``seconds``, hands them "{}"."""
    import errno
    import threading
    import time

    def feed() -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                    return
                time.sleep(0.01)
                continue
            os.write(fd, b"{}")
            os.close(fd)
            return

    threading.Thread(target=feed, daemon=True).start()


def test_appending_to_the_log_never_follows_a_link(tmp_path: Path) -> None:
    from sslbench.base.errors import UnsafePath
    from sslbench.base.run_files import RunFiles

    files = RunFiles(tmp_path / "run")
    files.create()
    (tmp_path / "run" / "train_log.jsonl").symlink_to(tmp_path / "outside.jsonl")
    with pytest.raises(UnsafePath, match="train_log.jsonl: cannot append to it"):
        files.append_log({"stage": "train", "iteration": 1})
    assert not (tmp_path / "outside.jsonl").exists()
