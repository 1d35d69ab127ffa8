"""Random boxes drawn exactly as UniMatch's ``obtain_cutmix_box`` and ABD's ``cutout_gray`` draw them,
without their retry loops.

Both releases draw an area ``s`` ~ U(area) * H * W and an aspect ``r`` ~ U(ratio), take the box
``w = int(sqrt(s / r))`` by ``h = int(sqrt(s * r))`` and a top-left corner uniform over the image,
and draw again until the box fits. UniMatch draws ``s`` once and redraws ``r`` and the corner; ABD
redraws all three. What comes out is the draw conditioned on fitting:

* the corner is uniform over the ``(W - w + 1)(H - h + 1)`` positions where the box fits;
* ``(w, h)`` has probability proportional to (the measure of the draws that give it) times (that
  count of positions): small boxes fit in more places, so they come out more often than drawn.

Only the integer sizes matter, and the (s, r) plane splits into regions of constant ``(w, h)``
bounded by lines ``s = k^2 r`` (w changes) and hyperbolas ``s = k^2 / r`` (h changes):

* UniMatch (``s`` fixed): the aspect interval splits at ``r = s / k^2`` and ``r = k^2 / s`` into
  segments of constant ``(w, h)``; one segment is picked per sample with weight (its length) x
  (positions), computed on the device for each sample's own ``s``.
* ABD (``s`` redrawn): the area of each ``(w, h)`` region of the (s, r) rectangle, integrated
  exactly piece by piece (``s``-bounds are constants, ``c r`` or ``c / r``), times its positions,
  is a fixed table per image size, computed once on the host; samples are drawn from it on the device.

So the box probability is exactly ``p`` and every box has the release's distribution, where a loop
capped at a few tries drops the large boxes that rarely fit. Every draw is an inverse-CDF lookup on
the device: nothing waits for the host.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import Tensor


def positions(w: Tensor, h: Tensor, width: int, height: int) -> Tensor:
    """Corners where a ``w`` x ``h`` box fits in a ``width`` x ``height`` image (0 when it does not)."""
    return (width - w + 1).clamp(min=0) * (height - h + 1).clamp(min=0)


def _inverse_cdf(cdf: Tensor, n: int, g: torch.Generator) -> Tensor:
    """``n`` indices drawn from cumulative weights: one per row of an (n, K) ``cdf``, or ``n`` from a
    (K,) one shared by all; an index's probability is its weight's share of the row's total."""
    u = torch.rand(n, 1, generator=g, device=cdf.device, dtype=cdf.dtype) * cdf[..., -1:]
    return torch.searchsorted(cdf, u, right=True).clamp(max=cdf.shape[-1] - 1)[:, 0]


def sizes_given_area(area: Tensor, ratio: tuple[float, float], width: int, height: int, g: torch.Generator,
                     max_area: float) -> tuple[Tensor, Tensor]:
    """UniMatch's inner loop: for each area ``area`` (n,) in pixels (at most ``max_area``), the width and
    height of a box of aspect ~ U(ratio) conditioned on fitting (one segment of constant (w, h) per
    sample, picked by length x positions)."""
    lo, hi = ratio
    s = area.double()[:, None]
    top = int(np.ceil(np.sqrt(max_area * max(1 / lo, hi)))) + 2   # past the largest w and h (host constants)
    k = torch.arange(1, top, device=area.device, dtype=torch.float64)[None]
    ends = torch.cat([torch.full_like(s, lo), torch.full_like(s, hi)], dim=1)  # fills: no host-to-device copy
    cuts = torch.cat([ends, (s / k**2).clamp(lo, hi), (k**2 / s).clamp(lo, hi)], dim=1).sort(dim=1).values
    mid = (cuts[:, 1:] + cuts[:, :-1]) / 2
    w, h = torch.sqrt(s / mid).floor(), torch.sqrt(s * mid).floor()
    weight = (cuts[:, 1:] - cuts[:, :-1]) * positions(w, h, width, height)
    pick = _inverse_cdf(weight.cumsum(dim=1), s.shape[0], g)[:, None]
    return w.gather(1, pick)[:, 0], h.gather(1, pick)[:, 0]


def _segment_integral(kind: np.ndarray, c: np.ndarray, r1: np.ndarray, r2: np.ndarray) -> np.ndarray:
    """The integral over [r1, r2] of c (kind 0), c r (kind 1) or c / r (kind 2)."""
    return np.select([kind == 0, kind == 1], [c * (r2 - r1), c * (r2**2 - r1**2) / 2],
                     c * np.log(np.maximum(r2, 1e-300) / np.maximum(r1, 1e-300)))


