"""Fuzzing every file the benchmark reads back (marker ``faults``, in the default suite and CI).

For each file of a finished run folder, of a prepared cache and of an nnU-Net-format raw dataset, a
seeded generator draws damages: empty, truncated, garbage bytes, nesting too deep, the wrong JSON type at the top or in
one field, huge numbers, NaN, a link inside the folder, a link outside it, a dangling link, a FIFO, a
folder, and for checkpoints a loadable file holding the wrong object or field. Then ``bench run``,
``bench status``, ``bench table``, ``bench plot`` and ``bench datasets`` (as they apply) must end
without a traceback (``bench`` re-raises one), with an exit code from the documented set, naming the
file whenever they refuse; nothing outside the results folder and the cache may change (a sentinel
folder that the outside links point into is compared byte for byte); and once the damage is removed
the next ``bench run`` must end with the record of an undamaged run.

By class (fast, no training beyond the one run): every kind of file read back (each run-folder file,
checkpoints, a prepared cache's meta.json and slab files, sweep files, SLURM executor configs,
``<results>/.sweeps/`` plans, profiles) in every variant: truncated, of the wrong type, huge,
not UTF-8, a link, a FIFO, a folder in its place.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path

import pytest
import torch

from .conftest import TINY_RUN
from .test_cli import bench

pytestmark = pytest.mark.faults

SEED = 20261130
RUN = ("run", "--methods", "mt", "--ratios", "5", "--seeds", "0", "--quiet", "--no-table", *TINY_RUN)
FOLDER = Path("synthetic-cardiac", "quick", "mt", "ratio-5", "seed-0")
RUN_FILES = ("run.json", "config.json", "progress.json", "slurm.json", "failed.json", "metrics.json",
             "metrics-last.json", "train_log.jsonl", ".lock", "ckpt/last.pt", "ckpt/best.pt", "ckpt/pretrain-best.pt")
SPECIAL = ("link_inside", "link_outside", "dangling_link", "fifo", "directory")
CONTENT = {
    ".json": ("empty", "truncated", "garbage", "deep", "wrong_top", "wrong_field", "huge_field", "nan_field"),
    ".jsonl": ("empty", "truncated", "garbage", "wrong_lines"),
    ".pt": ("empty", "truncated", "garbage", "pt_wrong_object", "pt_wrong_field"),
    ".gz": ("empty", "truncated", "garbage"),
    ".slabs": ("empty", "truncated", "garbage"),
}
HUGE = 64 * 1024 * 1024
ODD_VALUES = (None, True, -1, 10 ** 30, 10 ** 400, 1e308, "x", "\ud800", [], [1, "a"], {}, {"a": {"b": []}})


def _kind(path: Path) -> str:
    return ".jsonl" if path.name.endswith(".jsonl") else ".json" if path.name == ".lock" else path.suffix


def draw(files: tuple[str, ...], per_file: int, salt: str) -> list[tuple[str, str]]:
    """``per_file`` damages per file, at least one special file and one content damage, seeded."""
    rng = random.Random(f"{SEED}-{salt}")
    cases = []
    for name in files:
        content = CONTENT[_kind(Path(name))]
        picked = {rng.choice(SPECIAL), rng.choice(content)}
        while len(picked) < per_file:
            picked.add(rng.choice(SPECIAL + content))
        cases += [(name, damage) for damage in sorted(picked)]
    return cases


def _damage_json(data: object, rng: random.Random, damage: str) -> str:
    if damage == "wrong_top":
        return json.dumps(rng.choice([v for v in ODD_VALUES if not isinstance(v, dict)]))
    if not isinstance(data, dict) or not data:
        return json.dumps([data])
    key = rng.choice(sorted(data))
    value = {"wrong_field": rng.choice(ODD_VALUES), "huge_field": rng.choice([10 ** 308, 10 ** 400, 1e308]),
             "nan_field": float("nan")}[damage]
    return json.dumps({**data, key: value})


def damage(path: Path, how: str, sentinel: Path, rng: random.Random) -> None:
    """Damage ``path`` (which may not exist yet: then it is planted)."""
    original = path.read_bytes() if path.is_file() else b'{"a": 1}\n'
    if path.is_file() or path.is_symlink():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    if how == "link_inside":
        inside = path.parent / f"other{path.suffix}"
        inside.write_bytes(original)
        path.symlink_to(inside)
    elif how == "link_outside":
        target = sentinel / f"target-{path.name}"
        target.write_bytes(original)
        path.symlink_to(target)
    elif how == "dangling_link":
        path.symlink_to(sentinel / "nothing-here")
    elif how == "fifo":
        os.mkfifo(path)
        _feed(path, original)  # were it read, the test fails (on its content) instead of hanging
    elif how == "directory":
        path.mkdir()
    elif how == "huge":  # its start, then far more than any file the benchmark writes (a hole: no disk used)
        path.write_bytes(original)
        os.truncate(path, len(original) + HUGE)
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "deep":  # nesting deeper than any parser's recursion
        path.write_text("[" * 100_000)
    elif how == "truncated":
        path.write_bytes(original[: max(1, len(original) // 3)])
    elif how == "garbage":  # never UTF-8 (a leading 0xff), so every decoder meets it
        path.write_bytes(b"\xff" + bytes(rng.randrange(256) for _ in range(256)))
    elif how == "wrong_lines":
        path.write_text("\n".join([json.dumps(v) for v in ODD_VALUES] + ['{"stage": 3, "iteration": "x"}']) + "\n")
    elif how in ("pt_wrong_object", "pt_wrong_field"):
        obj = torch.load(_bytes_file(path, original), weights_only=True) if how == "pt_wrong_field" else None
        if isinstance(obj, dict) and obj:
            key = rng.choice(sorted(obj))
            obj[key] = rng.choice([v for v in ODD_VALUES if v is not None] + [torch.zeros(3)])
        else:
            obj = rng.choice([[1, 2, 3], {"weights": "none"}, torch.arange(4)])
        torch.save(obj, path)
    else:
        try:
            data = json.loads(original)
        except ValueError:
            data = {}
        path.write_text(_damage_json(data, rng, how))


def _feed(fifo: Path, data: bytes, seconds: float = 60.0) -> None:
    """Hand ``data`` to whoever opens ``fifo`` for reading, for ``seconds``."""
    import errno
    import threading
    import time

    def feed() -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and fifo.exists():
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    return
                time.sleep(0.02)
                continue
            try:
                os.write(fd, data[:60000])
            except OSError:
                pass
            os.close(fd)
            time.sleep(0.02)

    threading.Thread(target=feed, daemon=True).start()


def _bytes_file(path: Path, data: bytes) -> Path:
    tmp = path.with_name(path.name + ".orig")
    tmp.write_bytes(data)
    return tmp


def undamage(path: Path, original: bytes | None) -> None:
    """Remove the damage: the planted thing goes, the original file comes back."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    for extra in path.parent.glob(f"other{path.suffix}"):
        extra.unlink()
    for extra in path.parent.glob(f"{path.name}.orig"):
        extra.unlink()
    if original is not None:
        path.write_bytes(original)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def outcome(folder: Path) -> tuple:
    rec = json.loads((folder / "run.json").read_text())
    return rec["summary"], rec["per_class"], rec["selection"]["iteration"], rec["selection"]["val_dice"]


