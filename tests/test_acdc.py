"""Real ACDC in the SSL4MIS layout (skipped where the data is absent).

Set SSLBENCH_ACDC_RAW to the folder, or keep the development copy at ``../shared/data/acdc`` beside the
repository. Nothing derived from it is written outside pytest's temporary folders.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from sslbench.cache import prepare
from sslbench.splits import split_labeled
from sslbench.base.errors import DataError

from .conftest import TINY_RUN

RAW = Path(os.environ.get("SSLBENCH_ACDC_RAW", Path(__file__).resolve().parents[2] / "shared" / "data" / "acdc"))
pytestmark = [pytest.mark.acdc, pytest.mark.skipif(not (RAW / "train_slices.list").is_file(),
                                                    reason="real ACDC data not available")]


@pytest.fixture(scope="module")
def acdc(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    return prepare("acdc", RAW, cache_root=tmp_path_factory.mktemp("acdc-cache"))


def test_prepared_like_ssl4mis(acdc) -> None:  # noqa: ANN001
    train = acdc.split_cases("train")
    assert len(train) == 140 and len(acdc.split_cases("val")) == 20
    assert [c.patient for c in train[:14:2]] == ["patient099", "patient038", "patient050", "patient100",
                                                 "patient058", "patient021", "patient049"]
    images, labels, owner = acdc.train_slices(64)
    assert len(images) == 1312 and set(np.unique(labels)) == {0, 1, 2, 3}
    assert all(c.spacing is None for c in acdc.cases)                    # the h5 files carry no spacing
    assert {f["path"] for f in acdc.meta["source"]["files"]} >= {"train_slices.list", "val.list"}
    assert "test.list" in acdc.meta["missing"]["test"]


@pytest.mark.parametrize("ratio, patients, slices", [(1, 1, 32), (5, 3, 68), (10, 7, 136), (20, 14, 256)])
def test_paper_split_matches_patients_to_slices(acdc, ratio: float, patients: int, slices: int) -> None:  # noqa: ANN001
    labeled, unlabeled = split_labeled(acdc, ratio, seed=0, mode="paper")
    assert len({c.split("_")[0] for c in labeled}) == patients
    _, _, owner = acdc.train_slices(64)
    ids = [c.id for c in acdc.split_cases("train")]
    n_slices = int(np.isin(owner, [ids.index(c) for c in labeled]).sum())
    assert n_slices == slices                     # SSL4MIS patients_to_slices: 3 -> 68, 7 -> 136, 14 -> 256
    assert not {c.split("_")[0] for c in labeled} & {c.split("_")[0] for c in unlabeled}


def test_missing_test_list_is_a_clear_error(acdc) -> None:  # noqa: ANN001
    with pytest.raises(DataError, match=r"no 'test' volumes: .*test.list was not found.*--eval-split val"):
        acdc.eval_cases("test")


@pytest.mark.slow
def test_unet_l_runs_on_real_acdc(acdc, tmp_path: Path) -> None:  # noqa: ANN001
    from .test_cli import bench

    code, out, err = bench("run", "--dataset", "acdc", "--methods", "unet-l", "--ratios", "10",
                           "--eval-split", "val", "--cache", str(acdc.folder.parent), "--results", str(tmp_path),
                           "--quiet", *TINY_RUN)
    assert code == 0, err
    assert "| UNet-L" in out and "acdc" in out
    code, _, err = bench("run", "--dataset", "acdc", "--methods", "unet-l", "--ratios", "10",
                         "--cache", str(acdc.folder.parent), "--results", str(tmp_path / "t"), *TINY_RUN)
    assert code == 2 and "test.list" in err
