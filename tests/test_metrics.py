"""Metrics equal medpy 0.5.2 exactly (tolerance 1e-9) and follow the documented empty-mask policy."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from sslbench.report.metrics import binary_metrics, diagonal, surface_distances, volume_metrics

medpy_binary = pytest.importorskip("medpy.metric.binary")


def blobs(rng: np.random.Generator, shape: tuple[int, ...], threshold: float) -> np.ndarray:
    return ndimage.gaussian_filter(rng.random(shape), 2.5) > threshold


def random_case(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (96, 80) if seed % 2 == 0 else (24, 64, 56)
    while True:
        a, b = blobs(rng, shape, rng.uniform(0.5, 0.53)), blobs(rng, shape, rng.uniform(0.5, 0.53))
        if a.any() and b.any():
            return a, b, rng.uniform(0.5, 3.0, size=len(shape))


def assert_same(ours: float, theirs: float) -> None:
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9)


def assert_distances_equal_medpy(a: np.ndarray, b: np.ndarray, spacing: tuple[float, ...] | None) -> None:
    """asd, assd, hd95 in mm and the voxel-unit legacy pair, each against medpy's."""
    m = binary_metrics(a, b, spacing)
    assert_same(m["asd"], medpy_binary.asd(a, b, spacing))
    assert_same(m["assd"], medpy_binary.assd(a, b, spacing))
    assert_same(m["hd95"], medpy_binary.hd95(a, b, spacing))
    assert_same(m["asd_legacy"], medpy_binary.asd(a, b, None))
    assert_same(m["hd95_legacy"], medpy_binary.hd95(a, b, None))


@pytest.mark.parametrize("connectivity", [1, 2])
@pytest.mark.parametrize("seed", range(12))
def test_random_cases_equal_medpy(seed: int, connectivity: int) -> None:
    a, b, spacing = random_case(seed)
    m = binary_metrics(a, b, spacing, connectivity)
    assert_same(m["dice"], medpy_binary.dc(a, b))
    assert_same(m["asd"], medpy_binary.asd(a, b, spacing, connectivity))
    assert_same(m["assd"], medpy_binary.assd(a, b, spacing, connectivity))
    assert_same(m["hd95"], medpy_binary.hd95(a, b, spacing, connectivity))
    assert_same(m["asd_legacy"], medpy_binary.asd(a, b, None, connectivity))
    assert_same(m["hd95_legacy"], medpy_binary.hd95(a, b, None, connectivity))
    d_ab, d_ba = surface_distances(a, b, spacing, connectivity)
    assert_same(max(d_ab.max(), d_ba.max()), medpy_binary.hd(a, b, spacing, connectivity))


def test_border_touching_single_voxel_and_nested() -> None:
    a = np.zeros((20, 30, 25), bool)
    b = np.zeros_like(a)
    a[0:5, 0:30, 3:9] = True          # touches three array faces
    a[15, 20, 20] = True              # a single voxel, second component
    b[2:12, 5:25, 4:20] = True
    b[4:8, 10:15, 8:12] = False       # a hole: nested surfaces
    sp = (3.0, 0.7, 1.1)
    m = binary_metrics(a, b, sp)
    assert_same(m["asd"], medpy_binary.asd(a, b, sp))
    assert_same(m["assd"], medpy_binary.assd(a, b, sp))
    assert_same(m["hd95"], medpy_binary.hd95(a, b, sp))


def test_symmetry() -> None:
    a, b, sp = random_case(3)
    ab, ba = binary_metrics(a, b, sp), binary_metrics(b, a, sp)
    assert_same(ab["assd"], ba["assd"])
    assert_same(ab["hd95"], ba["hd95"])
    assert abs(ab["asd"] - ba["asd"]) > 1e-6  # the directed ASD is not symmetric


def test_big_versus_small_square_regression() -> None:
    """The numbers that separate the ASD definitions in circulation (ANCHORS.md 2.8)."""
    big, small = np.zeros((40, 40), bool), np.zeros((40, 40), bool)
    big[:, :] = True
    small[10:20, 10:20] = True
    m = binary_metrics(small, big)
    d_sb, d_bs = surface_distances(small, big)
    assert m["assd"] == pytest.approx(16.3381, abs=1e-4)               # pooled (medpy 0.5.2)
    assert np.mean([d_sb.mean(), d_bs.mean()]) == pytest.approx(14.7658, abs=1e-4)  # medpy <= 0.4.0
    assert m["asd"] == pytest.approx(12.25, abs=1e-4)
    assert binary_metrics(big, small)["asd"] == pytest.approx(17.2815, abs=1e-4)
    assert m["hd95"] == pytest.approx(25.0)
    monai_style = max(np.percentile(d_sb, 95), np.percentile(d_bs, 95))
    assert monai_style == pytest.approx(25.6125, abs=1e-4)