def check(code: int, err: str, allowed: tuple[int, ...], name: str, what: str) -> None:
    assert code in allowed, f"{what}: exit {code}\n{err}"
    assert "Traceback" not in err, f"{what}: a traceback\n{err}"
    if code == 2:
        assert name in err, f"{what}: the refusal does not name {name}\n{err}"


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    """One finished run with a failed.json, progress.json and slurm.json beside its files (every
    file ``bench`` reads back exists once), and the record it must end with."""
    root = tmp_path_factory.mktemp("clean")
    code, _, err = bench(*RUN, "--results", str(root))
    assert code == 0, err
    folder = root / FOLDER
    (folder / "failed.json").write_text(json.dumps({"error": "an earlier session's", "host": "h", "pid": 1}))
    (folder / "slurm.json").write_text(json.dumps({"job_id": "12_0", "submitted": "2026-01-01T00:00:00"}))
    return root


@pytest.mark.parametrize("name, how", draw(RUN_FILES, 4, "run"))
def test_a_damaged_run_folder_file(clean: Path, tmp_path: Path, name: str, how: str) -> None:
    root, sentinel = tmp_path / "results", tmp_path / "sentinel"
    shutil.copytree(clean, root, symlinks=True)
    sentinel.mkdir()
    (sentinel / "keep.txt").write_text("outside the results folder\n")
    path = root / FOLDER / name
    original = path.read_bytes() if path.is_file() else None
    damage(path, how, sentinel, random.Random(f"{SEED}-{name}-{how}"))
    before, outside = snapshot(sentinel), sorted(p.name for p in tmp_path.iterdir())
    label = f"{name} {how}"

    code, out, err = bench("status", "--results", str(root))
    check(code, err, (0,), path.name, f"status, {label}")
    assert "seed-0" in out
    for args in (("table",), ("table", "--cost"), ("export", "-o", str(root / "all.csv"))):
        code, _, err = bench(*args, "--results", str(root))
        check(code, err, (0, 2), path.name, f"{' '.join(args[:2])}, {label}")
    if name.startswith("metrics") or name in ("run.json", "train_log.jsonl"):
        code, _, err = bench("plot", "classes", "--results", str(root), "-o", str(root / "fig"))
        check(code, err, (0, 2), path.name, f"plot, {label}")
        code, _, err = bench("report", "--results", str(root), "-o", str(root / "report"))
        check(code, err, (0, 2), path.name, f"report, {label}")
    code, _, err = bench("predict", str(root / FOLDER), "--cases", "case048")
    check(code, err, (0, 2), path.name, f"predict, {label}")
    code, _, err = bench(*RUN, "--results", str(root))
    check(code, err, (0, 2), path.name, f"run, {label}")
    assert snapshot(sentinel) == before and sorted(p.name for p in tmp_path.iterdir()) == outside
    if code == 2:
        undamage(path, original)
        code, _, err = bench(*RUN, "--results", str(root))
        assert code == 0, f"run after the damage was removed, {label}\n{err}"
    assert outcome(root / FOLDER) == outcome(clean / FOLDER), label


