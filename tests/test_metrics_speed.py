"""Speed of the surface metrics against medpy 0.5.2 on a 3-D volume (pytest-benchmark).

Both cases share one group, so ``pytest tests/test_metrics_speed.py --benchmark-enable`` prints the
ratio of their times side by side (the slower row shows its multiple of the faster one). With the
default ``--benchmark-disable`` each case runs once as a plain correctness test.
"""
from __future__ import annotations

import numpy as np
import pytest

from sslbench.report.metrics import binary_metrics

medpy_binary = pytest.importorskip("medpy.metric.binary")

SPACING = (5.0, 1.4, 1.4)


@pytest.fixture(scope="module")
def volume_pair() -> tuple[np.ndarray, np.ndarray]:
    zz, yy, xx = np.mgrid[0:40, 0:192, 0:192]
    ref = ((zz - 20) * 5.0) ** 2 + ((yy - 90) * 1.4) ** 2 + ((xx - 100) * 1.4) ** 2 < 30.0**2
    pred = ((zz - 21) * 5.0) ** 2 + ((yy - 93) * 1.4) ** 2 + ((xx - 98) * 1.4) ** 2 < 28.0**2
    return pred, ref


def ours(pred: np.ndarray, ref: np.ndarray) -> tuple[float, float, float]:
    m = binary_metrics(pred, ref, SPACING)
    return m["asd"], m["assd"], m["hd95"]


def medpy_all(pred: np.ndarray, ref: np.ndarray) -> tuple[float, float, float]:
    return (medpy_binary.asd(pred, ref, SPACING), medpy_binary.assd(pred, ref, SPACING),
            medpy_binary.hd95(pred, ref, SPACING))


@pytest.mark.benchmark(group="surface-metrics-3d")
def test_speed_sslbench(benchmark, volume_pair) -> None:  # noqa: ANN001
    result = benchmark(ours, *volume_pair)
    np.testing.assert_allclose(result, medpy_all(*volume_pair), rtol=1e-9, atol=1e-9)


@pytest.mark.benchmark(group="surface-metrics-3d")
def test_speed_medpy_baseline(benchmark, volume_pair) -> None:  # noqa: ANN001
    result = benchmark(medpy_all, *volume_pair)
    assert all(np.isfinite(result))
