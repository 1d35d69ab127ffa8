"""Every file read back from a run folder is read within a size limit of its kind
(``sslbench.base.run_files.READ_LIMITS``): an oversized file (here: sparse, so no disk is used) is
damaged, with the same one-line error, warning or skip as a truncated one, naming the file and its
size, and is never read past its limit (checked by counting the bytes read, not by timing). The
training log is streamed (``sslbench.base.log_reader``) and a resumed run trims it the same way."""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sslbench.base import run_files
from sslbench.base.errors import BenchError
from sslbench.base.run_files import READ_LIMITS, RunFiles, read_json

from .conftest import TINY_RUN
from .test_cli import bench
from .test_views import fake_run

GIB2 = 2 * 1024 ** 3
KINDS = sorted(READ_LIMITS)


@pytest.fixture
def bytes_read(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The sizes of every ``os.read`` and ``os.pread`` made while the test runs."""
    sizes: list[int] = []
    real_read, real_pread = os.read, os.pread

    def read(fd: int, n: int) -> bytes:
        data = real_read(fd, n)
        sizes.append(len(data))
        return data

    def pread(fd: int, n: int, at: int) -> bytes:
        data = real_pread(fd, n, at)
        sizes.append(len(data))
        return data

    monkeypatch.setattr(os, "read", read)
    monkeypatch.setattr(os, "pread", pread)
    yield sizes


def _oversized(path: Path, size: int) -> None:
    """A valid JSON object at its start, then a hole up to ``size`` bytes (no disk used)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'{"a": 1}')
    os.truncate(path, size)


def test_every_kind_has_a_limit_many_times_what_the_benchmark_writes() -> None:
    for name in ("run.json", "config.json", "metrics.json", "metrics-last.json", "progress.json", "failed.json",
                 "slurm.json"):
        assert name in READ_LIMITS
    assert READ_LIMITS["metrics.json"] == READ_LIMITS["metrics-last.json"] >= 200 * 2 ** 20
    assert all(READ_LIMITS[n] <= 16 * 2 ** 20 for n in ("run.json", "config.json", "progress.json"))


@pytest.mark.parametrize("size", ["limit+1", "2GiB"])
@pytest.mark.parametrize("name", KINDS)
def test_an_oversized_file_of_each_kind_is_damaged_and_never_read(tmp_path: Path, bytes_read: list[int],
                                                                  name: str, size: str) -> None:
    path = tmp_path / name
    n = READ_LIMITS[name] + 1 if size == "limit+1" else GIB2
    _oversized(path, n)
    with pytest.raises(BenchError) as info:
        read_json(path)
    message = str(info.value)
    assert message == f"{path}: unreadable (too large: {n:,} bytes; the limit for {name} is {READ_LIMITS[name]:,})"
    assert sum(bytes_read) == 0  # refused on the open file's fstat, before any read


@pytest.mark.parametrize("name", KINDS)
def test_through_run_files_an_oversized_file_is_what_a_truncated_one_is(tmp_path: Path, name: str) -> None:
    files = RunFiles(tmp_path)
    _oversized(tmp_path / name, GIB2)
    assert files.read_if_any(name) is None                  # bench status: as missing or damaged
    with pytest.raises(BenchError, match=rf"{name}: unreadable \(too large: 2,147,483,648 bytes"):
        files.read(name)                                    # one line naming the file and its size
    if name.startswith("metrics"):
        with pytest.raises(BenchError, match=rf"{name}: unreadable \(too large"):
            files.read_metrics(name)
    if name == "run.json":
        (tmp_path / "DONE").write_text("x\n")
        assert files.record() is None and not files.is_done()   # evaluated again, as a truncated record


def test_at_most_limit_plus_one_bytes_are_read(tmp_path: Path, bytes_read: list[int]) -> None:
    """The limit itself is read; one byte more is refused on fstat; a file that grows past the limit
    after fstat (here: fstat reports a smaller size) is read only to ``limit + 1`` bytes, though the
    whole file would be valid JSON."""
    path = tmp_path / "run.json"
    text = json.dumps({"pad": "x" * 50})
    path.write_text(text)
    assert read_json(path, limit=len(text)) == {"pad": "x" * 50}
    with pytest.raises(BenchError, match=f"too large: {len(text):,} bytes; the limit for run.json is {len(text) - 1:,}"):
        read_json(path, limit=len(text) - 1)

    big = json.dumps({"pad": "x" * 5_000_000})   # valid: read whole, it would be accepted
    path.write_text(big)
    real_fstat = os.fstat

    def fstat(fd: int) -> os.stat_result:
        st = real_fstat(fd)
        return os.stat_result((st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid, st.st_gid, 10,
                               int(st.st_atime), int(st.st_mtime), int(st.st_ctime)))

    bytes_read.clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "fstat", fstat)
        with pytest.raises(BenchError, match=r"run.json: unreadable \(too large: it grew past 1,000 bytes"):
            read_json(path, limit=1000)
    assert sum(bytes_read) == 1001


