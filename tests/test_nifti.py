"""NIfTI datasets: nnU-Net raw format reader, orientation and spacing handling, prediction round trip,
and one clear error for every kind of bad input."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from sslbench.cache import PreparedDataset, prepare
from sslbench.io.nifti import load_volume, save_volume
from sslbench.report.metrics import binary_metrics

medpy_binary = pytest.importorskip("medpy.metric.binary")

# a non-canonical orientation: array axes (x, y, z) stored as (S, L, P) -> slice axis first, flipped
AFFINE = np.array([[0.0, -0.8, 0.0, 10.0], [0.0, 0.0, -0.7, 20.0], [4.0, 0.0, 0.0, -5.0], [0, 0, 0, 1]])


def make_case(rng: np.random.Generator, shape: tuple[int, int, int] = (6, 20, 18)) -> tuple[np.ndarray, np.ndarray]:
    image = rng.normal(100, 20, shape).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    z, y, x = shape
    label[1:5, 4:14, 3:12] = 1
    label[2:4, 6:10, 5:9] = 2
    image[label == 1] += 80
    return image, label


def write_nnunet(root: Path, n: int = 6, affine: np.ndarray = AFFINE) -> Path:
    rng = np.random.default_rng(0)
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": {"background": 0, "organ": 1, "lesion": 2},
        "numTraining": n, "file_ending": ".nii.gz"}))
    for i in range(n):
        image, label = make_case(rng)
        nib.save(nib.Nifti1Image(image, affine), str(root / "imagesTr" / f"case_{i:03d}_0000.nii.gz"))
        nib.save(nib.Nifti1Image(label, affine), str(root / "labelsTr" / f"case_{i:03d}.nii.gz"))
    return root


@pytest.fixture()
def raw(tmp_path: Path) -> Path:
    return write_nnunet(tmp_path / "Dataset001_Test")


def test_load_volume_reorients_and_takes_the_coarsest_axis(raw: Path) -> None:
    array, geom = load_volume(raw / "imagesTr" / "case_000_0000.nii.gz")
    assert geom.spacing == pytest.approx((4.0, 0.8, 0.7))
    assert array.shape[0] == 6                                 # the 4 mm axis is the slice axis


def test_prepare_nnunet_dataset(raw: Path, tmp_path: Path) -> None:
    ds = prepare("mytest", raw, cache_root=tmp_path / "cache", kind="nnunet")
    assert ds.classes == ("background", "organ", "lesion")
    assert {s: len(ds.split_cases(s)) for s in ("train", "val", "test")} == {"train": 4, "val": 1, "test": 1}
    case = ds.cases[0]
    assert case.spacing[0] == pytest.approx(4.0) and case.geometry is not None
    image, label = ds.volume(case.id)
    assert 0.0 <= float(np.min(image)) and float(np.max(image)) <= 1.0 and set(np.unique(label)) == {0, 1, 2}
    assert {f["path"] for f in ds.meta["source"]["files"]} >= {"dataset.json", "imagesTr/case_000_0000.nii.gz"}
    assert PreparedDataset(ds.folder).meta == ds.meta
    again = prepare("mytest", raw, cache_root=tmp_path / "cache", kind="nnunet")   # idempotent
    assert again.meta == ds.meta


def test_distances_in_mm_match_medpy_with_voxelspacing(raw: Path) -> None:
    """Our (D, H, W) array with its permuted spacing gives medpy's distances on the canonical array
    with the header's zooms: the transpose and the spacing travel together."""
    lab_path = raw / "labelsTr" / "case_001.nii.gz"
    ours, geom = load_volume(lab_path)
    canon = nib.as_closest_canonical(nib.load(str(lab_path)))
    ref_canon = np.asarray(canon.dataobj)
    assert np.array_equal(np.transpose(ours, np.argsort(geom.axes)), ref_canon)
    pred = np.roll(ours, 2, axis=2)
    m = binary_metrics(pred == 1, ours == 1, geom.spacing)
    expected = medpy_binary.assd(np.transpose(pred, np.argsort(geom.axes)) == 1, ref_canon == 1,
                                 canon.header.get_zooms())
    assert m["assd"] == pytest.approx(expected, abs=1e-9)
    assert m["assd"] != pytest.approx(binary_metrics(pred == 1, ours == 1, None)["assd"])


def test_prediction_round_trip_to_the_source_geometry(raw: Path, tmp_path: Path) -> None:
    src = raw / "labelsTr" / "case_002.nii.gz"
    array, geom = load_volume(src)
    out = tmp_path / "pred" / "case_002.nii.gz"
    save_volume(array.astype(np.uint8), geom, out, source=src)
    written, original = nib.load(str(out)), nib.load(str(src))
    assert np.allclose(written.affine, original.affine)
    assert np.array_equal(np.asarray(written.dataobj), np.asarray(original.dataobj))