CACHE_FILES = ("meta.json", "volumes/case001.image.slabs", "volumes/case041.label.slabs")


@pytest.mark.parametrize("name, how", draw(CACHE_FILES, 4, "cache"))
def test_a_damaged_prepared_cache(tmp_path: Path, cache_dir: Path, cardiac, name: str, how: str) -> None:
    cache, sentinel = tmp_path / "cache", tmp_path / "sentinel"
    shutil.copytree(cardiac.folder, cache / "synthetic-cardiac", symlinks=True,
                    ignore=shutil.ignore_patterns("slices-*"))  # built again from the volumes: they are read
    sentinel.mkdir()
    path = cache / "synthetic-cardiac" / name
    assert path.is_file(), f"{name}: not in the prepared phantom (its case ids changed?)"
    original = path.read_bytes()
    damage(path, how, sentinel, random.Random(f"{SEED}-{name}-{how}"))
    before = snapshot(sentinel)
    code, _, err = bench("datasets", "--cache", str(cache))
    check(code, err, (0,), Path(name).name, f"datasets, {how}")
    code, _, err = bench(*RUN, "--results", str(tmp_path / "r"), "--cache", str(cache))
    check(code, err, (0, 1, 2), Path(name).name, f"run, {how}")  # 1: a run failed on a damaged volume, named
    if code == 1:
        assert Path(name).name in err or Path(name).name.split(".")[0] in err, err
    assert snapshot(sentinel) == before
    if code in (1, 2):
        undamage(path, original)
        code, _, err = bench(*RUN, "--results", str(tmp_path / "r"), "--cache", str(cache))
        assert code == 0, err


