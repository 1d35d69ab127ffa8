"""A damaged record in a results folder (a full disk, a hand edit, another tool) is one line naming the
file, never a traceback, and never wedges a run: a checkpoint with wrong fields is set aside and the
run restarts; a DONE run whose record is unreadable is evaluated again; a damaged config.json needs
--force, which then recovers it; a damaged progress.json, run.json or metrics.json hides only itself."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from .conftest import TINY_RUN
from .test_cli import bench

RUN = ("run", "--methods", "mt", "--ratios", "5", "--seeds", "0", "--quiet", "--no-table", *TINY_RUN)
FOLDER = Path("synthetic-cardiac", "quick", "mt", "ratio-5", "seed-0")


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    """One finished run, copied by each test before it damages something."""
    root = tmp_path_factory.mktemp("clean")
    code, _, err = bench(*RUN, "--results", str(root))
    assert code == 0, err
    return root


def _copy(clean: Path, tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "r"
    shutil.copytree(clean, root, symlinks=True)
    return root, root / FOLDER


def _outcome(folder: Path) -> tuple:
    rec = json.loads((folder / "run.json").read_text())
    return rec["summary"], rec["per_class"], rec["selection"]["iteration"], rec["selection"]["val_dice"]


def _unfinish(folder: Path) -> None:
    for name in ("DONE", "run.json", "metrics.json", "metrics-last.json"):
        (folder / name).unlink()


@pytest.mark.parametrize("field, value", [
    ("stage_index", 7), ("iteration", "12"), ("iteration", -50), ("iteration", 10 ** 12),
    ("best_iteration", 99), ("best_score", float("nan")), ("log_acc_n", -1), ("sampler", "out of range"),
])
def test_a_checkpoint_with_wrong_fields_is_set_aside_and_the_run_restarts(clean: Path, tmp_path: Path,
                                                                          field: str, value: object) -> None:
    root, folder = _copy(clean, tmp_path)
    _unfinish(folder)
    state = torch.load(folder / "ckpt" / "last.pt", weights_only=True)
    if field == "sampler":
        state["lab_sampler"]["order"] = state["lab_sampler"]["order"] + 10 ** 6
    else:
        state[field] = value
    torch.save(state, folder / "ckpt" / "last.pt")
    code, _, err = bench(*RUN, "--results", str(root))
    assert code == 0, err
    assert "last.pt: unusable checkpoint" in err and "training this run from the start" in err
    assert any(p.name.startswith("last.pt.unusable-") for p in (folder / "ckpt").iterdir())
    assert _outcome(folder) == _outcome(clean / FOLDER)  # trained again from the start, as a clean run


def test_a_done_run_with_a_truncated_record_is_evaluated_again(clean: Path, tmp_path: Path) -> None:
    root, folder = _copy(clean, tmp_path)
    text = (folder / "run.json").read_text()
    (folder / "run.json").write_text(text[: len(text) // 2])
    code, out, err = bench("status", "--results", str(root))
    assert code == 0 and "run.json unreadable or damaged" in out
    code, _, err = bench("table", "--results", str(root))
    assert code != 0 or "skipping" in err
    assert f"{folder / 'run.json'}: unreadable" in err
    for extra in ((), ("--force",)):
        code, _, err = bench(*RUN, "--results", str(root), *extra)
        assert code == 0, err
        assert _outcome(folder) == _outcome(clean / FOLDER)
        (folder / "run.json").write_text("{")  # damaged again for the --force round
    assert "unreadable or damaged record; evaluating the run again" in err


@pytest.mark.parametrize("content", ['{"hash": "ab', "[1, 2]", ""])
def test_a_damaged_config_needs_force_which_recovers_it(clean: Path, tmp_path: Path, content: str) -> None:
    root, folder = _copy(clean, tmp_path)
    (folder / "config.json").write_text(content)
    code, _, err = bench(*RUN, "--results", str(root))
    assert code == 2 and str(folder / "config.json") in err and "use --force" in err
    assert "Traceback" not in err and len([line for line in err.splitlines() if "config.json" in line]) == 1
    code, _, err = bench(*RUN, "--results", str(root), "--force")
    assert code == 0, err
    assert _outcome(folder) == _outcome(clean / FOLDER)


@pytest.mark.parametrize("damage", [{"stages": [12]}, {"iteration": "3"}, {"it_s": "fast"},
                                    {"iteration": float("nan")}, {"stage": "nowhere"}, "not a dict"])
def test_a_damaged_progress_file_hides_only_itself(clean: Path, tmp_path: Path, damage: object) -> None:
    root, folder = _copy(clean, tmp_path)
    other = folder.parent / "seed-1"
    other.mkdir()
    shutil.copy(folder / "config.json", other / "config.json")
    progress = {"stage": "train", "iteration": 3, "stages": {"train": 12}, "it_s": 2.0, "host": "h", "pid": 1}
    progress = {**progress, **damage} if isinstance(damage, dict) else damage
    (other / "progress.json").write_text(json.dumps(progress))
    code, out, err = bench("status", "--results", str(root))
    assert code == 0, err
    assert "seed-0" in out and "done" in out and "progress.json damaged" in out


@pytest.mark.parametrize("field, value", [("dataset", ["a", "b"]), ("seed", {"x": 1}), ("paper_name", None),
                                          ("profile", None), ("summary", {"dice": "high"}), ("ratio", -5)])
def test_a_damaged_record_is_skipped_with_a_warning_naming_it(clean: Path, tmp_path: Path, field: str,
                                                             value: object) -> None:
    root, folder = _copy(clean, tmp_path)
    other = folder.parent / "seed-1"
    shutil.copytree(folder, other)
    rec = json.loads((other / "run.json").read_text())
    rec["seed"] = 1
    rec[field] = value
    (other / "run.json").write_text(json.dumps(rec))
    code, out, err = bench("table", "--results", str(root))
    assert code == 0, err
    assert f"skipping {other / 'run.json'}: damaged record ({field}" in err
    assert "| MT" in out and "1 seed(s) per cell" in out
    code, out, _ = bench("status", "--results", str(root))
    assert code == 0 and "seed-0" in out


def test_a_lost_metrics_file_leaves_the_other_runs_in_the_figure(clean: Path, tmp_path: Path) -> None:
    root, folder = _copy(clean, tmp_path)
    other = folder.parent / "seed-1"
    shutil.copytree(folder, other)
    rec = json.loads((other / "run.json").read_text())
    (other / "run.json").write_text(json.dumps({**rec, "seed": 1}))
    (other / "metrics.json").unlink()
    code, _, err = bench("plot", "classes", "--results", str(root), "-o", str(tmp_path / "fig"))
    assert code == 0, err
    assert f"{other / 'metrics.json'}: missing" in err
    assert (tmp_path / "fig.png").is_file()
    (folder / "metrics.json").write_text("[]")  # none left: one line, exit 2
    code, _, err = bench("plot", "classes", "--results", str(root), "-o", str(tmp_path / "fig2"))
    assert code == 2 and "has a readable metrics.json" in err


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["cases"][0].update(shape=[-3, 10, 10]), "cases[0].shape: -3 is outside"),
    (lambda m: m["cases"][0].update(shape=[100000, 100000, 100000]), "more than 2147483648 voxels"),
    (lambda m: m["cases"][0].update(spacing=[0, -1, 0]), "cases[0].spacing: 0.0 is outside"),
    (lambda m: m["cases"][1].update(id=m["cases"][0]["id"]), "duplicate case id"),
    (lambda m: m["cases"][0].update(crop=[[0, 5], [3, 2], [0, 1]]), "cases[0].crop: 2 is outside"),
    (lambda m: m.update(classes=["bg"]), "classes: expected 2-255 distinct names"),
    (lambda m: m["cases"][0].update(split="holdout"), "cases[0].split: 'holdout' is not one of"),
])
def test_a_lying_meta_json_is_one_line_at_load_time(tmp_path: Path, cardiac, edit, message: str) -> None:  # noqa: ANN001
    from sslbench.base.errors import DataError
    from sslbench.cache import PreparedDataset

    copy = tmp_path / "copy"
    shutil.copytree(cardiac.folder, copy, ignore=shutil.ignore_patterns("slices-*"))
    meta = json.loads((copy / "meta.json").read_text())
    edit(meta)
    (copy / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError) as info:
        PreparedDataset(copy)
    assert str(info.value).startswith(f"{copy / 'meta.json'}: ") and message in str(info.value)


def test_fewer_classes_than_the_labels_hold_is_named_before_training(tmp_path: Path, cardiac) -> None:  # noqa: ANN001
    from sslbench.base.errors import DataError
    from sslbench.cache import PreparedDataset

    copy = tmp_path / "copy"
    shutil.copytree(cardiac.folder, copy, ignore=shutil.ignore_patterns("slices-*"))
    meta = json.loads((copy / "meta.json").read_text())
    meta["classes"] = meta["classes"][:2]
    (copy / "meta.json").write_text(json.dumps(meta))
    ds = PreparedDataset(copy)
    with pytest.raises(DataError, match=r"meta.json: case .* holds label 3, but the dataset names 2 classes"):
        ds.volume(ds.cases[0].id)


def test_one_bad_prepared_dataset_does_not_hide_the_others(tmp_path: Path, cardiac) -> None:  # noqa: ANN001
    cache = tmp_path / "cache"
    shutil.copytree(cardiac.folder, cache / "mine", ignore=shutil.ignore_patterns("slices-*"))
    meta = json.loads((cache / "mine" / "meta.json").read_text())
    (cache / "mine" / "meta.json").write_text(json.dumps({**meta, "name": "mine"}))
    (cache / "junk").mkdir()
    (cache / "junk" / "meta.json").write_text('{"format": 2, "name": "junk", "classes": "x"}')
    code, out, err = bench("datasets", "--cache", str(cache))
    assert code == 0, err
    assert "| mine" in out and "synthetic-cardiac" in out
    assert "junk" in out and "damaged" in out


# ------------------------------------------------------------------ an independent hostile read found these
@pytest.mark.parametrize("file, content", [
    ("run.json", b"\xff{}"), ("run.json", b"huge"), ("run.json", b"[" * 100_000),
    ("progress.json", b'{"stage": "train", "iteration": 1, "stages": {"train": 1' + b"0" * 400 + b'}, "it_s": 1}'),
    ("progress.json", b'{"stage": "train", "iteration": 1, "stages": {"train": 12}, "it_s": 1e-320}'),
    ("slurm.json", b"[" * 100_000), ("failed.json", b"\xff"), ("train_log.jsonl", b"\xff\xfe\n{\n"),
])
def test_undecodable_deep_or_huge_json_is_one_named_line(clean: Path, tmp_path: Path, file: str, content: bytes) -> None:
    root, folder = _copy(clean, tmp_path)
    if file != "run.json":
        (folder / "DONE").unlink()  # a live run: status reads its progress, slurm and failure files
    if content == b"huge":  # a whole record whose Dice is an integer beyond any float
        rec = json.loads((folder / file).read_text())
        content = json.dumps({**rec, "summary": {**rec["summary"], "dice": 10 ** 400}}).encode()
    (folder / file).write_bytes(content)
    for args in (("status",), ("table",), ("table", "--cost")):
        code, _, err = bench(*args, "--results", str(root))
        assert code in (0, 2) and "Traceback" not in err, (args, err)
    code, _, err = bench(*RUN, "--results", str(root))
    assert code == 0, err
    assert _outcome(folder) == _outcome(clean / FOLDER)


def test_a_lock_that_is_a_folder_hides_nothing_from_status(clean: Path, tmp_path: Path) -> None:
    root, folder = _copy(clean, tmp_path)
    other = folder.parent / "seed-1"
    other.mkdir()
    shutil.copy(folder / "config.json", other / "config.json")
    (other / ".lock").mkdir()
    code, out, err = bench("status", "--results", str(root))
    assert code == 0 and "seed-0" in out and "seed-1" in out, err


def test_predict_never_writes_through_a_planted_link_and_names_a_bad_checkpoint(clean: Path, tmp_path: Path) -> None:
    root, folder = _copy(clean, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (folder / "predictions").symlink_to(elsewhere)
    code, _, err = bench("predict", str(folder), "--cases", "case048")
    assert code == 2 and "predictions: is a symbolic link" in err and not list(elsewhere.iterdir())
    (folder / "predictions").unlink()
    (folder / "ckpt" / "best.pt").write_bytes(b"PK\x03\x04 truncated")
    code, _, err = bench("predict", str(folder), "--cases", "case048")
    assert code == 2 and "best.pt: not usable weights of this run" in err
    rec = json.loads((folder / "run.json").read_text())
    (folder / "run.json").write_text(json.dumps({**rec, "labeled_cases": None}))
    code, _, err = bench("predict", str(folder))
    assert code == 2 and "not a finished run" in err
    code, _, err = bench("report", "--results", str(root), "-o", str(tmp_path / "report"))
    assert code == 2 and "labeled_cases" in err  # its only run skipped, naming the field: no run left


def test_a_damaged_slab_or_slice_cache_is_one_line(tmp_path: Path, cardiac) -> None:  # noqa: ANN001
    import struct
    import zlib

    import numpy as np

    from sslbench.base.errors import DataError
    from sslbench.cache import PreparedDataset

    copy = tmp_path / "copy"
    shutil.copytree(cardiac.folder, copy, ignore=shutil.ignore_patterns("slices-*"))
    ds = PreparedDataset(copy)
    case = ds.split_cases("train")[0]
    slab = copy / "volumes" / f"{case.id}.image.slabs"
    slab.write_bytes(b"[1, 2]\n")
    with pytest.raises(DataError, match=r"image.slabs.*not a slab file \(bad header\)|unreadable prepared volume"):
        ds.volume(case.id)
    bomb = zlib.compress(bytes(10 ** 8))  # 100 MB of zeros in ~100 kB
    header = {"format": "sslbench-slabs", "version": 1, "dtype": "float16", "shape": list(case.shape), "slab": 32}
    slab.write_bytes((json.dumps(header) + "\n").encode() + struct.pack("<Q", len(bomb)) + bomb)
    import tracemalloc

    tracemalloc.start()
    with pytest.raises(DataError, match="truncated or corrupt slab"):
        ds.volume(case.id)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 * 2 ** 20, peak  # inflated no further than the slab's own size, never the bomb's 100 MB
    good = PreparedDataset(cardiac.folder)
    shutil.copytree(cardiac.folder, tmp_path / "copy2")
    ds2 = PreparedDataset(tmp_path / "copy2")
    ds2.train_slices(32)
    label = np.load(tmp_path / "copy2" / "slices-v3-32" / "label.npy")
    label[0, 0, 0] = 9
    np.save(tmp_path / "copy2" / "slices-v3-32" / "label.npy", label)
    with pytest.raises(DataError, match="slice cache that does not match meta.json"):
        ds2.train_slices(32)
    assert good.num_classes == 4


def test_a_split_file_that_is_not_a_file_is_refused(tmp_path: Path) -> None:
    from .test_hostile import _feed_fifo_if_opened
    from .test_nifti import write_nnunet

    raw = write_nnunet(tmp_path / "raw", n=4)
    os.mkfifo(raw / "splits.json")
    _feed_fifo_if_opened(raw / "splits.json")  # were it read, the test fails instead of hanging
    code, _, err = bench("prepare", "mine", "--raw", str(raw), "--format", "nnunet", "--cache", str(tmp_path / "c"))
    assert code == 2 and "splits.json: not a regular file" in err


def test_a_float_field_with_an_integer_default_takes_the_float_rule() -> None:
    from dataclasses import dataclass

    from sslbench.base.ranges import check_values
    from sslbench.method import MethodConfig

    @dataclass
    class PluginConfig(MethodConfig):
        weight: float = 0   # a float field written as 0: [0, 1e6], not the count rule [1, 1e9]

    check_values(PluginConfig(), "method")


def test_a_method_name_that_cannot_be_a_folder_is_refused_at_registration() -> None:
    from sslbench.base.registry import RegistryError
    from sslbench.method import SSLMethod, register_method

    with pytest.raises(RegistryError, match="method name 'x/y' is not allowed"):
        register_method("x/y")(type("Bad", (SSLMethod,), {}))


def test_an_acdc_list_naming_one_slice_twice_is_refused(tmp_path: Path) -> None:
    import h5py
    import numpy as np

    from sslbench.base.errors import DataError
    from sslbench.cache import prepare

    raw = tmp_path / "acdc"
    (raw / "data" / "slices").mkdir(parents=True)
    (raw / "train_slices.list").write_text("patient001_frame01_slice_1\npatient001_frame01_slice_01\n")
    for sid in ("patient001_frame01_slice_1", "patient001_frame01_slice_01"):
        with h5py.File(raw / "data" / "slices" / f"{sid}.h5", "w") as fh:
            fh.create_dataset("image", data=np.random.default_rng(0).random((8, 8), np.float32))
            fh.create_dataset("label", data=np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match="names a slice already listed"):
        prepare("acdc", raw, cache_root=tmp_path / "cache")


def test_progress_json_follows_the_evaluation_after_training(clean: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The finished run's last progress.json is its evaluation's last volume, counted as evaluated;
    a run evaluated again without training (its record damaged) reports this session, not the last,
    and each pass is announced before its first volume."""
    import socket

    import sslbench.run.job as job

    at_start: list[dict] = []
    real = job.evaluate

    def watched(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        at_start.append(json.loads((again / "progress.json").read_text())["evaluation"])
        return real(*args, **kwargs)

    folder = clean / FOLDER
    progress = json.loads((folder / "progress.json").read_text())
    record = json.loads((folder / "run.json").read_text())
    ev = progress["evaluation"]
    assert ev["done"] == ev["cases"] == record["n_eval_volumes"]
    assert ev["weights"] in ("last", "selected") and progress["updated"] >= ev["started"]

    root, again = _copy(clean, tmp_path)
    (again / "progress.json").write_text(json.dumps({**progress, "host": "elsewhere", "evaluation": {
        **ev, "done": 1, "started": 1.0}}))
    (again / "run.json").write_text("{")
    monkeypatch.setattr(job, "evaluate", watched)
    code, _, err = bench(*RUN, "--results", str(root))
    assert code == 0, err
    assert at_start and all(e["done"] == 0 and e["started"] > 1.0 for e in at_start), at_start
    now = json.loads((again / "progress.json").read_text())
    assert now["host"] == socket.gethostname() and now["evaluation"]["started"] > 1.0
    assert now["evaluation"]["done"] == now["evaluation"]["cases"] == record["n_eval_volumes"]


@pytest.mark.parametrize("progress", [
    {"stage": "train", "iteration": 1, "stages": {"train": 10 ** 400}, "it_s": 1.0},
    {"stage": "train", "iteration": 1, "stages": {"train": 12}, "it_s": 1e-320},
])
def test_a_running_runs_progress_never_makes_an_infinite_eta(clean: Path, tmp_path: Path, progress: dict) -> None:
    from sslbench.base.locks import FolderLock

    root, folder = _copy(clean, tmp_path)
    other = folder.parent / "seed-1"
    other.mkdir()
    shutil.copy(folder / "config.json", other / "config.json")
    (other / "progress.json").write_text(json.dumps(progress))
    with FolderLock(other / ".lock"):  # running: status computes its ETA
        code, out, err = bench("status", "--results", str(root))
    assert code == 0 and "seed-1" in out and "running" in out, err


@pytest.mark.parametrize("edit", [
    lambda rec: rec["timing"].update(wall_s=1e308), lambda rec: rec.update(n_eval_volumes=[1]),
    lambda rec: rec.update(config_hash=[]), lambda rec: rec["schedule"].update(image_size="big"),
    lambda rec: rec.update(paper_name="\ud800"),
])
def test_record_fields_that_reach_the_views_are_checked(clean: Path, tmp_path: Path, edit) -> None:  # noqa: ANN001
    root, folder = _copy(clean, tmp_path)
    for seed in (1, 2):  # two damaged finished runs: the sweep's ETA sums their wall times
        other = folder.parent / f"seed-{seed}"
        shutil.copytree(folder, other)
        rec = json.loads((other / "run.json").read_text())
        rec["seed"] = seed
        edit(rec)
        (other / "run.json").write_text(json.dumps(rec))
    (folder / "DONE").unlink()  # and a pending run, so there is an ETA to compute
    for args in (("status",), ("table",), ("export", "-o", str(tmp_path / "x.csv"))):
        code, _, err = bench(*args, "--results", str(root))
        assert code in (0, 2) and "Traceback" not in err, (args, err)


def test_unprintable_text_in_a_failure_record_is_printed_escaped(clean: Path, tmp_path: Path) -> None:
    root, folder = _copy(clean, tmp_path)
    (folder / "DONE").unlink()
    (folder / "failed.json").write_text('{"error": "\\ud800 boom", "host": "\\udfff"}')
    code, out, err = bench("status", "--results", str(root))
    assert code == 0 and "failed" in out, err


def test_a_training_log_with_foreign_values_still_draws_its_curves(clean: Path, tmp_path: Path) -> None:
    root, folder = _copy(clean, tmp_path)
    with (folder / "train_log.jsonl").open("a") as fh:
        fh.write('{"stage": "train", "iteration": 13, "loss": 1' + "0" * 400 + ', "val_dice": "high"}\n')
    code, _, err = bench("plot", "curves", "--results", str(root), "-o", str(tmp_path / "curves"))
    assert code == 0, err


def test_a_fifo_or_garbage_as_a_saved_prediction_is_one_line(clean: Path, tmp_path: Path) -> None:
    from .test_hostile import _feed_fifo_if_opened

    root, folder = _copy(clean, tmp_path)
    (folder / "predictions").mkdir()
    os.mkfifo(folder / "predictions" / "case048.npy")
    _feed_fifo_if_opened(folder / "predictions" / "case048.npy")
    args = ("plot", "qualitative", "--results", str(root), "--dataset", "synthetic-cardiac", "-o", str(tmp_path / "q"))
    code, _, err = bench(*args)
    assert code == 2 and "case048.npy: is not a regular file" in err
    (folder / "predictions" / "case048.npy").unlink()
    (folder / "predictions" / "case048.npy").write_bytes(b"\x93NUMPY garbage")
    code, _, err = bench(*args)
    assert code == 2 and "case048.npy: unreadable prediction" in err


def test_a_cache_the_reader_would_refuse_is_never_written(tmp_path: Path) -> None:
    import numpy as np

    from sslbench.base.errors import DataError
    from sslbench.data import DATASETS, CacheWriter

    spec = DATASETS.get("synthetic-cardiac")()
    writer = CacheWriter(spec, tmp_path / "ds", "x")
    writer.classes = ("background",)  # a dataset.json with a single label
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        writer.add(f"c-{split}", rng.random((2, 8, 8), dtype=np.float32), np.zeros((2, 8, 8), np.uint8), split, None)
    with pytest.raises(DataError, match="would not be readable .*classes"):
        writer.finish()
    assert not (tmp_path / "ds" / "meta.json").exists()
    with pytest.raises(DataError, match=r"spacing \(nan, 1.0, 1.0\) is not three sizes"):
        writer.add("c-bad", rng.random((2, 8, 8), dtype=np.float32), np.zeros((2, 8, 8), np.uint8), "train",
                   (float("nan"), 1.0, 1.0))


def test_a_lying_geometry_is_refused_at_load_time(tmp_path: Path) -> None:
    from sslbench.base.errors import DataError
    from sslbench.cache import PreparedDataset, prepare

    from .test_nifti import write_nnunet

    ds = prepare("mine", write_nnunet(tmp_path / "raw", n=4), cache_root=tmp_path / "cache", kind="nnunet")
    meta = json.loads((ds.folder / "meta.json").read_text())
    meta["cases"][0]["geometry"] = {}
    (ds.folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"cases\[0\].geometry.affine: expected a 4 x 4 matrix"):
        PreparedDataset(ds.folder)


@pytest.mark.parametrize("content, message", [(b"ED: 1\nES: \xff\n", "Info.cfg: unreadable"),
                                              ("ED: \u00b2\nES: 1\n".encode(), "no integer 'ED' frame")])
def test_acdc_info_files_that_are_not_text_or_numbers(tmp_path: Path, content: bytes, message: str) -> None:
    from sslbench.base.errors import DataError
    from sslbench.datasets.acdc import read_info

    (tmp_path / "Info.cfg").write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_info(tmp_path / "Info.cfg")


@pytest.mark.parametrize("kind", ["sweep", "executor"])
def test_undecodable_or_fifo_config_files_are_one_line(tmp_path: Path, kind: str) -> None:
    from .test_hostile import _feed_fifo_if_opened

    path = tmp_path / "x.toml"
    args = (("run", "--sweep", str(path), "--dry-run", "--results", str(tmp_path / "r")) if kind == "sweep" else
            ("run", "--executor", "slurm", "--executor-config", str(path), "--results", str(tmp_path / "r")))
    path.write_bytes(b"[sweep]\nmethods = ['\xff']\n")
    code, _, err = bench(*args)
    assert code == 2 and "x.toml: unreadable" in err and "Traceback" not in err
    path.unlink()
    os.mkfifo(path)
    _feed_fifo_if_opened(path)
    code, _, err = bench(*args)
    assert code == 2 and "x.toml: not a regular file" in err
