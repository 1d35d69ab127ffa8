"""Dataset layer: the synthetic phantom, atomic preparation, the slice cache, splits and resizing."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sslbench.data import DATASETS, CacheWriter, DatasetSpec
from sslbench.io.resize import resize_slices
from sslbench.cache import PreparedDataset, prepare
from sslbench.splits import labeled_count, split_labeled
from sslbench.datasets.synthetic_cardiac import SPLITS, cardiac_volume
from sslbench.base.errors import DataError


def test_phantom_is_deterministic_and_acdc_like() -> None:
    img1, lab1, sp1 = cardiac_volume(np.random.default_rng([1, 2]))
    img2, lab2, sp2 = cardiac_volume(np.random.default_rng([1, 2]))
    assert np.array_equal(img1, img2) and np.array_equal(lab1, lab2) and sp1 == sp2
    assert img1.dtype == np.float32 and 0.0 <= img1.min() and img1.max() <= 1.0
    assert set(np.unique(lab1)) == {0, 1, 2, 3}
    frac = np.bincount(lab1.ravel(), minlength=4) / lab1.size
    assert frac[0] > 0.85 and all(frac[1:] > 0.002)          # background dominates
    lv_area = (lab1 == 3).sum(axis=(1, 2))
    assert lv_area[0] > lv_area[-1]                           # tapers from base to apex
    assert (lab1[-1] == 1).sum() == 0                          # no RV at the apex
    assert sp1[0] > sp1[1] == sp1[2]                           # anisotropic, thick slices


def test_prepared_cache(cardiac: PreparedDataset) -> None:
    assert cardiac.classes == ("background", "RV", "Myo", "LV")
    assert {s: len(cardiac.split_cases(s)) for s in SPLITS} == SPLITS
    meta = json.loads((cardiac.folder / "meta.json").read_text())
    assert meta["source"]["generator"] == "synthetic-cardiac"
    images, labels, owner = cardiac.train_slices(32)
    assert images.shape[1:] == (32, 32) and labels.shape == images.shape and len(owner) == len(images)
    assert isinstance(images, np.memmap)
    assert owner.max() == len(cardiac.split_cases("train")) - 1
    again = prepare("synthetic-cardiac", cache_root=cardiac.folder.parent)   # idempotent
    assert again.meta == cardiac.meta


def test_split_rule() -> None:
    assert [labeled_count(r, 70) for r in (1, 5, 10)] == [1, 4, 7]
    assert [labeled_count(r, 100) for r in (1, 5, 10)] == [1, 5, 10]
    assert [labeled_count(r, 15) for r in (5, 10)] == [1, 2]
    assert labeled_count(100, 40) == 40
    with pytest.raises(DataError):
        labeled_count(0, 10)


def test_splits_patient_level(cardiac: PreparedDataset) -> None:
    lab, unl = split_labeled(cardiac, 5, seed=0, mode="paper")
    train_ids = [c.id for c in cardiac.split_cases("train")]
    assert lab == train_ids[:2] and unl == train_ids[2:]
    r0, _ = split_labeled(cardiac, 5, seed=0, mode="random")
    r1, _ = split_labeled(cardiac, 5, seed=1, mode="random")
    assert r0 != r1 and len(r0) == len(r1) == 2
    assert split_labeled(cardiac, 5, seed=0, mode="random")[0] == r0
    assert not set(r0) & set(c.id for c in cardiac.split_cases("test"))


class BrokenSpec(DatasetSpec):
    name = "broken-test"
    classes = ("background", "a")
    embedded = True
    problem = "labels"

    def build(self, raw: Path | None, writer: CacheWriter) -> None:
        img = np.zeros((2, 8, 8), np.float32)
        writer.add("ok", img, np.zeros((2, 8, 8), np.uint8), "train", (1, 1, 1))
        if self.problem == "labels":
            writer.add("bad", img, np.full((2, 8, 8), 5, np.uint8), "val", None, origin="raw/bad.nii.gz")
        elif self.problem == "shape":
            writer.add("bad", img, np.zeros((2, 8, 9), np.uint8), "val", None, origin="raw/bad.nii.gz")
        elif self.problem == "nan":
            writer.add("bad", img * np.nan, np.zeros((2, 8, 8), np.uint8), "val", None, origin="raw/bad.nii.gz")


@pytest.mark.parametrize("problem, message", [
    ("labels", r"raw/bad.nii.gz: label values \[5\] outside 0..1"),
    ("shape", r"raw/bad.nii.gz: image shape"),
    ("nan", r"raw/bad.nii.gz: image contains NaN"),
    ("none", r"no 'val' cases"),
])
def test_bad_input_leaves_no_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, problem: str,
                                   message: str) -> None:
    monkeypatch.setattr(BrokenSpec, "problem", problem)
    DATASETS.add("broken-test", BrokenSpec, "test")
    try:
        with pytest.raises(DataError, match=message):
            prepare("broken-test", cache_root=tmp_path)
        assert list(tmp_path.iterdir()) == []          # nothing half written
    finally:
        DATASETS._entries.pop("broken-test")


def test_not_prepared_dataset_is_a_clear_error(tmp_path: Path) -> None:
    class Raw(DatasetSpec):
        classes = ("background", "x")

    DATASETS.add("raw-test", Raw, "test")
    try:
        with pytest.raises(DataError, match="bench prepare raw-test --raw PATH"):
            prepare("raw-test", cache_root=tmp_path)
    finally:
        DATASETS._entries.pop("raw-test")


def test_resize_round_trip_and_types() -> None:
    lab = np.zeros((3, 40, 50), np.uint8)
    lab[:, 10:30, 20:40] = 2
    small = resize_slices(lab, 32)
    assert small.shape == (3, 32, 32) and small.dtype == np.uint8 and set(np.unique(small)) == {0, 2}
    back = resize_slices(small, (40, 50))
    assert back.shape == lab.shape and (back == lab).mean() > 0.97
    t = torch.rand(2, 16, 16)
    assert resize_slices(t, 16) is t
    assert resize_slices(t, 32, "bilinear").shape == (2, 32, 32)


def test_liver_and_whs_phantoms() -> None:
    from sslbench.datasets.synthetic_liver import liver_volume
    from sslbench.datasets.synthetic_whs import whs_volume

    with_tumour = []
    for i in range(12):
        img, lab, sp = liver_volume(np.random.default_rng([7, i]))
        assert set(np.unique(lab)) <= {0, 1, 2} and (lab == 1).any() and sp[0] > sp[1]
        with_tumour.append(bool((lab == 2).any()))
        if with_tumour[-1]:
            assert (lab == 2).sum() < 0.1 * (lab == 1).sum()            # tumours are small: the long tail
    assert 0 < sum(with_tumour) < len(with_tumour)                     # and often absent
    img, lab, _ = whs_volume(np.random.default_rng([7, 0]))
    assert set(np.unique(lab)) == set(range(8))
    assert np.array_equal(whs_volume(np.random.default_rng([7, 0]))[1], lab)
    assert (lab[0] == 3).any() and not (lab[0] == 6).any()             # ventricles low, aorta high


def test_random_split_labels_as_many_patients_as_the_paper_list(tmp_path: Path) -> None:
    """ACDC 5 % is 3 patients in SSL4MIS's list (not round(3.5) = 4): random splits match that count."""
    from sslbench.base.config import configs_dir

    patients = (configs_dir() / "splits" / "acdc" / "train.txt").read_text().split()
    cases = [{"id": f"{p}_frame0{f}", "patient": p, "split": "train", "shape": [1, 4, 4], "spacing": None,
              "crop": [[0, 1], [0, 4], [0, 4]], "fill": 0.0, "image_dtype": "float16"}
             for p in patients for f in (1, 2)]
    (tmp_path / "meta.json").write_text(json.dumps({"format": 2, "name": "acdc", "kind": "acdc",
                                                    "classes": ["bg", "a"], "cases": cases}))
    ds = PreparedDataset(tmp_path)
    for ratio, n_patients in ((1, 1), (5, 3), (10, 7), (20, 14)):   # 20 %: no list, round(0.2 x 70)
        paper, _ = split_labeled(ds, ratio, seed=0, mode="paper")
        assert len({c.split("_")[0] for c in paper}) == n_patients
        for seed in (0, 1):
            rand, unl = split_labeled(ds, ratio, seed=seed, mode="random")
            assert len(rand) == 2 * n_patients and len({c.split("_")[0] for c in rand}) == n_patients
            assert not set(rand) & set(unl) and len(rand) + len(unl) == len(cases)
    assert split_labeled(ds, 5, 0, "random")[0] != split_labeled(ds, 5, 1, "random")[0]