NNUNET_FILES = ("dataset.json", "splits.json", "imagesTr/case_001_0000.nii.gz", "labelsTr/case_001.nii.gz")


@pytest.mark.parametrize("name, how", draw(NNUNET_FILES, 3, "raw"))
def test_a_damaged_raw_dataset(tmp_path: Path, name: str, how: str) -> None:
    from .test_nifti import write_nnunet

    raw, sentinel, cache = write_nnunet(tmp_path / "raw", n=4), tmp_path / "sentinel", tmp_path / "cache"
    (raw / "splits.json").write_text(json.dumps({"train": ["case_000", "case_001"], "val": ["case_002"],
                                                 "test": ["case_003"]}))
    sentinel.mkdir()
    path = raw / name
    original = path.read_bytes()
    damage(path, how, sentinel, random.Random(f"{SEED}-{name}-{how}"))
    before = snapshot(sentinel)
    args = ("prepare", "mine", "--raw", str(raw), "--format", "nnunet", "--cache", str(cache))
    code, _, err = bench(*args)
    check(code, err, (0, 2), path.name, f"prepare, {name} {how}")
    assert snapshot(sentinel) == before
    assert not any(p.name.startswith(".") and "+" in p.name for p in cache.glob("*")) if cache.exists() else True
    if code == 2:
        assert not (cache / "mine").exists()  # nothing half written
        undamage(path, original)
        assert bench(*args)[0] == 0


# ------------------------------------------------------------------ by class: every variant of every kind of file
# The tests above draw a few damages per file and run the whole tool (training included); the ones
# below feed every variant to every kind of file the tool reads back, through the commands and readers
# that read it without training (fast): exit 0, a clean skip with a warning naming the file, or one
# line naming it with exit 2; never a traceback, never a hang (a FIFO is fed: were it read, its
# content would show), nothing outside the results folder and the cache changed.
VARIANTS = ("truncated", "wrong_type", "huge", "non_utf8", "symlink", "fifo", "directory")
VIEWED = ("run.json", "config.json", "metrics.json", "metrics-last.json", "progress.json", "failed.json", "slurm.json",
          ".lock", "train_log.jsonl", "ckpt/best.pt")


def _how(name: str, variant: str) -> str:
    """The damage of ``damage`` that is ``variant`` for a file named ``name``."""
    if variant == "wrong_type":
        return {".jsonl": "wrong_lines", ".pt": "pt_wrong_object"}.get(_kind(Path(name)), "wrong_top")
    return {"non_utf8": "garbage", "symlink": "link_outside"}.get(variant, variant)


def _one_line_naming(code: int, err: str, name: str, what: str) -> None:
    """Exit 0, or exit 2 with one ``error:`` line naming ``name``; never a traceback."""
    check(code, err, (0, 2), name, what)
    if code == 2:
        assert len([x for x in err.splitlines() if x.startswith("error: ")]) == 1, f"{what}\n{err}"


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", VIEWED)
def test_each_run_file_in_each_variant(clean: Path, tmp_path: Path, name: str, variant: str) -> None:
    root, sentinel = tmp_path / "results", tmp_path / "sentinel"
    shutil.copytree(clean, root, symlinks=True)
    sentinel.mkdir()
    path = root / FOLDER / name
    damage(path, _how(name, variant), sentinel, random.Random(f"{SEED}-class-{name}-{variant}"))
    before = snapshot(sentinel)
    label = f"{name} {variant}"

    code, out, err = bench("status", "--results", str(root))
    check(code, err, (0,), path.name, f"status, {label}")
    assert "seed-0" in out, f"status, {label}\n{out}"
    code, out, err = bench("table", "--results", str(root))
    _one_line_naming(code, err, path.name, f"table, {label}")
    if name == "run.json":  # the damaged record is skipped, with a warning naming it (then: no runs, exit 2)
        assert "warning: skipping" in err and str(path) in err, f"table, {label}\n{err}"
    code, _, err = bench("export", "--results", str(root), "-o", str(tmp_path / "all.csv"))
    _one_line_naming(code, err, path.name, f"export, {label}")
    if name in ("run.json", "config.json", "ckpt/best.pt"):
        code, _, err = bench("predict", str(root / FOLDER), "--cases", "case048")
        _one_line_naming(code, err, path.name, f"predict, {label}")
    (root / FOLDER / "DONE").unlink()  # unfinished: status reads config, progress, failed, slurm and the lock
    code, out, err = bench("status", "--results", str(root))
    check(code, err, (0,), path.name, f"status of the unfinished run, {label}")
    assert "seed-0" in out, f"status of the unfinished run, {label}\n{out}"
    assert snapshot(sentinel) == before, label