def region_measure(w: np.ndarray, h: np.ndarray, area: tuple[float, float], ratio: tuple[float, float]) -> np.ndarray:
    """The measure of {(s, r) in [A1, A2] x ratio : floor(sqrt(s / r)) = w, floor(sqrt(s r)) = h} for
    each (w, h) (arrays, in pixels; ``area`` (A1, A2) in pixels too). At each r the s-interval is
    [max(A1, w^2 r, h^2 / r), min(A2, (w+1)^2 r, (h+1)^2 / r)]; its length is integrated over r exactly,
    piece by piece between the points where a bound changes form or the two bounds cross."""
    a1, a2 = area
    lo, hi = ratio
    w, h = np.asarray(w, np.float64), np.asarray(h, np.float64)
    lower = [(0, np.full_like(w, a1)), (1, w**2), (2, h**2)]          # (kind, c): c, c r or c / r
    upper = [(0, np.full_like(w, a2)), (1, (w + 1) ** 2), (2, (h + 1) ** 2)]
    cuts = [np.full_like(w, lo), np.full_like(w, hi)]
    with np.errstate(divide="ignore", invalid="ignore"):
        for i, (ka, ca) in enumerate(lower + upper):
            for kb, cb in (lower + upper)[i + 1:]:
                cuts.append(_crossing(ka, ca, kb, cb))
    r = np.sort(np.clip(np.nan_to_num(np.stack(cuts, 1), nan=lo, posinf=hi, neginf=lo), lo, hi), axis=1)
    r1, r2 = r[:, :-1], r[:, 1:]
    m = (r1 + r2) / 2

    def values(bounds: list[tuple[int, np.ndarray]]) -> np.ndarray:
        return np.stack([c[:, None] * (np.ones_like(m) if k == 0 else m if k == 1 else 1 / m) for k, c in bounds])

    def integral(bounds: list[tuple[int, np.ndarray]], best: np.ndarray) -> np.ndarray:
        kinds = np.array([k for k, _ in bounds])[best]
        c = np.take_along_axis(np.stack([np.broadcast_to(c[:, None], m.shape) for _, c in bounds]), best[None], 0)[0]
        return _segment_integral(kinds, c, r1, r2)

    low, up = values(lower), values(upper)
    open_ = (up.min(0) > low.max(0)) & (r2 > r1)
    piece = integral(upper, up.argmin(0)) - integral(lower, low.argmax(0))
    return np.where(open_, piece, 0.0).sum(1)


@lru_cache(maxsize=32)
def size_table(width: int, height: int, area: tuple[float, float],
               ratio: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ABD's accepted box sizes: every (w, h) that fits a ``width`` x ``height`` image, with its
    probability (the measure of the draws that give it times the positions where it fits)."""
    w, h = (a.ravel() for a in np.meshgrid(np.arange(width + 1), np.arange(height + 1), indexing="ij"))
    pixels = (area[0] * width * height, area[1] * width * height)
    weight = region_measure(w, h, pixels, ratio) * (width - w + 1) * (height - h + 1)
    keep = weight > 0
    return w[keep], h[keep], weight[keep] / weight[keep].sum()


_TABLES: dict[tuple, tuple[Tensor, Tensor]] = {}


def _device_table(width: int, height: int, area: tuple[float, float], ratio: tuple[float, float],
                  device: torch.device) -> tuple[Tensor, Tensor]:
    """``size_table`` on ``device``: the (2, K) sizes and the (K,) cumulative probabilities, copied
    there once (a copy in every step would wait for the device)."""
    key = (width, height, area, ratio, str(device))
    if key not in _TABLES:
        w, h, prob = size_table(width, height, area, ratio)
        _TABLES[key] = (torch.as_tensor(np.stack([w, h]), dtype=torch.float64, device=device),
                        torch.as_tensor(np.cumsum(prob), dtype=torch.float64, device=device))
    return _TABLES[key]


def _crossing(ka: int, ca: np.ndarray, kb: int, cb: np.ndarray) -> np.ndarray:
    """The r > 0 where two bounds of forms (kind, c) are equal (NaN where there is none)."""
    if ka == kb:
        return np.full_like(ca, np.nan)
    pair = {ka: ca, kb: cb}
    if 0 in pair and 1 in pair:
        return pair[0] / pair[1]              # A = c r
    if 0 in pair and 2 in pair:
        return pair[2] / pair[0]              # A = c / r
    return np.sqrt(pair[2] / pair[1])         # c1 r = c2 / r


def _place(w: Tensor, h: Tensor, on: Tensor, width: int, height: int, g: torch.Generator) -> Tensor:
    """(n, H, W) masks of ``w`` x ``h`` boxes at corners uniform over where they fit, where ``on``."""
    n, device = w.shape[0], w.device
    u = torch.rand(n, 2, generator=g, device=device, dtype=torch.float64)
    x0 = (u[:, 0] * (width - w + 1)).floor().clamp(max=width - w)
    y0 = (u[:, 1] * (height - h + 1)).floor().clamp(max=height - h)
    rows = torch.arange(height, device=device).view(1, height, 1)
    cols = torch.arange(width, device=device).view(1, 1, width)
    box = ((rows >= y0.view(n, 1, 1)) & (rows < (y0 + h).view(n, 1, 1))
           & (cols >= x0.view(n, 1, 1)) & (cols < (x0 + w).view(n, 1, 1)))
    return box & on.view(n, 1, 1)


def random_boxes(n: int, height: int, width: int, g: torch.Generator, device: torch.device, p: float = 0.5,
                 area: tuple[float, float] = (0.02, 0.4), ratio: tuple[float, float] = (0.3, 1 / 0.3),
                 redraw_area: bool = False) -> Tensor:
    """(n, height, width) box masks, each present with probability ``p``. ``redraw_area=False`` is
    UniMatch's ``obtain_cutmix_box`` (the area drawn once, aspect and corner until the box fits);
    ``True`` is ABD's ``cutout_gray`` (the area redrawn too, which favours small boxes)."""
    area, ratio = (float(area[0]), float(area[1])), (float(ratio[0]), float(ratio[1]))
    on = torch.rand(n, generator=g, device=device) < p
    if redraw_area:
        sizes, cdf = _device_table(width, height, area, ratio, device)
        pick = _inverse_cdf(cdf, n, g)
        w, h = sizes[0, pick], sizes[1, pick]
    else:
        fraction = area[0] + (area[1] - area[0]) * torch.rand(n, generator=g, device=device, dtype=torch.float64)
        w, h = sizes_given_area(fraction * width * height, ratio, width, height, g, area[1] * width * height)
    return _place(w, h, on, width, height, g)