def _holes_supported(tmp_path: Path) -> bool:
    probe = tmp_path / "probe"
    probe.write_bytes(b"x")
    os.truncate(probe, 1 << 24)
    fd = os.open(probe, os.O_RDONLY)
    try:
        return hasattr(os, "SEEK_HOLE") and os.lseek(fd, 0, os.SEEK_HOLE) < (1 << 24)
    except OSError:
        return False
    finally:
        os.close(fd)
        probe.unlink()


def test_a_sparse_file_under_its_limit_is_refused_unread(tmp_path: Path, bytes_read: list[int]) -> None:
    """A hole is zeros, which are never JSON: a sparse file within its limit is damaged before a byte
    of it is read (where the file system tells holes apart; elsewhere it is read, within the limit)."""
    if not _holes_supported(tmp_path):
        pytest.skip("this file system does not report holes")
    path = tmp_path / "metrics.json"
    _oversized(path, 64 * 2 ** 20)
    with pytest.raises(BenchError, match=r"metrics.json: unreadable \(67,108,864 bytes holding a hole"):
        read_json(path)
    assert sum(bytes_read) == 0


def test_damaged_content_within_the_limit_is_still_one_line(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    for content, kind in ((b"\xff", "UnicodeDecodeError"), (b"{", "JSONDecodeError"), (b"[" * 100_000, "RecursionError"),
                          (b"1" * 5000, "ValueError")):
        path.write_bytes(content)
        with pytest.raises(BenchError, match=rf"progress.json: unreadable \({kind}"):
            read_json(path)


# ------------------------------------------------------------------ through the commands
@pytest.fixture
def results(tmp_path: Path) -> tuple[Path, Path]:
    """A results folder of two finished runs; the second is damaged by the test."""
    root = tmp_path / "r"
    fake_run(root, "acdc", "mt", 5, 0, 60)
    return root, fake_run(root, "acdc", "mt", 5, 1, 61)


def test_status_and_table_skip_an_oversized_record(results: tuple[Path, Path]) -> None:
    root, damaged = results
    _oversized(damaged / "run.json", GIB2)
    code, out, err = bench("status", "--results", str(root))
    assert code == 0 and "Traceback" not in err
    assert "seed-0" in out and "run.json unreadable or damaged" in out
    code, out, err = bench("table", "--results", str(root))
    assert code == 0 and "Traceback" not in err
    assert f"warning: skipping {damaged / 'run.json'}: unreadable (too large: 2,147,483,648 bytes" in err
    assert "1 seed(s) per cell" in out


@pytest.mark.parametrize("name", ["metrics.json", "metrics-last.json"])
def test_export_skips_oversized_metrics_naming_them(results: tuple[Path, Path], tmp_path: Path, name: str) -> None:
    root, damaged = results
    _oversized(damaged / name, GIB2)
    code, _, err = bench("export", "--results", str(root), "-o", str(tmp_path / "all.csv"))
    assert code == 0 and "Traceback" not in err
    assert f"skipping {damaged / name}: unreadable (too large: 2,147,483,648 bytes" in err


@pytest.mark.parametrize("name", ["progress.json", "failed.json", "slurm.json", "config.json"])
def test_status_of_an_unfinished_run_with_an_oversized_file(results: tuple[Path, Path], name: str) -> None:
    root, damaged = results
    for done in ("DONE", "run.json", "metrics.json", "metrics-last.json"):
        (damaged / done).unlink()
    _oversized(damaged / name, GIB2)
    code, out, err = bench("status", "--results", str(root))
    assert code == 0 and "Traceback" not in err
    assert "seed-0" in out and "seed-1" in out


def test_run_refuses_a_folder_with_an_oversized_config_in_one_line(tmp_path: Path, cache_dir: Path) -> None:
    """As a truncated config.json: the folder's run is unknown, only --force replaces it (refused
    before anything is prepared or trained)."""
    root = tmp_path / "r"
    folder = root / "synthetic-cardiac" / "quick" / "mt" / "ratio-5" / "seed-0"
    _oversized(folder / "config.json", GIB2)
    code, _, err = bench("run", "--methods", "mt", "--ratios", "5", "--seeds", "0", "--results", str(root),
                         "--quiet", "--no-table", *TINY_RUN)
    assert code == 2 and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err
    assert f"{folder / 'config.json'}: unreadable (too large: 2,147,483,648 bytes" in errors[0]
    assert "use --force" in errors[0]


def test_an_oversized_error_log_is_one_line_in_its_place(tmp_path: Path, bytes_read: list[int]) -> None:
    files = RunFiles(tmp_path)
    assert files.error_log() is None
    (tmp_path / "error.log").write_text("Traceback (most recent call last):\nValueError: x\n")
    assert files.error_log().endswith("ValueError: x\n")
    bytes_read.clear()
    _oversized(tmp_path / "error.log", GIB2)
    assert files.error_log() == (f"{tmp_path / 'error.log'}: unreadable (too large: 2,147,483,648 bytes; the limit "
                                 f"for error.log is {run_files.ERROR_LOG_LIMIT:,})")
    assert sum(bytes_read) == 0


# ------------------------------------------------------------------ the training log
def _log(path: Path, records: list[dict], hole: int = 0, after: list[dict] = ()) -> None:
    with path.open("wb") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in records).encode())
        if hole:
            fh.truncate(fh.tell() + hole)
            fh.seek(0, os.SEEK_END)
        fh.write("".join("\n" + json.dumps(r) for r in after).encode())


