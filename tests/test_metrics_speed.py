"""Speed of the surface metrics against medpy 0.5.2 on a 3-D volume (pytest-benchmark).

Per volume size, both implementations share one benchmark group, so ``pytest
tests/test_metrics_speed.py --benchmark-enable --benchmark-group-by=group,param`` prints the ratio of
their times side by side (the slower row shows its multiple of the faster one). With the
default ``--benchmark-disable`` each case runs once as a plain correctness test.
"""
from __future__ import annotations

import numpy as np
import pytest

from sslbench.report.metrics import binary_metrics

medpy_binary = pytest.importorskip("medpy.metric.binary")

# (shape, spacing, radius in mm): an ACDC short-axis volume's size (10 x 256 x 216, 10 mm slices) with
# a ventricle-sized object, and a larger CT-like volume
CASES = {"acdc-size": ((10, 256, 216), (10.0, 1.5, 1.5), 40.0), "ct-size": ((40, 192, 192), (5.0, 1.4, 1.4), 30.0)}


@pytest.fixture(scope="module", params=list(CASES))
def volume_pair(request: pytest.FixtureRequest) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    shape, sp, radius = CASES[request.param]
    zz, yy, xx = np.mgrid[0:shape[0], 0:shape[1], 0:shape[2]]
    cz, cy, cx = shape[0] / 2, shape[1] / 2, shape[2] / 2
    ref = ((zz - cz) * sp[0]) ** 2 + ((yy - cy) * sp[1]) ** 2 + ((xx - cx) * sp[2]) ** 2 < radius**2
    pred = ((zz - cz - 1) * sp[0]) ** 2 + ((yy - cy - 3) * sp[1]) ** 2 + ((xx - cx + 2) * sp[2]) ** 2 < (0.93 * radius)**2
    return pred, ref, sp


def ours(pred: np.ndarray, ref: np.ndarray, sp: tuple[float, ...]) -> tuple[float, float, float]:
    m = binary_metrics(pred, ref, sp)
    return m["asd"], m["assd"], m["hd95"]


def medpy_all(pred: np.ndarray, ref: np.ndarray, sp: tuple[float, ...]) -> tuple[float, float, float]:
    return medpy_binary.asd(pred, ref, sp), medpy_binary.assd(pred, ref, sp), medpy_binary.hd95(pred, ref, sp)


@pytest.mark.benchmark(group="surface-metrics-3d")
def test_speed_sslbench(benchmark, volume_pair) -> None:  # noqa: ANN001
    result = benchmark(ours, *volume_pair)
    np.testing.assert_allclose(result, medpy_all(*volume_pair), rtol=1e-9, atol=1e-9)


@pytest.mark.benchmark(group="surface-metrics-3d")
def test_speed_medpy_baseline(benchmark, volume_pair) -> None:  # noqa: ANN001
    result = benchmark(medpy_all, *volume_pair)
    assert all(np.isfinite(result))
