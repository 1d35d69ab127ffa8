"""The compact volume cache (``sslbench.data``): volumes cropped to their content box, images float16,
both deflated slab by slab (``sslbench.io.slabs``). What every reader gets back is the full volume:
the label voxel for voxel, the image to float16's rounding, so metrics are unchanged."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from sslbench.base.errors import DataError
from sslbench.data import DATASETS, CacheWriter
from sslbench.cache import PreparedDataset
from sslbench.datasets._nifti_cases import add_nifti_cases
from sslbench.io.nifti import normalize, read_case
from sslbench.io.slabs import read_slabs, write_slabs
from sslbench.report.metrics import volume_metrics


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.uint8])
def test_slabs_round_trip_into_a_box(tmp_path: Path, dtype: type) -> None:
    rng = np.random.default_rng(0)
    array = (rng.random((37, 11, 9)) * 200).astype(dtype)
    write_slabs(tmp_path / "a.slabs", array, dtype, slab=8)
    assert np.array_equal(read_slabs(tmp_path / "a.slabs"), array)
    big = np.full((40, 20, 20), -1.0, np.float32)
    read_slabs(tmp_path / "a.slabs", big[2:39, 5:16, 3:12])          # converted into a box of a bigger array
    assert np.array_equal(big[2:39, 5:16, 3:12], array.astype(np.float32)) and (big[:2] == -1).all()


def ct_case(folder: Path) -> tuple[Path, Path]:
    """An int16 CT-like case: air (-1000 HU, clipped to the window's floor) around a body."""
    rng = np.random.default_rng(1)
    d, h, w = 24, 96, 80
    zz, yy, xx = np.mgrid[0:d, 0:h, 0:w]
    body = ((yy - 50) / 30.0) ** 2 + ((xx - 38) / 25.0) ** 2 <= 1
    hu = np.where(body, -60 + rng.normal(0, 20, body.shape), -1000 + rng.normal(0, 10, body.shape))
    organ = (((yy - 45) / 12.0) ** 2 + ((xx - 30) / 10.0) ** 2 <= 1) & (zz > 5) & (zz < 18)
    hu[organ] = 60 + rng.normal(0, 10, int(organ.sum()))
    label = organ.astype(np.uint8)
    label[(organ & (xx < 27) & (zz == 10))] = 2
    folder.mkdir(parents=True, exist_ok=True)
    to_nifti = lambda a: np.ascontiguousarray(np.transpose(a, (2, 1, 0)))  # noqa: E731  (x, y, z) on disk
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    nib.save(nib.Nifti1Image(to_nifti(np.round(hu).astype(np.int16)), affine), str(folder / "img.nii"))
    nib.save(nib.Nifti1Image(to_nifti(label), affine), str(folder / "lab.nii"))
    return folder / "img.nii", folder / "lab.nii"


def _prepare(tmp_path: Path) -> tuple[PreparedDataset, np.ndarray, np.ndarray]:
    img, lab = ct_case(tmp_path / "raw")
    spec = DATASETS.get("lits")()
    writer = CacheWriter(spec, tmp_path / "ds")
    add_nifti_cases(writer, tmp_path / "raw", [("c1", img, lab, "train")], spec.label_map, **spec.norm)
    writer.missing = {"val": "none here", "test": "none here"}
    writer.finish()
    image, label, _ = read_case(img, lab, spec.label_map)           # what the float32 layout stored
    return PreparedDataset(tmp_path / "ds"), normalize(image, "img", **spec.norm), label


def test_a_case_reads_back_whole_from_its_cropped_float16_store(tmp_path: Path) -> None:
    ds, image, label = _prepare(tmp_path)
    case = ds.cases[0]
    assert case.image_dtype == "float16" and case.fill == 0.0
    kept = np.prod([b - a for a, b in case.crop]) / np.prod(case.shape)
    assert kept < 0.6                                               # the air around the body is not stored
    got_image, got_label = ds.volume("c1")
    assert got_image.dtype == np.float32 and got_image.shape == image.shape
    assert np.array_equal(got_label, label)                         # voxel for voxel
    assert np.abs(got_image - image).max() <= 2.0 ** -11            # float16's rounding of [0, 1]
    assert (got_image[image == 0] == 0).all()                       # the fill is exact
    stored = sum(p.stat().st_size for p in (tmp_path / "ds" / "volumes").iterdir())
    assert stored < (image.nbytes + label.nbytes) / 5


def test_metrics_of_a_case_are_unchanged(tmp_path: Path) -> None:
    ds, image, label = _prepare(tmp_path)
    _, got_label = ds.volume("c1")
    pred = np.roll(label, (1, 2, -1), axis=(0, 1, 2))
    spacing = ds.cases[0].spacing
    classes = list(ds.classes)
    assert volume_metrics(pred, got_label, classes, spacing) == volume_metrics(pred, label, classes, spacing)


def test_an_older_cache_format_is_refused_with_how_to_rebuild_it(tmp_path: Path) -> None:
    """No compatibility layer before a first release: a float32, uncropped cache (format 1) is one
    line naming its meta.json and the command that rebuilds it; ``prepare --force`` may replace it."""
    from sslbench.base.errors import DataError
    from sslbench.cache.prepare import _owned

    folder = tmp_path / "old"
    (folder / "volumes").mkdir(parents=True)
    image = np.random.default_rng(0).random((4, 8, 8)).astype(np.float32)
    np.save(folder / "volumes" / "a.image.npy", image)
    (folder / "meta.json").write_text(json.dumps({
        "format": 1, "name": "old", "classes": ["background", "x"],
        "cases": [{"id": "a", "patient": "a", "split": "train", "shape": [4, 8, 8], "spacing": None}]}))
    with pytest.raises(DataError, match=r"old/meta.json: a prepared dataset in cache format 1, not 2 .*"
                                         r"bench prepare old --raw PATH --force"):
        PreparedDataset(folder)
    assert _owned(folder) is not None          # ours: --force may replace it


def test_a_damaged_volume_is_one_clear_error(tmp_path: Path) -> None:
    ds, _, _ = _prepare(tmp_path)
    path = tmp_path / "ds" / "volumes" / "c1.image.slabs"
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(DataError, match=r"c1\.\*\.slabs: unreadable prepared volume .*--force"):
        ds.volume("c1")


def test_the_fill_is_the_images_own_background_value(tmp_path: Path) -> None:
    image = np.full((6, 10, 12), 0.25, np.float32)
    image[2:4, 3:7, 5:9] = np.linspace(0.3, 0.9, 32, dtype=np.float32).reshape(2, 4, 4)
    label = np.zeros(image.shape, np.uint8)
    label[1, 8, 1] = 1                                               # a label voxel outside the bright box
    writer = CacheWriter(DATASETS.get("lits")(), tmp_path / "ds")
    writer.add("a", image, label, "train", (1.0, 1.0, 1.0))
    case = writer.cases[0]
    assert case.fill == 0.25 and case.crop == ((1, 4), (3, 9), (1, 9))
    writer.missing = {"val": "-", "test": "-"}
    writer.finish()
    got_image, got_label = PreparedDataset(tmp_path / "ds").volume("a")
    assert np.array_equal(got_label, label) and np.array_equal(got_image, image.astype(np.float16).astype(np.float32))
