"""MONA's factored FPN map (``sslbench.methods.mona._fused``): every read equals the same read of the
released full-resolution map (the last lateral step ``x + conv1x1(x)``, bilinear align_corners
upsampling, then concatenation), gradients included."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sslbench.methods.mona import _fused
from sslbench.methods.mona._fused import FusedMap, pool_matrix, upsample_matrix


@pytest.mark.parametrize("out, inp", [(16, 8), (15, 8), (7, 4), (5, 5), (1, 3), (4, 1)])
def test_upsample_matrix_is_align_corners_bilinear(out: int, inp: int) -> None:
    x = torch.randn(2, 3, inp, 6)
    want = F.interpolate(x, size=(out, 6), mode="bilinear", align_corners=True)
    torch.testing.assert_close(upsample_matrix(out, inp, torch.device("cpu")) @ x, want)


@pytest.mark.parametrize("out, inp", [(4, 16), (3, 16), (5, 7), (16, 16)])
def test_pool_matrix_is_adaptive_average_pooling(out: int, inp: int) -> None:
    x = torch.randn(2, 3, 5, inp)
    torch.testing.assert_close(x @ pool_matrix(out, inp, torch.device("cpu")).t(), F.adaptive_avg_pool1d(
        x.flatten(0, 2), out).view(2, 3, 5, out))


@pytest.fixture(params=[(16, 16, 8, 8), (20, 12, 10, 6), (9, 11, 5, 6)], ids=["even", "wide", "odd"])
def maps(request: pytest.FixtureRequest) -> tuple[FusedMap, torch.Tensor]:
    h, w, hc, wc = request.param
    g = torch.Generator().manual_seed(0)
    fm = FusedMap(torch.randn(3, 4, h, w, generator=g), torch.randn(3, 6, hc, wc, generator=g),
                  torch.randn(6, 6, 1, 1, generator=g) / 3)
    return fm, fm.full()


def test_full_is_the_released_map(maps: tuple[FusedMap, torch.Tensor]) -> None:
    fm, full = maps
    lateral = fm.coarse + F.conv2d(fm.coarse, fm.lateral.view(6, 6, 1, 1))
    up = F.interpolate(lateral, size=fm.fine.shape[-2:], mode="bilinear", align_corners=True)
    torch.testing.assert_close(full, torch.cat([up, fm.fine], 1))
    assert fm.shape == tuple(full.shape)


def test_gather_reads_pixels_of_the_full_map(maps: tuple[FusedMap, torch.Tensor]) -> None:
    fm, full = maps
    n, c, h, w = full.shape
    idx = torch.randperm(n * h * w, generator=torch.Generator().manual_seed(1))[:50]
    want = full.permute(0, 2, 3, 1).reshape(-1, c)[idx]
    torch.testing.assert_close(fm.gather(idx), want)
    torch.testing.assert_close(fm[1:].gather(idx % (2 * h * w)), full[1:].permute(0, 2, 3, 1).reshape(-1, c)[idx % (2 * h * w)])


def test_class_sums_are_weighted_sums_of_the_full_map(maps: tuple[FusedMap, torch.Tensor]) -> None:
    fm, full = maps
    n, c, h, w = full.shape
    weights = torch.rand(n, h * w, 5, generator=torch.Generator().manual_seed(2))
    want = torch.einsum("ncp,npk->ck", full.flatten(2), weights)
    torch.testing.assert_close(fm.class_sums(weights), want, rtol=1e-5, atol=1e-4)


def test_pooled_is_adaptive_pooling_of_the_full_map(maps: tuple[FusedMap, torch.Tensor]) -> None:
    fm, full = maps
    for grid in (4, 3):
        want = F.adaptive_avg_pool2d(full, grid).flatten(2).transpose(1, 2)
        torch.testing.assert_close(fm.pooled(grid), want)


def test_tables_first_built_under_bf16_autocast_serve_fp32_reads() -> None:
    """The cached tables are float32 whatever precision first asked for them: a bf16 run (CUDA's
    quick profile) and an fp32 run (ssl4mis, paper) in one process share the cache (the H200 GPU
    check's MONA and fine-tuned-framework fp32 steps failed on a bf16 pooling table)."""
    g = torch.Generator().manual_seed(3)
    fm = FusedMap(torch.randn(2, 4, 22, 18, generator=g), torch.randn(2, 6, 11, 9, generator=g),
                  torch.randn(6, 6, 1, 1, generator=g) / 3)
    _fused._pool_upsample.cache_clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fm.pooled(4)                              # the tables are built here, inside autocast
    assert all(t.dtype == torch.float32 for t in (_fused._pool_upsample(4, 22, 11, torch.device("cpu")),
                                                 _fused._pool_upsample(4, 18, 9, torch.device("cpu"))))
    want = F.adaptive_avg_pool2d(fm.full(), 4).flatten(2).transpose(1, 2)
    torch.testing.assert_close(fm.pooled(4), want)  # fp32 now, from the same cache


def test_gradients_reach_both_parts_as_through_the_full_map(maps: tuple[FusedMap, torch.Tensor]) -> None:
    fm, _ = maps
    coarse, fine = fm.coarse.clone().requires_grad_(), fm.fine.clone().requires_grad_()
    weight = fm.lateral.clone().view(6, 6, 1, 1).requires_grad_()
    idx = torch.arange(0, fine.shape[0] * fine.shape[2] * fine.shape[3], 7)
    w = torch.randn(len(idx), coarse.shape[1] + fine.shape[1])
    factored = FusedMap(fine, coarse, weight)
    got = torch.autograd.grad((factored.gather(idx) * w).sum() + factored.pooled(3).pow(2).sum(),
                              [coarse, fine, weight])
    full = factored.full()
    flat = full.permute(0, 2, 3, 1).reshape(-1, full.shape[1])
    want = torch.autograd.grad((flat[idx] * w).sum()
                               + F.adaptive_avg_pool2d(full, 3).pow(2).sum(), [coarse, fine, weight])
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_the_fpn_leaves_only_its_last_lateral_step_undone() -> None:
    from sslbench.methods.mona._heads import FeatureExtractor
    from sslbench.nn.unet import build_unet

    torch.manual_seed(0)
    net = build_unet(1, 4, 4)
    out = net(torch.randn(2, 1, 32, 32), features=True)
    feats = [out.bottleneck, *out.decoder]
    fpn = FeatureExtractor(net.widths)
    fused = fpn.fuse(feats)
    assert fused.coarse.shape == (2, 120, 16, 16) and fused.fine.shape == (2, 4, 32, 32)
    x = feats[0]                                   # the released forward, step by step
    for conv, nxt in zip(fpn.lateral, feats[1:]):
        x = conv(x) + x
        x = torch.cat([F.interpolate(x, size=nxt.shape[-2:], mode="bilinear", align_corners=True), nxt], 1)
    torch.testing.assert_close(fused.full(), x)
    torch.testing.assert_close(fpn(feats), fpn.out(x))