CACHE_CLASSES = ("meta.json", "volumes/case001.image.slabs", "volumes/case041.label.slabs")


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", CACHE_CLASSES)
def test_each_cache_file_in_each_variant(tmp_path: Path, cardiac, name: str, variant: str) -> None:
    from sslbench.base.errors import DataError
    from sslbench.cache.reader import PreparedDataset

    cache, sentinel = tmp_path / "cache", tmp_path / "sentinel"
    shutil.copytree(cardiac.folder, cache / "synthetic-cardiac", symlinks=True, ignore=shutil.ignore_patterns("slices-*"))
    sentinel.mkdir()
    path = cache / "synthetic-cardiac" / name
    damage(path, _how(name, variant), sentinel, random.Random(f"{SEED}-class-{name}-{variant}"))
    before = snapshot(sentinel)
    code, _, err = bench("datasets", "--cache", str(cache))
    check(code, err, (0,), path.name, f"datasets, {name} {variant}")
    try:
        ds = PreparedDataset(cache / "synthetic-cardiac")
        for case in ("case001", "case041"):
            ds.volume(case)
    except DataError as exc:
        message = str(exc)
        assert "\n" not in message and (path.name in message or path.name.split(".")[0] in message), message
    else:  # only bytes after a slab file's last slab go unread (its data is whole)
        assert name.endswith(".slabs") and variant == "huge", f"{name} {variant}: read without a word"
    assert snapshot(sentinel) == before


SWEEP_TEXT = '[sweep]\nmethods = ["unet-l"]\ndatasets = ["synthetic-cardiac"]\nratios = [5]\nseeds = [0]\n'
SLURM_TEXT = '[slurm]\npartition = "debug"\ntime_min = 60\n'


def damage_toml(path: Path, variant: str, text: str, sentinel: Path) -> None:
    """``variant`` of the TOML file ``text`` at ``path``; a link points at an intact copy outside."""
    if variant == "symlink":
        (sentinel / path.name).write_text(text)
        path.symlink_to(sentinel / path.name)
    elif variant == "fifo":
        os.mkfifo(path)
        _feed(path, text.encode())  # were it read, it would load: the test sees that, not a hang
    elif variant == "directory":
        path.mkdir()
    elif variant == "truncated":  # cut after its last '=': a key without its value
        path.write_text(text[: text.rindex("=") + 1])
    elif variant == "wrong_type":  # valid TOML, its first table a number
        first = re.search(r"^\[([\w.]+)\]", text, re.MULTILINE)
        path.write_text(f"{first.group(1) if first else 'a'} = 3\n")
    elif variant == "huge":
        path.write_text(text)
        os.truncate(path, len(text) + HUGE)
    elif variant == "non_utf8":
        path.write_bytes(b"\xff\xfe" + text.encode("utf-16-le"))
    elif variant == "deep":
        path.write_text("a = " + "[" * 100_000)


