"""Reliability III leftovers: a copied run folder is one run in ``bench status`` as in the tables; a
FIFO, device or socket given as ``--raw`` is named as what it is; a refused SLURM submission is one
line and leaves nothing of its own behind."""
from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest

from sslbench.base.errors import DataError

from .conftest import TINY_RUN
from .test_cli import bench
from .test_slurm import FAKE_SRUN
from .test_views import fake_run


# ------------------------------------------------------------------ a copied run folder in bench status
def _own_run(root: Path, seed: int, dsc: float) -> Path:
    """A finished run whose record names its own place (``id``), as every record bench writes does."""
    folder = fake_run(root, "synthetic-cardiac", "mt", 5, seed, dsc)
    record = json.loads((folder / "run.json").read_text())
    record["id"] = folder.relative_to(root).as_posix()
    (folder / "run.json").write_text(json.dumps(record))
    return folder


def test_a_copied_run_folder_is_one_run_in_status_as_in_the_tables(tmp_path: Path) -> None:
    from sslbench.base.finished_runs import iter_records
    from sslbench.run.status import collect

    root = tmp_path / "r"
    for seed in (0, 1):
        _own_run(root, seed, 60 + 10 * seed)
    # a copy beside it that status lists (it sorts first: 'synthetic-cardiac-old' < 'synthetic-cardiac/')
    # and an archive deeper down that it does not
    shutil.copytree(root / "synthetic-cardiac", root / "synthetic-cardiac-old")
    shutil.copytree(root / "synthetic-cardiac" / "quick" / "mt" / "ratio-5" / "seed-0",
                    root / "archive" / "2026-11" / "seed-0")
    own = [f"synthetic-cardiac/quick/mt/ratio-5/seed-{s}" for s in (0, 1)]

    code, out, err = bench("status", "--results", str(root))
    assert code == 0 and "Traceback" not in err, err
    lines = out.splitlines()
    assert [line.split()[0] for line in lines[1:3]] == own, out          # each run once, at its own place
    assert lines[-1] == "2 run(s): 2 done", out
    [copies] = [line for line in lines if "counted once" in line]
    assert copies.startswith("3 run folder(s) repeat a run listed here and are counted once: "), copies
    assert f"synthetic-cardiac-old/quick/mt/ratio-5/seed-0 (a copy of {own[0]})" in copies
    assert f"archive/2026-11/seed-0 (a copy of {own[0]})" in copies
    # the same folders as the tables keep
    kept = {Path(r["_dir"]).relative_to(root).as_posix() for r in iter_records(root, warn=lambda m: None)}
    assert kept == set(own) == {s.run for s in collect(root)}
    code, out, _ = bench("status", "--results", str(root), "--format", "json")
    data = json.loads(out)
    assert data["summary"] == "2 run(s): 2 done"
    assert sorted(data["runs"][0]["copies"]) == ["archive/2026-11/seed-0", "synthetic-cardiac-old/quick/mt/ratio-5/seed-0"]


def test_without_an_id_the_copy_nearest_the_root_is_kept_by_status_and_tables_alike(tmp_path: Path) -> None:
    from sslbench.base.finished_runs import iter_records
    from sslbench.run.status import collect

    root = tmp_path / "r"
    fake_run(root, "synthetic-cardiac", "mt", 5, 0, 60)                # an older record: no id
    shutil.copytree(root / "synthetic-cardiac", root / "archive" / "synthetic-cardiac")
    kept = [Path(r["_dir"]).relative_to(root).as_posix() for r in iter_records(root, warn=lambda m: None)]
    states = collect(root)
    assert kept == [s.run for s in states] == ["synthetic-cardiac/quick/mt/ratio-5/seed-0"]
    assert states[0].copies == ["archive/synthetic-cardiac/quick/mt/ratio-5/seed-0"]