def test_trimming_a_sparse_log_reads_it_within_bounds(tmp_path: Path, bytes_read: list[int]) -> None:
    """A resumed run trims its log through the streaming reader: a 2 GiB hole is skipped, not read;
    kept records are written back exactly as ``append_log`` wrote them."""
    from sslbench.base.log_reader import MAX_BYTES

    files = RunFiles(tmp_path)
    records = [{"stage": "train", "iteration": i, "loss": 0.5 / (i + 1), "lr": 0.01} for i in range(1, 4)]
    for r in records:
        files.append_log(r)
    written = (tmp_path / RunFiles.LOG).read_text()
    files.trim_log(lambda rec: True)
    assert (tmp_path / RunFiles.LOG).read_text() == written  # the same bytes

    _log(tmp_path / RunFiles.LOG, records, hole=GIB2, after=[{"stage": "train", "iteration": 9, "loss": 0.1}])
    bytes_read.clear()
    warnings: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sslbench.base.log_reader._stderr_warning", warnings.append)
        files.trim_log(lambda rec: rec["iteration"] <= 2 or rec["iteration"] == 9)
    assert sum(bytes_read) <= MAX_BYTES
    assert [json.loads(x)["iteration"] for x in (tmp_path / RunFiles.LOG).read_text().splitlines()] == [1, 2, 9]
    assert len(warnings) == 1 and "holding a hole of a sparse file" in warnings[0]


def test_trimming_drops_foreign_records(tmp_path: Path) -> None:
    files = RunFiles(tmp_path)
    lines = ['{"stage": "train", "iteration": 1}', '{"stage": "train", "iteration": "x"}', '{"iteration": 2}',
             '{"stage": "train", "iteration": 3, "nested": {"a": [1]}}', "[1]", '{"stage": "train", "iteration": 4}',
             '{"stage": "train", "iter']
    (tmp_path / RunFiles.LOG).write_text("\n".join(lines))
    files.trim_log(lambda rec: rec["iteration"] + 0 <= 10 and rec["stage"] == "train")
    assert (tmp_path / RunFiles.LOG).read_text().splitlines() == [lines[0], lines[5]]


def test_the_log_reader_keeps_flat_records_and_shares_their_keys(tmp_path: Path) -> None:
    """A record is a flat object of scalars (what the trainer writes); a nested value marks a foreign
    line. Records share their keys (the memory a log takes stays a few times the bytes read)."""
    from sslbench.base.log_reader import read_log

    path = tmp_path / "train_log.jsonl"
    path.write_text('{"stage": "train", "iteration": 1, "loss": 0.5, "ok": true, "none": null}\n'
                    '{"stage": "train", "iteration": 2, "loss": [0.5]}\n'
                    '{"stage": "train", "iteration": 3, "loss": {"a": 1}}\n'
                    '{"stage": "train", "iteration": 4, "loss": 0.25}\n')
    records = read_log(path)
    assert [r["iteration"] for r in records] == [1, 4]
    first, last = (list(r) for r in records)
    assert first[0] is last[0] and first[2] is last[2]      # "stage", "loss": one string each
    assert records[0]["stage"] is records[1]["stage"]        # a repeated string value too