@pytest.mark.parametrize("variant", (*VARIANTS, "deep"))
def test_each_variant_of_a_sweep_file(tmp_path: Path, cache_dir: Path, variant: str) -> None:
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    sweep = tmp_path / "sweep.toml"
    damage_toml(sweep, variant, SWEEP_TEXT, sentinel)
    code, _, err = bench("run", "--sweep", str(sweep), "--results", str(tmp_path / "r"), "--dry-run")
    check(code, err, (0,) if variant == "symlink" else (2,), "sweep.toml", f"sweep file, {variant}")
    _one_line_naming(code, err, "sweep.toml", f"sweep file, {variant}")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("variant", (*VARIANTS, "deep"))
def test_each_variant_of_an_executor_config(tmp_path: Path, variant: str) -> None:
    from sslbench.base.errors import BenchError
    from sslbench.run.slurm import load_settings

    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    config = tmp_path / "cluster.toml"
    damage_toml(config, variant, SLURM_TEXT, sentinel)
    if variant == "symlink":
        assert load_settings(config).partition == "debug"
        return
    with pytest.raises(BenchError) as info:
        load_settings(config)
    assert str(info.value).startswith(f"{config}: ") and "\n" not in str(info.value)


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_variant_of_a_sweep_plan(tmp_path: Path, variant: str) -> None:
    """A running sweep's plan (``<results>/.sweeps/``, its lock held): status lists the planned runs
    of an intact plan; a damaged one is skipped with a warning naming it, a link, FIFO or folder in
    its place is skipped (never read); never a traceback or a hang."""
    from sslbench.base.locks import FolderLock

    root, sentinel = tmp_path / "r", tmp_path / "sentinel"
    sentinel.mkdir()
    plan = root / ".sweeps" / "node-1.json"
    plan.parent.mkdir(parents=True)
    runs = [f"synthetic-cardiac/quick/mt/ratio-5/seed-{s}" for s in (0, 1)]
    original = json.dumps({"runs": runs}).encode()
    lock = FolderLock(plan.with_suffix(".lock"))
    assert lock.acquire(wait=False)
    try:
        plan.write_bytes(original)
        code, out, err = bench("status", "--results", str(root))
        assert code == 0 and "2 run(s): 2 pending" in out, out + err        # the intact plan, listed
        plan.unlink()
        damage(plan, _how(plan.name, variant), sentinel, random.Random(f"{SEED}-plan-{variant}"))
        code, out, err = bench("status", "--results", str(root))
    finally:
        lock.release()
    check(code, err, (0,), plan.name, f"status, plan {variant}")
    assert "seed-0" not in out, f"a damaged plan was listed ({variant})\n{out}"
    if variant in ("truncated", "wrong_type", "huge", "non_utf8"):
        assert "warning: " in err and str(plan) in err and "damaged sweep plan" in err, err


@pytest.mark.parametrize("variant", [*VARIANTS, "deep"])
def test_each_variant_of_a_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variant: str) -> None:
    """A schedule profile (``configs/profiles/*.toml``, read by every run): a damaged one is one line
    naming its file, exit 2; a link to an intact copy is read."""
    from sslbench.base import config

    configs, sentinel = tmp_path / "configs", tmp_path / "sentinel"
    shutil.copytree(config.configs_dir(), configs)
    sentinel.mkdir()
    profile = configs / "profiles" / "quick.toml"
    text = profile.read_text()
    profile.unlink()
    damage_toml(profile, variant, text, sentinel)
    monkeypatch.setattr(config, "configs_dir", lambda: configs)
    code, _, err = bench("run", "--methods", "unet-l", "--ratios", "5", "--results", str(tmp_path / "r"), "--dry-run")
    check(code, err, (0,) if variant == "symlink" else (2,), "quick.toml", f"profile, {variant}")
    _one_line_naming(code, err, "quick.toml", f"profile, {variant}")
    assert not (tmp_path / "r").exists()