def test_identical_masks_score_perfectly() -> None:
    a, _, sp = random_case(5)
    m = binary_metrics(a, a, sp)
    assert m["dice"] == 1.0 and m["assd"] == 0.0 and m["hd95"] == 0.0


def test_empty_policy() -> None:
    shape, sp = (10, 20, 30), (2.0, 1.0, 1.0)
    empty = np.zeros(shape, bool)
    obj = empty.copy()
    obj[3:6, 5:9, 5:9] = True
    with pytest.raises(RuntimeError):
        medpy_binary.assd(empty, obj)  # medpy raises; we never score a perfect distance
    both = binary_metrics(empty, empty, sp)
    assert both["dice"] == 1.0 and both["assd"] == 0.0 and both["empty_pred"] and both["empty_ref"]
    for pred, ref in ((empty, obj), (obj, empty)):
        one = binary_metrics(pred, ref, sp)
        assert one["dice"] == 0.0
        assert one["assd"] == one["hd95"] == pytest.approx(diagonal(shape, sp))
        assert one["asd_legacy"] == one["hd95_legacy"] == pytest.approx(diagonal(shape, None))


def test_volume_metrics_per_class() -> None:
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 3, (6, 20, 20)).astype(np.uint8)
    pred = ref.copy()
    pred[0] = 0
    out = volume_metrics(pred, ref, ("background", "a", "b"), (5.0, 1.0, 1.0))
    assert set(out) == {"a", "b"}
    for c, name in ((1, "a"), (2, "b")):
        assert_same(out[name]["dice"], medpy_binary.dc(pred == c, ref == c))
        assert_same(out[name]["assd"], medpy_binary.assd(pred == c, ref == c, (5.0, 1.0, 1.0)))
    with pytest.raises(ValueError):
        volume_metrics(pred[:3], ref, ("background", "a", "b"))


@pytest.mark.parametrize("spacing", [(10.0, 1.5, 1.5), None, (2.5, 0.8, 0.8), (5.0, 0.7, 1.3)],
                         ids=["acdc-like", "voxels", "ct-like", "anisotropic-in-plane"])
