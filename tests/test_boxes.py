"""Boxes drawn as UniMatch's ``obtain_cutmix_box`` and ABD's ``cutout_gray`` draw them, checked against
numpy re-implementations of the two release loops (large samples, two-sample KS tests), and the
exact (s, r) measure that ABD's table is built from."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from sslbench.nn.boxes import random_boxes, region_measure, size_table

AREA, RATIO = (0.02, 0.4), (0.3, 1 / 0.3)


def release_loop(rng: np.random.Generator, n: int, size: int, p: float, redraw_area: bool) -> np.ndarray:
    """(n, 4) boxes (x, y, w, h; w = 0 where none) of the releases' loops: UniMatch draws the area once
    and retries aspect and corner until the box fits; ABD (``redraw_area``) retries the area as well."""
    out = np.zeros((n, 4), np.int64)
    for i in range(n):
        if rng.random() >= p:
            continue
        s = rng.uniform(*AREA) * size * size
        while True:
            if redraw_area:
                s = rng.uniform(*AREA) * size * size
            r = rng.uniform(*RATIO)
            w, h = int(np.sqrt(s / r)), int(np.sqrt(s * r))
            x, y = rng.integers(0, size), rng.integers(0, size)
            if x + w <= size and y + h <= size:
                out[i] = (x, y, w, h)
                break
    return out


def ours(n: int, size: int, p: float, redraw_area: bool, seed: int = 0) -> np.ndarray:
    """(n, 4) boxes (x, y, w, h) read back from our masks (0 where no box)."""
    g = torch.Generator().manual_seed(seed)
    masks = torch.cat([random_boxes(min(2000, n - k), size, size, g, torch.device("cpu"), p, AREA, RATIO,
                                    redraw_area) for k in range(0, n, 2000)]).numpy()
    rows, cols = masks.any(2), masks.any(1)
    h, w = rows.sum(1), cols.sum(1)
    y, x = rows.argmax(1), cols.argmax(1)
    return np.stack([np.where(w > 0, x, 0), np.where(h > 0, y, 0), w, h], 1)


@pytest.mark.parametrize("redraw_area", [False, True], ids=["unimatch", "abd"])
def test_boxes_have_the_release_distribution(redraw_area: bool) -> None:
    n, size, p = 20000, 64, 0.5
    ref = release_loop(np.random.default_rng(1), n, size, p, redraw_area)
    got = ours(n, size, p, redraw_area)
    ref_on, got_on = ref[ref[:, 2] * ref[:, 3] > 0], got[got[:, 2] * got[:, 3] > 0]
    # box probability p (boxes of zero width or height are invisible in a mask: none at 64 px)
    assert (ref[:, 2] * ref[:, 3] > 0).mean() == pytest.approx(p, abs=0.012)
    assert (got[:, 2] * got[:, 3] > 0).mean() == pytest.approx(p, abs=0.012)
    for name, column in (("area", lambda b: b[:, 2] * b[:, 3]), ("aspect", lambda b: b[:, 3] / b[:, 2]),
                         ("x", lambda b: b[:, 0]), ("y", lambda b: b[:, 1]),
                         ("x + w", lambda b: b[:, 0] + b[:, 2])):
        result = stats.ks_2samp(column(ref_on), column(got_on))
        assert result.pvalue > 1e-3, (name, result)


def test_abd_draws_smaller_boxes_than_unimatch() -> None:
    """Redrawing the area inside the loop favours small boxes (they fit more often): mean area about
    0.14 of the image against about 0.19 when it is drawn once."""
    uni, abd = ours(8000, 64, 1.0, False), ours(8000, 64, 1.0, True)
    mean_uni = (uni[:, 2] * uni[:, 3]).mean() / 64**2
    mean_abd = (abd[:, 2] * abd[:, 3]).mean() / 64**2
    assert 0.17 < mean_uni < 0.21 and 0.12 < mean_abd < 0.16


def test_every_draw_places_a_box_when_p_is_one() -> None:
    for redraw in (False, True):
        boxes = ours(4000, 32, 1.0, redraw, seed=3)
        assert (boxes[:, 2] * boxes[:, 3] > 0).all()
        assert (boxes[:, 0] + boxes[:, 2] <= 32).all() and (boxes[:, 1] + boxes[:, 3] <= 32).all()


def test_region_measures_tile_the_draw_rectangle() -> None:
    """The (w, h) regions partition the (s, r) rectangle: their measures sum to its area, and each agrees
    with a fine Monte-Carlo estimate."""
    area, ratio = (0.02 * 64 * 48, 0.4 * 64 * 48), RATIO
    w, h = (a.ravel() for a in np.meshgrid(np.arange(80), np.arange(80), indexing="ij"))
    measure = region_measure(w, h, area, ratio)
    total = (area[1] - area[0]) * (ratio[1] - ratio[0])
    assert measure.sum() == pytest.approx(total, rel=1e-9)
    assert (measure >= 0).all()
    rng = np.random.default_rng(0)
    s, r = rng.uniform(*area, 2_000_000), rng.uniform(*ratio, 2_000_000)
    counts = np.zeros((80, 80))
    np.add.at(counts, (np.sqrt(s / r).astype(int), np.sqrt(s * r).astype(int)), 1)
    estimate = counts.ravel() / len(s) * total
    big = measure > total * 0.002
    np.testing.assert_allclose(estimate[big], measure[big], rtol=0.06)


def test_size_table_weights_fit_counts() -> None:
    w, h, prob = size_table(32, 32, AREA, RATIO)
    assert prob.sum() == pytest.approx(1.0)
    assert (w <= 32).all() and (h <= 32).all() and (prob > 0).all()


def test_each_method_draws_its_own_releases_boxes() -> None:
    """UniMatch's CutMix draws the area once (mean about 0.19 of the image), ABD's cutout redraws it
    (about 0.14), each with its config's probability."""
    import dataclasses

    from sslbench.methods.abd import ABDConfig, cutout_gray
    from sslbench.methods.unimatch import UniMatchConfig, cutmix_boxes

    g = torch.Generator().manual_seed(0)
    uni = cutmix_boxes(6000, 64, 64, g, torch.device("cpu"), dataclasses.replace(UniMatchConfig(), box_p=1.0))
    x = torch.full((6000, 1, 64, 64), 0.5)
    _, y = cutout_gray(x, torch.ones(6000, 64, 64, dtype=torch.long), g, dataclasses.replace(ABDConfig(), cutout_p=1.0))
    abd = y == 0                                          # the cutout sets its label to background
    assert 0.17 < uni.float().mean() < 0.21 and 0.12 < abd.float().mean() < 0.16
    half = cutmix_boxes(6000, 64, 64, g, torch.device("cpu"), UniMatchConfig())
    assert abs(half.flatten(1).any(1).float().mean() - 0.5) < 0.02