def test_status_reads_each_record_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Status and its copy check share one read of each run.json (a record may be large)."""
    from sslbench.base import run_files
    from sslbench.run.status import collect

    root = tmp_path / "r"
    for seed in (0, 1):
        _own_run(root, seed, 60)
    reads: list[str] = []
    real = run_files.read_json
    monkeypatch.setattr(run_files, "read_json", lambda path: reads.append(Path(path).name) or real(path))
    assert [s.state for s in collect(root)] == ["done", "done"]
    assert reads.count("run.json") == 2, reads


# ------------------------------------------------------------------ --raw that is not a folder
def _special(tmp_path: Path, kind: str) -> Path:
    if kind == "fifo":
        path = tmp_path / "raw-fifo"
        os.mkfifo(path)
    elif kind == "socket":
        path = tmp_path / "s.sock"
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.close()
    elif kind == "file":
        path = tmp_path / "raw.txt"
        path.write_text("not a folder")
    elif kind == "dangling":
        path = tmp_path / "raw-link"
        path.symlink_to(tmp_path / "nowhere")
    elif kind == "device":
        path = Path("/dev/null")
    else:
        path = tmp_path / "nothing-here"
    return path


@pytest.mark.parametrize("kind, said", [
    ("fifo", "is a FIFO, not a folder"), ("socket", "is a socket, not a folder"),
    ("device", "is a character device, not a folder"), ("file", "is a regular file, not a folder"),
    ("dangling", "is a symbolic link to nothing, not a folder"), ("missing", "no such folder"),
])
def test_raw_that_is_not_a_folder_says_what_it_is(tmp_path: Path, kind: str, said: str) -> None:
    from sslbench.cache import prepare

    raw = _special(tmp_path, kind)
    with pytest.raises(DataError) as info:
        prepare("mine", raw, tmp_path / "cache", kind="nnunet")
    assert str(info.value) == f"{raw}: {said}"
    assert not (tmp_path / "cache" / "mine").exists()


def test_bench_prepare_names_a_fifo_given_as_raw(tmp_path: Path) -> None:
    raw = _special(tmp_path, "fifo")
    code, _, err = bench("prepare", "mine", "--raw", str(raw), "--format", "nnunet", "--cache", str(tmp_path / "c"))
    assert code == 2 and err.strip() == f"error: {raw}: is a FIFO, not a folder", err


@pytest.mark.parametrize("kind, said", [("fifo", "a FIFO"), ("socket", "a socket"), ("device", "a character device")])
def test_a_raw_input_file_that_is_not_regular_says_what_it_is(tmp_path: Path, kind: str, said: str) -> None:
    """A sweep file, an executor config, a raw dataset's file: the same reader's check."""
    from sslbench.io.readers import regular_input

    path = _special(tmp_path, kind)
    with pytest.raises(DataError) as info:
        regular_input(path)
    assert str(info.value) == f"{path}: not a regular file ({said}); refused"


def test_a_link_to_a_raw_folder_is_still_a_folder() -> None:
    from sslbench.base.file_kinds import kind_of

    assert kind_of(Path("/"), follow=True) == "a folder"
    assert kind_of(Path("/dev/stdin"), follow=False) == "a symbolic link"


# ------------------------------------------------------------------ a refused SLURM submission
REFUSING_SBATCH = """#!/bin/bash
# sbatch that refuses, as a controller does an unknown partition (or answers what no one can read)
touch "$FAKE_SLURM/called"
if [ -n "${FAKE_SBATCH_SAYS:-}" ]; then echo "$FAKE_SBATCH_SAYS"; exit 0; fi
echo "sbatch: error: Batch job submission failed: Invalid partition name specified" >&2
echo "sbatch: error: (a second line)" >&2
exit 1
"""


@pytest.fixture
def refusing_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "fake-slurm"
    (d / "bin").mkdir(parents=True)
    (d / "bin" / "sbatch").write_text(REFUSING_SBATCH)
    (d / "bin" / "squeue").write_text("#!/bin/bash\nexit 0\n")
    (d / "bin" / "srun").write_text(FAKE_SRUN)           # submitit wants one on PATH; never run
    for tool in ("sbatch", "squeue", "srun"):
        (d / "bin" / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{d / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(d))
    return d


def _submit(root: Path, *seeds: str) -> tuple[int, str, str]:
    return bench("run", "--results", str(root), "--quiet", "--executor", "slurm", "--methods", "unet-l",
                 "--seeds", ",".join(seeds), *TINY_RUN)


@pytest.mark.parametrize("seeds", [("0",), ("0", "1")])  # one task (submitit's job path), an array
def test_a_refused_submission_is_one_line_and_leaves_nothing_of_its_own(tmp_path: Path, cache_dir: Path,
                                                                        refusing_slurm: Path, seeds: tuple) -> None:
    root = tmp_path / "r"
    code, out, err = _submit(root, *seeds)
    assert (refusing_slurm / "called").exists()                                   # it reached sbatch
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert "sbatch refused the array (sbatch: error: Batch job submission failed: Invalid partition name " \
           "specified; sbatch: error: (a second line)); nothing submitted" in errors[0]
    assert not any(line.startswith("sbatch:") for line in (out + err).splitlines()), err  # not echoed as it came
    assert not root.exists()                                                      # it made the folder: gone


def test_a_refused_submission_removes_only_its_own_files(tmp_path: Path, cache_dir: Path,
                                                        refusing_slurm: Path) -> None:
    """What an earlier submission left in the logs folder (a job's folder, a pickle of its own) stays."""
    root = tmp_path / "r"
    logs = root / "slurm-logs"
    logs.mkdir(parents=True, mode=0o700)
    (logs / "41_0").mkdir()
    (logs / "41_0" / "41_0_log.out").write_text("an earlier task's log\n")
    earlier = logs / f"{'a' * 32}.pkl"
    earlier.write_bytes(b"an earlier submission's")
    before = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    code, _, err = _submit(root, "0", "1")
    assert code == 2 and "sbatch refused the array" in err, err
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == before


def test_an_answer_sbatch_gives_that_cannot_be_read_is_one_line_too(tmp_path: Path, cache_dir: Path,
                                                                   refusing_slurm: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_SBATCH_SAYS", "Submitted, maybe\x1b[2J")
    root = tmp_path / "r"
    code, _, err = _submit(root, "0", "1")
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert "sbatch's answer was not understood" in errors[0] and "\x1b" not in err and "see squeue" in errors[0]
    assert not root.exists()


def test_a_long_split_list_is_checked_in_linear_time(tmp_path: Path) -> None:
    """100 000 unique ids (a hostile pass's hang: duplicates were counted with list.count)."""
    import sslbench.io.readers as readers

    path = tmp_path / "train.list"
    path.write_text("".join(f"case{i:06d}\n" for i in range(100_000)))
    calls = []
    real = readers.Counter
    readers.Counter = lambda items: calls.append(len(items)) or real(items)  # type: ignore[assignment]
    try:
        assert len(readers.read_list(path)) == 100_000 and calls == [100_000]
    finally:
        readers.Counter = real  # type: ignore[assignment]
    path.write_text("a\nb\na\n")
    with pytest.raises(Exception, match="duplicate ids a"):
        readers.read_list(path)


def test_a_folder_name_with_a_newline_is_one_status_row(tmp_path: Path) -> None:
    from sslbench.run.status import RunState, render

    text = render([RunState("la/quick/mt@a\nb\x1b[2J/ratio-25/seed-0", "done")])
    rows = text.splitlines()
    assert len(rows) == 3 and "\x1b" not in text and rows[1].startswith("la/quick/mt@a b")


def test_a_run_bar_shows_its_description_as_one_printable_line() -> None:
    """A run's progress bar writes to the raw stream (it moves the cursor on purpose), so its
    description, which may hold a name from disk, is made printable first."""
    from sslbench.base.printable import run_bar

    bar = run_bar(3, "mt \x1b]0;owned\x07 ds\nseed 0", True)
    try:
        assert "\x1b" not in bar.desc and "\x07" not in bar.desc and "\n" not in bar.desc
        assert bar.desc.startswith("mt ") and bar.desc.endswith("seed 0")
    finally:
        bar.close()