@pytest.mark.parametrize("direction", ["in", "out"])
def test_nearest_resize_is_scipy_zoom_order_0(direction: str) -> None:
    """Every in-plane size 1-400 (odd ones included) to and from 256 / 64 / 96 reads exactly the pixels
    ``scipy.ndimage.zoom(order=0)`` reads, including the 0 it writes where float rounding overshoots."""
    from scipy.ndimage import zoom

    from sslbench.io.resize import zoom_index

    bad = []
    for n in range(1, 401):
        for m in (256, 64, 96):
            n_in, n_out = (n, m) if direction == "in" else (m, n)
            ramp = np.arange(1, n_in + 1, dtype=np.float64)[:, None].repeat(2, 1)
            expect = zoom(ramp, (n_out / n_in, 1), order=0)[:, 0].astype(np.int64) - 1
            if not np.array_equal(np.asarray(zoom_index(n_in, n_out)), expect):
                bad.append((n_in, n_out))
    assert not bad, bad[:5]
    rng = np.random.default_rng(0)
    for h, w in ((216, 256), (154, 181), (12, 257), (333, 77)):     # whole slices, both axes at once
        img = rng.random((2, h, w)).astype(np.float32)
        lab = rng.integers(0, 4, (2, h, w)).astype(np.uint8)
        size = 256 if direction == "in" else 64
        if direction == "in":
            got, src = resize_slices(img, size), img
            expect = np.stack([zoom(s, (size / h, size / w), order=0) for s in src])
        else:
            src = lab[:, :size, :size] if min(h, w) >= size else lab
            got = resize_slices(src, (h, w))
            expect = np.stack([zoom(s, (h / s.shape[0], w / s.shape[1]), order=0) for s in src])
        assert got.shape == expect.shape and np.array_equal(got, expect)
        t = torch.from_numpy(np.array(src))
        assert torch.equal(resize_slices(t, got.shape[-2:]), torch.from_numpy(expect))   # tensors alike