@pytest.mark.parametrize("limit", [200_000_000, 10], ids=["slice-wise", "3d-fallback"])
def test_slice_wise_distances_equal_medpy(spacing: tuple[float, ...] | None, limit: int,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The slice-wise path (2-D transforms per slice, combined across slices outwards from each
    voxel's slice) and its fall back to 3-D transforms give medpy's values in both unit systems."""
    import sslbench.report.metrics as metrics

    monkeypatch.setattr(metrics, "_SLICEWISE_LIMIT", limit)
    calls = []
    real = metrics._across_slices
    monkeypatch.setattr(metrics, "_across_slices", lambda *a: calls.append(1) or real(*a))
    rng = np.random.default_rng(5)
    a, b = blobs(rng, (9, 60, 52), 0.51), blobs(rng, (9, 60, 52), 0.515)
    a[0], b[-1] = False, False                      # slices without one of the surfaces
    assert_distances_equal_medpy(a, b, spacing)
    assert bool(calls) == (limit > 10)              # the path this case is meant to take


@pytest.mark.parametrize("outward, pairs", [(8, 4_000_000), (1, 50)], ids=["outwards", "every-slice-in-blocks"])
@pytest.mark.parametrize("spacing", [(2.0, 1.0, 1.0), (10.0, 1.5, 1.5), (3.0, 0.7, 1.3), None],
                         ids=["thin", "acdc-like", "anisotropic-in-plane", "voxels"])
def test_the_nearest_surface_several_slices_away_in_either_direction(spacing: tuple[float, ...] | None, outward: int,
                                                                     pairs: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The search outwards from each voxel's slice stops only when the slice gap alone exceeds the
    best distance: a surface nearer in a slice above or below (or only there) is found in both
    directions, with the slice gap in the unit system's scale; voxels still open after
    ``_OUTWARD_SLICES`` take every slice at once, in blocks."""
    import sslbench.report.metrics as metrics

    monkeypatch.setattr(metrics, "_OUTWARD_SLICES", outward)
    monkeypatch.setattr(metrics, "_PAIRS", pairs)
    shape = (12, 40, 40)
    ref = np.zeros(shape, bool)
    ref[1, 30:34, 30:34] = True            # far in-plane from most of pred, near in slice only
    ref[9, 4:9, 4:9] = True                # below pred: the nearest for its last slices, two or more away
    pred = np.zeros(shape, bool)
    pred[2:8, 3:10, 3:10] = True           # slices without any ref voxel between the two ref slices
    pred[1, 3:6, 3:6] = True               # ref's slice, but its ref object is far in-plane
    for a, b in ((pred, ref), (ref, pred)):
        assert_distances_equal_medpy(a, b, spacing)


@pytest.mark.parametrize("in_plane", [(1.5, 1.5), (1.2, 1.7)], ids=["square-pixels", "oblong-pixels"])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slices_on_any_axis_take_the_slice_wise_path_and_equal_medpy(axis: int, in_plane: tuple[float, float],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A stack of 10 mm slices on axis 0, 1 or 2 gives medpy's values, through the per-slice path
    (one 2-D transform per slice, never four 3-D ones), with square or oblong pixels."""
    from medpy.metric import binary as mb

    from sslbench.report import metrics

    shape, sp = [40, 48, 44], [1.5, 1.5, 1.5]
    sp[(axis + 1) % 3], sp[(axis + 2) % 3] = in_plane
    shape[axis], sp[axis] = 8, 10.0
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    ref = sum(((g - n / 2) * s) ** 2 for g, n, s in zip(grids, shape, sp)) < 28.0 ** 2
    pred = sum(((g - n / 2 - 1) * s) ** 2 for g, n, s in zip(grids, shape, sp)) < 25.0 ** 2
    assert metrics._slice_axis(tuple(shape), np.asarray(sp)) == axis
    calls, stacks = [], []
    monkeypatch.setattr(metrics, "surface_distances", lambda *a, **k: calls.append(a) or (_ for _ in ()).throw(AssertionError))
    per_slice = metrics._slice_features
    monkeypatch.setattr(metrics, "_slice_features", lambda t, s: stacks.append(t.shape[0]) or per_slice(t, s))
    m = metrics.binary_metrics(pred, ref, sp)
    assert not calls and stacks and set(stacks) <= set(range(1, 9))   # 2-D transforms across the 8 slices
    np.testing.assert_allclose([m["asd"], m["assd"], m["hd95"]],
                               [mb.asd(pred, ref, sp), mb.assd(pred, ref, sp), mb.hd95(pred, ref, sp)], rtol=1e-9)
    np.testing.assert_allclose([m["asd_legacy"], m["hd95_legacy"]], [mb.asd(pred, ref), mb.hd95(pred, ref)], rtol=1e-9)


@pytest.mark.parametrize("spacing", [None, (2.0, 0.5, 0.5), (2.0, 0.7, 1.3)], ids=["pixels", "mm", "oblong-mm"])
def test_a_stack_shallower_than_the_outward_pass_leaves_far_voxels_open_and_equal_medpy(spacing) -> None:  # noqa: ANN001
    """Three slices, the two surfaces far apart in-plane: after every slice is visited voxels are still
    open (their distance exceeds the deepest gap), and their best distances must still be returned."""
    pred, ref = np.zeros((3, 40, 60), dtype=bool), np.zeros((3, 40, 60), dtype=bool)
    pred[0, 5:12, 3:9] = True
    ref[1:3, 25:36, 40:57] = True
    assert_distances_equal_medpy(pred, ref, spacing)


def test_squared_pixel_distances_in_int64_equal_int32(monkeypatch: pytest.MonkeyPatch) -> None:
    """Slices too large for int32 squares take int64 ones: forced here, the values are medpy's."""
    from sslbench.report import metrics

    pred, ref, _ = random_case(3)
    before = metrics.binary_metrics(pred, ref, (4.0, 1.0, 1.0))
    monkeypatch.setattr(metrics, "_INT32_SQUARES", 0)
    types = []
    features = metrics._slice_features

    def recorded(target: np.ndarray, sampling: tuple[float, float] | None) -> metrics._Features:
        f = features(target, sampling)
        types.append(None if f.sq is None else f.sq.dtype)
        return f

    monkeypatch.setattr(metrics, "_slice_features", recorded)
    assert metrics.binary_metrics(pred, ref, (4.0, 1.0, 1.0)) == before
    assert np.dtype(np.int64) in types
    assert_distances_equal_medpy(pred, ref, (4.0, 1.0, 1.0))


def test_a_zero_dimensional_mask_is_one_voxel() -> None:
    m = binary_metrics(np.array(True), np.array(True))
    assert m["dice"] == 1.0 and all(m[k] == 0.0 for k in ("asd", "assd", "hd95", "asd_legacy", "hd95_legacy"))


@pytest.mark.parametrize("fn", [binary_metrics, surface_distances], ids=["binary_metrics", "surface_distances"])
def test_masks_of_different_shapes_are_refused(fn) -> None:  # noqa: ANN001
    """Two masks that broadcast (or that a crop would cut to one box) must not give a number."""
    a, b = np.zeros((4, 8, 8), bool), np.zeros((4, 8, 1), bool)
    a[1, 2:5, 2:5] = b[1, 2:5, 0] = True
    with pytest.raises(ValueError, match=r"prediction shape \(4, 8, 8\) != reference shape \(4, 8, 1\)"):
        fn(a, b)
