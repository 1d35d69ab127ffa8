"""MONA's fused FPN map without building it at full resolution.

The released FPN upsamples its 480-channel half-resolution map bilinearly (align_corners) to full
resolution and concatenates the finest decoder stage: a (B, 496, H, W) map, about 40 % of stage 2's
forward on a CPU, of which the losses read only a few hundred sampled pixels, per-class weighted
sums and a 16 x 16 average pooling. Upsampling is linear and separable, ``up(X) = U_h X U_w^T``, so
each of those reads has an exact half-resolution form: a pixel is a 4-neighbour blend of the coarse
map, a weighted sum over pixels is the coarse map against ``U_h^T W U_w``, and pooling is
``(P_h U_h) X (P_w U_w)^T``. :class:`FusedMap` keeps the two parts and answers those reads; ``full``
builds the released map (tests compare every read with it).
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor


# Index and weight tables are small, built once per size and device (cached: no host-to-device copy
# in a training step after the first).
@lru_cache(maxsize=64)
def _source(out: int, inp: int, device: torch.device = torch.device("cpu")) -> tuple[Tensor, Tensor, Tensor]:
    """For each output row of an align_corners bilinear resize inp -> out: the two source rows and
    the weight of the second (PyTorch's own float32 arithmetic: scale = (inp - 1) / (out - 1))."""
    scale = torch.tensor((inp - 1) / (out - 1) if out > 1 else 0.0, dtype=torch.float32)
    pos = scale * torch.arange(out, dtype=torch.float32)
    lo = pos.floor().long().clamp(max=inp - 1)
    hi = (lo + 1).clamp(max=inp - 1)
    return lo.to(device), hi.to(device), (pos - lo.float()).to(device)


@lru_cache(maxsize=64)
def upsample_matrix(out: int, inp: int, device: torch.device) -> Tensor:
    """U (out, inp): ``U @ x`` resizes a column as ``F.interpolate(..., 'bilinear', align_corners=True)``."""
    lo, hi, frac = _source(out, inp)
    m = torch.zeros(out, inp)
    rows = torch.arange(out)
    m.index_put_((rows, lo), 1 - frac, accumulate=True)
    m.index_put_((rows, hi), frac, accumulate=True)
    return m.to(device)


@lru_cache(maxsize=64)
def pool_matrix(out: int, inp: int, device: torch.device) -> Tensor:
    """P (out, inp): ``P @ x`` is ``F.adaptive_avg_pool1d`` (cells floor(i*inp/out) .. ceil((i+1)*inp/out))."""
    m = torch.zeros(out, inp)
    for i in range(out):
        a, b = (i * inp) // out, math.ceil((i + 1) * inp / out)
        m[i, a:b] = 1.0 / (b - a)
    return m.to(device)


@lru_cache(maxsize=64)
def _pool_upsample(grid: int, out: int, inp: int, device: torch.device) -> Tensor:
    """``P @ U`` (grid, inp) in float32 whatever precision the caller runs in: built once and cached, so
    a product under bf16 autocast would serve every later fp32 step in bf16 (a dtype clash on CUDA)."""
    with torch.autocast(device.type, enabled=False):
        return pool_matrix(grid, out, device) @ upsample_matrix(out, inp, device)


class FusedMap:
    """``cat[up(L(coarse)), fine]`` at ``fine``'s resolution, never materialised, where ``L(x) = x +
    lateral(x)`` is the FPN's last lateral step (a bias-free 1x1 conv; none: identity). ``L`` is
    pixel-wise linear, so it commutes with upsampling, gathering, pooling and weighted sums and is
    applied to what those reads return, never to the (B, 480, H/2, W/2) map. ``coarse`` None:
    ``fine`` is the whole map (e.g. a map built elsewhere)."""

    def __init__(self, fine: Tensor, coarse: Tensor | None = None, lateral: Tensor | None = None) -> None:
        self.fine, self.coarse = fine, coarse
        self.lateral = None if lateral is None else lateral.flatten(1)  # (C, C) weight of the 1x1 conv
        self._rows: Tensor | None = None

    def _lift(self, v: Tensor, dim: int = -1) -> Tensor:
        """``L`` applied to vectors whose channel axis is ``dim``."""
        if self.lateral is None:
            return v
        weight = self.lateral.to(v.dtype)
        if dim == -1:
            return v + F.linear(v, weight)
        return v + torch.tensordot(weight, v, dims=([1], [dim])).movedim(0, dim)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        n, c, h, w = self.fine.shape
        return n, c + (0 if self.coarse is None else self.coarse.shape[1]), h, w

    def __getitem__(self, rows: slice) -> FusedMap:
        return FusedMap(self.fine[rows], None if self.coarse is None else self.coarse[rows], self.lateral)

    def detach_float(self) -> FusedMap:
        """Detached float32 parts, the lateral step's weight included."""
        return FusedMap(self.fine.detach().float(), None if self.coarse is None else self.coarse.detach().float(),
                        None if self.lateral is None else self.lateral.detach().float())

    def full(self) -> Tensor:
        """The released (B, C, H, W) map."""
        if self.coarse is None:
            return self.fine
        coarse = self.coarse if self.lateral is None else self._lift(self.coarse, dim=1)
        up = F.interpolate(coarse.contiguous(memory_format=torch.channels_last), size=self.fine.shape[-2:],
                           mode="bilinear", align_corners=True)
        return torch.cat([up, self.fine], dim=1)

    def gather(self, idx: Tensor) -> Tensor:
        """Feature vectors (Q, C) at flat pixel indices ``b * H * W + y * W + x``."""
        n, _, h, w = self.fine.shape
        b, p = idx // (h * w), idx % (h * w)
        y, x = p // w, p % w
        fine = self.fine[b, :, y, x]
        if self.coarse is None:
            return fine
        hc, wc = self.coarse.shape[-2:]
        y0, y1, fy = _source(h, hc, idx.device)
        x0, x1, fx = _source(w, wc, idx.device)
        y0, y1, fy, x0, x1, fx = y0[y], y1[y], fy[y, None], x0[x], x1[x], fx[x, None]
        # one row per coarse pixel: four row gathers (and their backward, four row scatters) instead
        # of strided reads of every channel plane
        if self._rows is None:  # built once per map (the teacher's is read once per class)
            self._rows = self.coarse.permute(0, 2, 3, 1).reshape(-1, self.coarse.shape[1])
        base = b * (hc * wc)
        corners = torch.cat([base + y0 * wc + x0, base + y0 * wc + x1, base + y1 * wc + x0, base + y1 * wc + x1])
        v00, v01, v10, v11 = self._rows.index_select(0, corners).view(4, len(idx), -1)  # one gather, one scatter back
        top = v00 * (1 - fx) + v01 * fx
        bottom = v10 * (1 - fx) + v11 * fx
        return torch.cat([self._lift(top * (1 - fy) + bottom * fy), fine.to(top.dtype)], dim=1)

    def class_sums(self, weights: Tensor) -> Tensor:
        """``sum over images and pixels of map * weights[..., k]``: (C, K) for weights (B, H*W, K)."""
        n, _, h, w = self.fine.shape
        weights = weights.float()
        fine = torch.bmm(self.fine.float().flatten(2), weights).sum(0)
        if self.coarse is None:
            return fine
        hc, wc = self.coarse.shape[-2:]
        uh, uw = upsample_matrix(h, hc, weights.device), upsample_matrix(w, wc, weights.device)
        k = weights.shape[-1]
        back = uh.t() @ weights.view(n, h, w, k).permute(0, 3, 1, 2) @ uw  # (B, K, hc, wc) = U_h^T W U_w
        coarse = torch.bmm(self.coarse.float().flatten(2), back.flatten(2).transpose(1, 2)).sum(0)
        return torch.cat([self._lift(coarse, dim=0), fine], dim=0)

    def pooled(self, grid: int) -> Tensor:
        """``adaptive_avg_pool2d(map, grid)`` as (B, grid * grid, C), in float32."""
        n, _, h, w = self.fine.shape
        fine = F.adaptive_avg_pool2d(self.fine.float(), grid)
        if self.coarse is not None:
            hc, wc = self.coarse.shape[-2:]
            dev = self.fine.device
            mh, mw = _pool_upsample(grid, h, hc, dev), _pool_upsample(grid, w, wc, dev)  # (grid, hc), (grid, wc)
            fine = torch.cat([self._lift(mh @ self.coarse.float() @ mw.t(), dim=1), fine], dim=1)
        return fine.flatten(2).transpose(1, 2)
