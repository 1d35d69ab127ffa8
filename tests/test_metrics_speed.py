"""Speed of the surface metrics against medpy 0.5.2 on a 3-D volume (pytest-benchmark).

Per volume size, both implementations share one benchmark group, so ``pytest
tests/test_metrics_speed.py --benchmark-enable --benchmark-group-by=group,param`` prints the ratio of
their times side by side (the slower row shows its multiple of the faster one). With the
default ``--benchmark-disable`` each case runs once as a plain correctness test.
"""
from __future__ import annotations

import numpy as np
import pytest

from sslbench.report.metrics import binary_metrics, diagonal

medpy_binary = pytest.importorskip("medpy.metric.binary")

# (shape, spacing, radius in mm): an ACDC short-axis volume's size (10 x 256 x 216, 10 mm slices) with
# a ventricle-sized object, the same stack with its slices on the last axis (as NIfTI files often hold
# them), a CT-like volume (100 x 256 x 256), and a small structure
CASES = {"acdc-size": ((10, 256, 216), (10.0, 1.5, 1.5), 40.0),
         "slices-last": ((224, 224, 10), (1.5, 1.5, 10.0), 40.0),
         "ct-size": ((100, 256, 256), (2.5, 0.8, 0.8), 60.0),
         "ct-reversed": ((256, 256, 100), (0.8, 0.8, 2.5), 60.0),
         "small": ((10, 224, 224), (10.0, 1.5, 1.5), 8.0),
         "empty-pred": ((10, 256, 216), (10.0, 1.5, 1.5), 40.0)}


@pytest.fixture(scope="module", params=list(CASES))
def volume_pair(request: pytest.FixtureRequest) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    shape, sp, radius = CASES[request.param]
    grids = np.ogrid[0:shape[0], 0:shape[1], 0:shape[2]]
    centre = [n / 2 for n in shape]
    shift = [1 if n < 20 else 3 for n in shape]  # a slice along the stack, a few voxels in-plane
    ref = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, sp)) < radius**2
    pred = sum(((g - c - d) * s) ** 2 for g, c, d, s in zip(grids, centre, shift, sp)) < (0.93 * radius)**2
    if request.param == "empty-pred":
        pred = np.zeros_like(ref)
    return pred, ref, sp


def ours(pred: np.ndarray, ref: np.ndarray, sp: tuple[float, ...]) -> tuple[float, float, float]:
    m = binary_metrics(pred, ref, sp)
    return m["asd"], m["assd"], m["hd95"]


def medpy_all(pred: np.ndarray, ref: np.ndarray, sp: tuple[float, ...]) -> tuple[float, float, float]:
    """medpy's three distances; for an empty mask its Dice and the policy's worst case (medpy raises)."""
    try:
        return medpy_binary.asd(pred, ref, sp), medpy_binary.assd(pred, ref, sp), medpy_binary.hd95(pred, ref, sp)
    except RuntimeError:
        assert medpy_binary.dc(pred, ref) == 0.0
        worst = diagonal(pred.shape, sp)
        return worst, worst, worst


@pytest.fixture(scope="module")
def medpy_values(volume_pair: tuple[np.ndarray, np.ndarray, tuple[float, ...]]) -> tuple[float, float, float]:
    """medpy's values, computed once per case (the CT-sized ones take seconds)."""
    return medpy_all(*volume_pair)


@pytest.mark.benchmark(group="surface-metrics-3d")
def test_speed_sslbench(benchmark, volume_pair, medpy_values) -> None:  # noqa: ANN001
    result = benchmark(ours, *volume_pair)
    np.testing.assert_allclose(result, medpy_values, rtol=1e-9, atol=1e-9)


@pytest.mark.benchmark(group="surface-metrics-3d")
def test_speed_medpy_baseline(benchmark, volume_pair, medpy_values) -> None:  # noqa: ANN001
    if benchmark.disabled:  # a plain test run: medpy already ran once for this case (the fixture)
        assert all(np.isfinite(medpy_values))
        return
    result = benchmark(medpy_all, *volume_pair)
    assert result == medpy_values