def test_saving_a_prediction_never_writes_through_a_planted_temp_link(raw: Path, tmp_path: Path) -> None:
    import os

    src = raw / "labelsTr" / "case_002.nii.gz"
    array, geom = load_volume(src)
    out = tmp_path / "pred" / "case_002.nii.gz"
    out.parent.mkdir()
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    (out.parent / f".tmp-{os.getpid()}-{out.name}").symlink_to(target)  # the temp name a guess would give
    save_volume(array.astype(np.uint8), geom, out, source=src)
    assert target.read_text() == "keep me\n" and nib.load(str(out)).shape == nib.load(str(src)).shape


def corrupt(raw: Path, problem: str) -> str:
    """Break one thing in a valid tree; return the file name the error must mention."""
    img = raw / "imagesTr" / "case_001_0000.nii.gz"
    lab = raw / "labelsTr" / "case_001.nii.gz"
    rng = np.random.default_rng(1)
    if problem == "missing label":
        lab.unlink()
        return "case_001_0000.nii.gz: image without label"
    if problem == "shape mismatch":
        nib.save(nib.Nifti1Image(np.zeros((6, 20, 17), np.uint8), AFFINE), str(lab))
        return "case_001.nii.gz: label shape"
    if problem == "spacing mismatch":  # same grid, other voxel size: an error (an affine alone is not)
        scaled = AFFINE.copy()
        scaled[:3, :3] *= 1.5
        nib.save(nib.Nifti1Image(make_case(rng)[1], scaled), str(lab))
        return "case_001.nii.gz: label spacing differs"
    if problem == "label values":
        nib.save(nib.Nifti1Image(np.full((6, 20, 18), 7, np.uint8), AFFINE), str(lab))
        return "case_001.nii.gz: label values [7] not in the dataset's set"
    if problem == "nan image":
        image = make_case(rng)[0]
        image[0, 0, 0] = np.nan
        nib.save(nib.Nifti1Image(image, AFFINE), str(img))
        return "case_001_0000.nii.gz: image contains NaN"
    if problem == "constant image":
        nib.save(nib.Nifti1Image(np.ones((6, 20, 18), np.float32), AFFINE), str(img))
        return "case_001_0000.nii.gz: image is constant"
    if problem == "corrupt file":
        img.write_bytes(b"this is not a nifti file")
        return "case_001_0000.nii.gz: unreadable NIfTI"
    if problem == "no images":
        for p in (raw / "imagesTr").iterdir():
            p.unlink()
        return "imagesTr: no training images"
    if problem == "no dataset.json":
        (raw / "dataset.json").unlink()
        return "dataset.json: not found"
    raise AssertionError(problem)


PROBLEMS = ["missing label", "shape mismatch", "spacing mismatch", "label values", "nan image", "constant image",
            "corrupt file", "no images", "no dataset.json"]


@pytest.mark.parametrize("problem", PROBLEMS)
def test_bad_input_one_line_exit_2_nothing_written(raw: Path, tmp_path: Path, problem: str) -> None:
    from .test_cli import bench

    expected = corrupt(raw, problem)
    cache = tmp_path / "cache"
    code, out, err = bench("prepare", "broken", "--raw", str(raw), "--format", "nnunet", "--cache", str(cache))
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1 and expected in err, err
    assert not cache.exists() or not any(cache.iterdir())           # nothing half written


def test_run_on_a_nifti_dataset_saves_predictions(raw: Path, tmp_path: Path) -> None:
    from .conftest import TINY_RUN
    from .test_cli import bench

    cache = tmp_path / "cache"
    assert bench("prepare", "mytest", "--raw", str(raw), "--format", "nnunet", "--cache", str(cache))[0] == 0
    code, out, err = bench("run", "--dataset", "mytest", "--methods", "unet-l", "--ratios", "50", "--cache",
                           str(cache), "--results", str(tmp_path / "r"), "--quiet", "--save-predictions", *TINY_RUN)
    assert code == 0, err
    preds = list((tmp_path / "r").rglob("predictions/*.nii.gz"))
    assert len(preds) == 1
    src = raw / "labelsTr" / preds[0].name
    assert nib.load(str(preds[0])).shape == nib.load(str(src)).shape
    assert np.allclose(nib.load(str(preds[0])).affine, nib.load(str(src)).affine)
    code, out, _ = bench("datasets", "--cache", str(cache))
    assert "mytest" in out and "organ, lesion" in out
