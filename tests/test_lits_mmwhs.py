"""LiTS and MM-WHS readers on tiny NIfTI trees with the challenges' file names and label values."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from sslbench.cache import prepare
from sslbench.splits import split_labeled
from sslbench.base.errors import DataError

AFFINE = np.diag([0.7, 0.7, 2.5, 1.0])


def save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, AFFINE), str(path))


def write_lits(root: Path, indices: list[int]) -> Path:
    rng = np.random.default_rng(0)
    for i in indices:
        ct = rng.uniform(-1000, 400, (12, 12, 5)).astype(np.float32)
        seg = np.zeros((12, 12, 5), np.uint8)
        seg[3:9, 3:9, 1:4] = 1
        if i % 2:
            seg[5:7, 5:7, 2] = 2                       # even volumes have no tumour: that is normal
        batch = "Training Batch 1" if i < 50 else "Training Batch 2"
        save(root / batch / f"volume-{i}.nii", ct)
        save(root / batch / f"segmentation-{i}.nii.gz", seg)
    return root


LITS_INDICES = [2, 0, 37, 36, 97, 75, 20, 17, 28, 9, 4, 5, 80, 100, 101]


def test_lits_reader_splits_and_windowing(tmp_path: Path) -> None:
    ds = prepare("lits", write_lits(tmp_path / "raw", LITS_INDICES), cache_root=tmp_path / "cache")
    split = {c.id: c.split for c in ds.cases}
    assert split["case0101"] == split["case0102"] == "test" and split["case0081"] == "val"
    assert [c.id for c in ds.split_cases("train")][:3] == ["case0003", "case0001", "case0038"]
    assert split_labeled(ds, 1, 0, "paper")[0] == ["case0003"]
    assert split_labeled(ds, 5, 0, "paper")[0] == ["case0003", "case0001", "case0038", "case0037", "case0098"]
    assert len(split_labeled(ds, 10, 0, "paper")[0]) == 10
    image, label = ds.volume("case0001")
    assert float(np.min(image)) == 0.0 and float(np.max(image)) == 1.0
    assert ds.cases[0].spacing == pytest.approx((2.5, 0.7, 0.7)) and ds.interpolation == "bicubic"
    assert set(np.unique(ds.volume("case0001")[1])) == {0, 1}          # no tumour: fine


def test_lits_paper_list_needs_its_volumes(tmp_path: Path) -> None:
    ds = prepare("lits", write_lits(tmp_path / "raw", [2, 0, 4, 80, 100]), cache_root=tmp_path / "cache")
    with pytest.raises(DataError, match=r"labeled_5.txt: case0038 is not a training case"):
        split_labeled(ds, 5, 0, "paper")


def write_mmwhs(root: Path, bad_value: int | None = None) -> Path:
    rng = np.random.default_rng(1)
    values = [205, 420, 500, 550, 600, 820, 850]
    for n in range(1001, 1021):
        image = rng.normal(0, 300, (10, 10, 6)).astype(np.float32)
        label = np.zeros((10, 10, 6), np.int16)
        for k, v in enumerate(values):
            label[k, 2:8, 1:5] = v
        if n == 1003:
            label[9, 2:4, 2] = 421                      # the known stray LA value
        if bad_value is not None and n == 1007:
            label[9, 5, 5] = bad_value
        save(root / f"ct_train_{n}_image.nii.gz", image)
        save(root / f"ct_train_{n}_label.nii.gz", label)
    return root


def test_mmwhs_reader_remaps_labels(tmp_path: Path) -> None:
    ds = prepare("mmwhs", write_mmwhs(tmp_path / "raw"), cache_root=tmp_path / "cache")
    assert ds.classes[1:] == ("Myo", "LA", "LV", "RA", "RV", "AAo", "PA")
    assert sorted(c.id for c in ds.split_cases("test")) == [f"ct_train_{n}" for n in (1001, 1002, 1008, 1014, 1015)]
    assert sorted(c.id for c in ds.split_cases("val")) == ["ct_train_1019", "ct_train_1020"]
    assert len(ds.split_cases("train")) == 13
    assert split_labeled(ds, 10, 0, "paper")[0] == ["ct_train_1004", "ct_train_1018"]
    _, label = ds.volume("ct_train_1003")
    assert set(np.unique(label)) == set(range(8))


def test_mmwhs_unknown_label_value_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"ct_train_1007_label.nii.gz: label values \[300\] not in"):
        prepare("mmwhs", write_mmwhs(tmp_path / "raw", bad_value=300), cache_root=tmp_path / "cache")
    assert not any((tmp_path / "cache").iterdir())


def test_empty_raw_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for name in ("lits", "mmwhs"):
        with pytest.raises(DataError, match="empty: no"):
            prepare(name, tmp_path / "empty", cache_root=tmp_path / "cache")


def write_acdc_challenge(root: Path, patients: dict[str, str]) -> Path:
    rng = np.random.default_rng(2)
    affine = np.diag([1.5, 1.5, 10.0, 1.0])
    for patient, _ in patients.items():
        folder = root / "training" / patient
        folder.mkdir(parents=True)
        (folder / "Info.cfg").write_text("ED: 1\nES: 12\nGroup: NOR\nHeight: 170\nNbFrame: 30\nWeight: 70\n")
        for frame in (1, 12):
            image = rng.uniform(0, 800, (16, 14, 5)).astype(np.float32)
            label = np.zeros((16, 14, 5), np.uint8)
            label[4:12, 4:10, 1:4] = 2
            label[6:10, 6:8, 1:4] = 3
            label[2:4, 2:12, 1:3] = 1
            nib.save(nib.Nifti1Image(image, affine), str(folder / f"{patient}_frame{frame:02d}.nii.gz"))
            nib.save(nib.Nifti1Image(label, affine), str(folder / f"{patient}_frame{frame:02d}_gt.nii.gz"))
    return root


def test_acdc_challenge_layout(tmp_path: Path) -> None:
    patients = {"patient099": "train", "patient038": "train", "patient050": "train", "patient002": "val",
                "patient001": "test", "patient101": "challenge test set"}
    raw = write_acdc_challenge(tmp_path / "ACDC", patients)
    ds = prepare("acdc", raw, cache_root=tmp_path / "cache")
    assert [c.id for c in ds.split_cases("train")][:3] == ["patient099_frame01", "patient099_frame02",
                                                            "patient038_frame01"]
    assert [c.id for c in ds.split_cases("val")] == ["patient002_frame01", "patient002_frame02"]
    assert [c.patient for c in ds.split_cases("test")] == ["patient001", "patient001"]
    assert ds.cases[0].spacing == pytest.approx((10.0, 1.5, 1.5))
    assert ds.meta["source"]["skipped"] == ["patient101"]
    assert split_labeled(ds, 50, 0, "paper")[0] == ["patient099_frame01", "patient099_frame02",
                                                     "patient038_frame01", "patient038_frame02"]


def test_acdc_missing_info_cfg(tmp_path: Path) -> None:
    raw = write_acdc_challenge(tmp_path / "ACDC", {"patient099": "train", "patient002": "val"})
    (raw / "training" / "patient099" / "Info.cfg").unlink()
    with pytest.raises(DataError, match=r"patient099/Info.cfg: not found"):
        prepare("acdc", raw, cache_root=tmp_path / "cache")


def write_ssl4mis(root: Path) -> Path:
    import h5py

    rng = np.random.default_rng(3)
    (root / "data" / "slices").mkdir(parents=True)
    ids = []
    for vol in ("patient099_frame01", "patient099_frame02", "patient038_frame01"):
        for k in range(1, 4):
            sid = f"{vol}_slice_{k}"
            ids.append(sid)
            with h5py.File(root / "data" / "slices" / f"{sid}.h5", "w") as fh:
                fh["image"] = rng.random((12, 10)).astype(np.float32)
                fh["label"] = rng.integers(0, 4, (12, 10)).astype(np.uint8)
    (root / "train_slices.list").write_text("\n".join(ids) + "\n")
    (root / "val.list").write_text("patient002_frame01\n")
    with h5py.File(root / "data" / "patient002_frame01.h5", "w") as fh:
        fh["image"] = rng.random((3, 12, 10)).astype(np.float32)
        fh["label"] = rng.integers(0, 4, (3, 12, 10)).astype(np.uint8)
    return root


def test_ssl4mis_layout_and_its_errors(tmp_path: Path) -> None:
    raw = write_ssl4mis(tmp_path / "raw")
    ds = prepare("acdc", raw, cache_root=tmp_path / "c1")
    assert [c.id for c in ds.split_cases("train")] == ["patient099_frame01", "patient099_frame02",
                                                        "patient038_frame01"]
    assert ds.volume("patient099_frame01")[0].shape == (3, 12, 10)
    (raw / "data" / "slices" / "patient038_frame01_slice_2.h5").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"patient038_frame01_slice_2.h5: unreadable HDF5"):
        prepare("acdc", raw, cache_root=tmp_path / "c2")
    (raw / "data" / "slices" / "patient038_frame01_slice_2.h5").unlink()
    with pytest.raises(DataError, match=r"patient038_frame01_slice_2.h5: file not found"):
        prepare("acdc", raw, cache_root=tmp_path / "c3")
    raw = write_ssl4mis(tmp_path / "raw2")
    (raw / "val.list").unlink()
    with pytest.raises(DataError, match=r"val.list: split list not found"):
        prepare("acdc", raw, cache_root=tmp_path / "c4")
    for cache in ("c2", "c3", "c4"):
        assert not any((tmp_path / cache).iterdir())


def test_duplicate_case_is_an_error(tmp_path: Path) -> None:
    raw = write_lits(tmp_path / "raw", [0, 1, 80, 100])
    src = next(raw.rglob("volume-1.nii"))
    (src.parent / "volume-1.nii.gz").write_bytes(src.read_bytes())
    with pytest.raises(DataError, match="duplicate case 1"):
        prepare("lits", raw, cache_root=tmp_path / "cache")
