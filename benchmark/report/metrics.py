"""Segmentation metrics on 3-D (or 2-D) label volumes, exactly as medpy 0.5.2 defines them.

One crop and one distance transform per class and direction give every distance metric:

* ``dice``      medpy ``dc``: 2|A∩B| / (|A|+|B|).
* ``asd``       medpy ``asd(pred, ref)``: mean distance from pred's surface to ref's (directed), in mm.
* ``assd``      medpy ``assd``: the pooled mean of both directed distance sets (the paper's "ASD").
* ``hd95``      medpy ``hd95``: 95th percentile of the pooled distance sets.
* ``asd_legacy``  directed pred->ref in voxel units (unit spacing), what SSL4MIS / ACTION / ARCO print.
* ``hd95_legacy`` medpy ``hd95`` in voxel units (unit spacing on every axis, the slice axis included),
  what SSL4MIS's ``test_2D_fully.py`` prints, so published numbers can be compared.

Surfaces are voxel centres (XOR with a one-voxel erosion, connectivity 1 by default, zero border),
as in medpy. Cropping to the bounding box of pred ∪ ref changes no distance: every surface voxel of
either mask lies inside that box and the erosion's zero border matches the background outside it.

Empty masks (medpy raises there) follow ``EMPTY_POLICY``, which is written into every record.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import ndimage

DISTANCE_KEYS = ("asd", "assd", "hd95", "asd_legacy", "hd95_legacy")
LEGACY_KEYS = ("asd_legacy", "hd95_legacy")

EMPTY_POLICY = {
    "both_empty": "dice=1, distances=0",
    "one_empty": "dice=0, distances=worst case: the volume's diagonal (mm; voxels for *_legacy)",
    "surface": "voxel centres, XOR of a one-voxel erosion, zero border (medpy 0.5.2)",
    "assd": "pooled mean of both directed surface-distance sets (medpy 0.5.2 assd)",
    "hd95": "95th percentile of the pooled sets (medpy 0.5.2 hd95)",
    "averaging": "per class per volume, then mean over volumes (case average), then over classes",
}


def _normalize_spacing(spacing: Sequence[float] | None, ndim: int) -> np.ndarray | None:
    if spacing is None:
        return None
    sp = np.asarray(spacing, dtype=np.float64)
    if sp.ndim == 0:
        sp = np.full(ndim, float(sp))
    if sp.shape != (ndim,):
        raise ValueError(f"spacing {tuple(spacing)} does not match a {ndim}-D mask")
    return sp


def _border(mask: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Surface voxels: the mask minus its one-voxel erosion (zero border, as medpy)."""
    if footprint.sum() == 2 * mask.ndim + 1:  # connectivity 1: the 2 * ndim face neighbours, by slicing
        inner = mask.copy()
        for axis in range(mask.ndim):
            lo = [slice(None)] * mask.ndim
            hi = [slice(None)] * mask.ndim
            lo[axis], hi[axis] = slice(1, None), slice(None, -1)
            inner[tuple(lo)] &= mask[tuple(hi)]   # the neighbour before along this axis
            inner[tuple(hi)] &= mask[tuple(lo)]   # and after
            edge = [slice(None)] * mask.ndim
            for end in (0, -1):
                edge[axis] = end
                inner[tuple(edge)] = False        # outside the array counts as background
        return mask & ~inner
    return mask ^ ndimage.binary_erosion(mask, structure=footprint, iterations=1)


def _union_box(pred: np.ndarray, ref: np.ndarray) -> tuple[slice, ...]:
    """The bounding box of both masks plus a one-voxel margin (distances inside it are those of the
    whole volume: every surface voxel and its nearest counterpart lie in it). Found from reductions
    along memory order (whole rows of the first axis; the OR of the planes for the others), not from
    every voxel's coordinates: reducing along a short last axis (slices stored last) directly costs
    ten times more. Each mask is reduced on its own (four reductions): their union would be a third
    volume-sized array, written only to be read back."""
    plane = pred.any(axis=0) | ref.any(axis=0)
    hits = [pred.reshape(pred.shape[0], -1).any(axis=1) | ref.reshape(ref.shape[0], -1).any(axis=1)]
    hits += [plane.any(axis=tuple(a for a in range(plane.ndim) if a != axis)) for axis in range(plane.ndim)]
    box = []
    for hit in hits:
        idx = np.flatnonzero(hit)
        box.append(slice(max(int(idx[0]) - 1, 0), int(idx[-1]) + 2))
    return tuple(box)


def surface_distances(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None = None,
                      connectivity: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances (pred->ref, ref->pred) of two non-empty binary masks."""
    pred = np.atleast_1d(np.asarray(pred, dtype=bool))
    ref = np.atleast_1d(np.asarray(ref, dtype=bool))
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} != reference shape {ref.shape}")
    if not pred.any() or not ref.any():
        raise ValueError("surface distances need two non-empty masks")
    sp = _normalize_spacing(spacing, pred.ndim)
    box = _union_box(pred, ref)
    p, r = pred[box], ref[box]
    footprint = ndimage.generate_binary_structure(pred.ndim, connectivity)
    pb, rb = _border(p, footprint), _border(r, footprint)
    d_pr = ndimage.distance_transform_edt(~rb, sampling=sp)[pb]
    d_rp = ndimage.distance_transform_edt(~pb, sampling=sp)[rb]
    return d_pr, d_rp


# beyond this many (slice, surface voxel) pairs the four 3-D transforms are the cheaper way
_SLICEWISE_LIMIT = 200_000_000
# slices visited outwards one gap at a time; voxels still open after them take every slice at once,
# in blocks of at most _PAIRS (slice, voxel) pairs
_OUTWARD_SLICES = 8
_PAIRS = 4_000_000
# squared pixel distances are int32 below this (a slice under ~32k pixels a side), else int64
_INT32_SQUARES = 2**31


class _Features(NamedTuple):
    """Per target slice, what a lookup needs to form a query voxel's squared in-plane distance to the
    nearest target voxel (from scipy's feature transform of that slice). In pixels (``sampling``
    None), the squared distances themselves, as exact integers: one gather per lookup. With an
    in-plane spacing, the nearest voxel's row and column, squared and scaled only where looked up."""

    rows: np.ndarray                       # the slices (axis 0) that hold target voxels
    sq: np.ndarray | None                  # (len(rows), H * W): squared pixel distance; None with sampling
    fy: np.ndarray | None                  # (len(rows), H * W): row of each pixel's nearest target voxel
    fx: np.ndarray | None                  # and its column
    sampling: tuple[float, float] | None   # in-plane spacing; None: pixels


def _slice_features(target: np.ndarray, sampling: tuple[float, float] | None) -> _Features:
    """The feature transform of every slice that holds ``target`` voxels. Only the nearest voxel's
    indices are taken from scipy: its distances cost as much again as the transform (a float64 array
    per slice, squared, summed and rooted). In pixels they become integer squares in place, three
    passes over the index arrays, cheaper than a second gather and the arithmetic at every lookup."""
    rows = np.flatnonzero(target.any(axis=(1, 2)))
    _, h, w = target.shape
    if sampling is not None:
        ft = np.empty((2, len(rows), h, w), dtype=np.int32)
        for i, z in enumerate(rows):
            ndimage.distance_transform_edt(~target[z], sampling=sampling, return_distances=False,
                                           return_indices=True, indices=ft[:, i])
        flat = ft.reshape(2, len(rows), h * w)
        return _Features(rows, None, flat[0], flat[1], sampling)
    sq_type = np.int32 if (h - 1) ** 2 + (w - 1) ** 2 < _INT32_SQUARES else np.int64  # no square overflows
    sq = np.empty((len(rows), h, w), dtype=sq_type)
    ft = np.empty((2, h, w), dtype=np.int32)      # one slice's transform, reused while it is in cache
    dx = np.empty((h, w), dtype=sq_type)
    ys, xs = np.arange(h, dtype=sq_type)[:, None], np.arange(w, dtype=sq_type)
    for i, z in enumerate(rows):
        ndimage.distance_transform_edt(~target[z], return_distances=False, return_indices=True, indices=ft)
        dy = sq[i]
        np.subtract(ft[0], ys, out=dy)
        np.multiply(dy, dy, out=dy)
        np.subtract(ft[1], xs, out=dx)
        np.multiply(dx, dx, out=dx)
        np.add(dy, dx, out=dy)
    return _Features(rows, sq.reshape(len(rows), h * w), None, None, None)


def _sq_at(f: _Features, rows: np.ndarray | slice, planes: np.ndarray, yq: np.ndarray, xq: np.ndarray) -> np.ndarray:
    """Squared in-plane distances at slice rows ``rows`` and in-plane offsets ``planes`` of query
    voxels at ``(yq, xq)`` (indices broadcast as numpy's). In pixels the squares are exact integers."""
    if f.sq is not None:
        return f.sq[rows, planes].astype(np.float64)
    dy = f.fy[rows, planes] - yq
    dx = f.fx[rows, planes] - xq
    sy, sx = f.sampling
    return (dy * sy) ** 2 + (dx * sx) ** 2


def _across_slices(query: np.ndarray, f: _Features, scales: Sequence[tuple[float, float]]) -> list[np.ndarray]:
    """Exact 3-D distances at the ``query`` voxels from one stack of per-slice feature transforms, in
    each unit system ``(s, dz)`` of ``scales``: the squared Euclidean distance separates, ``min over
    target slices z' of ((z - z') dz)^2 + s * sq[z']`` (``sq``: the squared in-plane distance). The
    slices are visited outwards from each voxel's own, and a voxel stops once the slice gap alone is
    at least its best distance so far in every system, so a surface costs a few slices per voxel
    rather than every slice of the volume; the systems share each slice's lookups (a voxel closed in
    one system cannot improve there). The voxels still open are kept compact (their own copies of
    position and best distances), so each pass reads and writes contiguous arrays."""
    depth, height, width = query.shape
    flat = np.flatnonzero(query)                        # one pass in memory order (np.nonzero makes three)
    zq, at_plane = np.divmod(flat, height * width)      # each voxel's slice and in-plane offset
    yq, xq = np.divmod(at_plane, width)
    slot = np.full(3 * depth, -1, dtype=np.int64)       # target slice -> its row in sq; -1 off the stack too
    slot[depth + f.rows] = np.arange(len(f.rows))
    bests = [np.full(len(zq), np.inf) for _ in scales]  # written back as voxels close
    idx, zo, po, yo, xo = np.arange(len(zq)), zq + depth, at_plane, yq, xq  # the open voxels
    bo = [np.full(len(zq), np.inf) for _ in scales]     # and their best squared distances so far
    for k in range(depth):
        gaps = [float(k * k) * (dz * dz) for _, dz in scales]
        still = bo[0] > gaps[0]
        for b, gap in zip(bo[1:], gaps[1:]):
            still |= b > gap
        if not still.all():
            shut = ~still
            for best, b in zip(bests, bo):
                best[idx[shut]] = b[shut]
            idx, zo, po, yo, xo = idx[still], zo[still], po[still], yo[still], xo[still]
            bo = [b[still] for b in bo]
        if not len(idx):
            return [np.sqrt(best) for best in bests]
        if k == _OUTWARD_SLICES:  # the rest at once, in blocks: far surfaces would cost a pass per slice
            for best, b, (s, dz), gap in zip(bests, bo, scales, gaps):
                best[idx] = b
                _every_slice(best, idx[b > gap], zq, yq, xq, at_plane, f, s, dz)
            return [np.sqrt(best) for best in bests]
        for z in {k, -k}:
            row = slot[zo + z]
            hit = row >= 0
            if hit.all():  # every open voxel has a target slice at this gap: no selection
                vals = _sq_at(f, row, po, yo, xo)
                for b, (s, _), gap in zip(bo, scales, gaps):
                    np.minimum(b, (vals * s if s != 1.0 else vals) + gap, out=b)
            else:
                vals = _sq_at(f, row[hit], po[hit], yo[hit], xo[hit])
                for b, (s, _), gap in zip(bo, scales, gaps):
                    b[hit] = np.minimum(b[hit], (vals * s if s != 1.0 else vals) + gap)
    for best, b in zip(bests, bo):  # every slice visited (a stack no deeper than the outward pass)
        best[idx] = b
    return [np.sqrt(best) for best in bests]


def _every_slice(best: np.ndarray, open_: np.ndarray, zq: np.ndarray, yq: np.ndarray, xq: np.ndarray,
                 at_plane: np.ndarray, f: _Features, s: float, dz: float) -> None:
    """``best`` at the ``open_`` voxels lowered to the minimum over every target slice (in blocks of at
    most ``_PAIRS`` slice-voxel pairs)."""
    step = max(1, _PAIRS // max(len(f.rows), 1))
    for a in range(0, len(open_), step):
        at = open_[a:a + step]
        gap = f.rows[:, None].astype(np.float64) - zq[None, at]
        vals = _sq_at(f, slice(None), at_plane[at], yq[at], xq[at])
        best[at] = np.minimum(best[at], ((vals * s if s != 1.0 else vals) + (gap * gap) * (dz * dz)).min(axis=0))


def _slice_axis(shape: Sequence[int], sp: np.ndarray | None) -> int:
    """The axis to take 2-D slices across: the one of coarsest spacing (a stack of slices, whichever
    axis the file put it on), else the shortest; the slice-wise path costs one 2-D transform per slice
    and grows with the number of slices."""
    if sp is not None and float(sp.max()) > float(sp.min()):
        return int(np.argmax(sp))
    return int(np.argmin(shape))


def _slices_first(masks: Sequence[np.ndarray], sp: np.ndarray | None) -> tuple[list[np.ndarray], np.ndarray | None]:
    """3-D masks with their slice axis (``_slice_axis``) moved first and made contiguous, and the
    spacing in that order: distances do not depend on the axis order, and every later pass (the
    erosion, the per-slice transforms) then runs along memory order whichever axis the file used."""
    axis = _slice_axis(masks[0].shape, sp)
    if axis == 0:
        return list(masks), sp
    order = (axis, *(a for a in range(3) if a != axis))
    return ([np.ascontiguousarray(m.transpose(order)) for m in masks],
            None if sp is None else sp[list(order)])


def _both_unit_systems(pb: np.ndarray, rb: np.ndarray, sp: np.ndarray | None) -> tuple[np.ndarray, ...] | None:
    """Directed distances in mm and in voxels of 3-D surfaces (slice axis first) from one 2-D
    distance transform per slice and direction (shared by both unit systems when the in-plane
    spacing is isotropic), instead of four 3-D transforms: the slices of a short-axis MR or CT volume
    are few and far apart. None where the 3-D transforms are cheaper (many slices and many surface
    voxels)."""
    if pb.ndim != 3 or pb.shape[0] * max(int(np.count_nonzero(pb)), int(np.count_nonzero(rb))) > _SLICEWISE_LIMIT:
        return None
    unit_rb, unit_pb = _slice_features(rb, None), _slice_features(pb, None)
    if sp is None or sp[1] == sp[2]:  # one transform per slice and direction serves both systems
        mm = (1.0, 1.0) if sp is None else (float(sp[1]) ** 2, float(sp[0]))
        d_pr, u_pr = _across_slices(pb, unit_rb, [mm, (1.0, 1.0)])
        d_rp, u_rp = _across_slices(rb, unit_pb, [mm, (1.0, 1.0)])
        return d_pr, d_rp, u_pr, u_rp
    in_plane = (float(sp[1]), float(sp[2]))
    mm = (1.0, float(sp[0]))
    (d_pr,) = _across_slices(pb, _slice_features(rb, in_plane), [mm])
    (d_rp,) = _across_slices(rb, _slice_features(pb, in_plane), [mm])
    (u_pr,) = _across_slices(pb, unit_rb, [(1.0, 1.0)])
    (u_rp,) = _across_slices(rb, unit_pb, [(1.0, 1.0)])
    return d_pr, d_rp, u_pr, u_rp


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    pred, ref = np.asarray(pred, dtype=bool), np.asarray(ref, dtype=bool)
    total = int(np.count_nonzero(pred)) + int(np.count_nonzero(ref))
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(pred & ref)) / float(total)


def diagonal(shape: Sequence[int], spacing: Sequence[float] | None) -> float:
    sp = np.ones(len(shape)) if spacing is None else np.asarray(spacing, dtype=np.float64)
    return float(math.sqrt(float(np.sum((np.asarray(shape) * sp) ** 2))))


def binary_metrics(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None = None,
                   connectivity: int = 1) -> dict[str, float | int | bool]:
    """All metrics of one class in one volume, with the empty-mask policy applied."""
    pred = np.atleast_1d(np.asarray(pred, dtype=bool))  # a 0-d mask is one voxel, as medpy reads it
    ref = np.atleast_1d(np.asarray(ref, dtype=bool))
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} != reference shape {ref.shape}")
    n_pred, n_ref = int(np.count_nonzero(pred)), int(np.count_nonzero(ref))
    out: dict[str, float | int | bool] = {
        "dice": 1.0 if n_pred == n_ref == 0 else 0.0, "n_pred": n_pred, "n_ref": n_ref,
        "empty_pred": n_pred == 0, "empty_ref": n_ref == 0,
    }
    if n_pred == 0 and n_ref == 0:
        out.update({k: 0.0 for k in DISTANCE_KEYS})
        return out
    if n_pred == 0 or n_ref == 0:
        worst = diagonal(pred.shape, spacing)
        out.update({"asd": worst, "assd": worst, "hd95": worst})
        out.update({k: diagonal(pred.shape, None) for k in LEGACY_KEYS})
        return out
    box = _union_box(pred, ref)  # crop once for the overlap and both unit systems
    pred, ref = pred[box], ref[box]
    out["dice"] = 2.0 * int(np.count_nonzero(pred & ref)) / float(n_pred + n_ref)  # as dice(): no overlap outside
    sp = _normalize_spacing(spacing, pred.ndim)
    if pred.ndim == 3:
        (pred, ref), sp = _slices_first((pred, ref), sp)
    footprint = ndimage.generate_binary_structure(pred.ndim, connectivity)
    pb, rb = _border(pred, footprint), _border(ref, footprint)
    both = _both_unit_systems(pb, rb, sp)
    if both is not None:
        d_pr, d_rp, u_pr, u_rp = both
    else:
        d_pr, d_rp = surface_distances(pred, ref, sp, connectivity)
        u_pr, u_rp = (d_pr, d_rp) if sp is None else surface_distances(pred, ref, None, connectivity)
    out["asd"] = float(d_pr.mean())
    out["assd"] = float(np.concatenate([d_pr, d_rp]).mean())
    out["hd95"] = float(np.percentile(np.hstack((d_pr, d_rp)), 95))
    out["asd_legacy"] = float(u_pr.mean())  # the legacy metrics ignore the spacing
    out["hd95_legacy"] = float(np.percentile(np.hstack((u_pr, u_rp)), 95))
    return out


def volume_metrics(pred: np.ndarray, ref: np.ndarray, class_names: Sequence[str],
                   spacing: Sequence[float] | None = None,
                   connectivity: int = 1) -> dict[str, dict[str, float | int | bool]]:
    """Per foreground class (label i = class_names[i], background 0 skipped) of one label volume."""
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} != reference shape {ref.shape}")
    return {name: binary_metrics(pred == c, ref == c, spacing, connectivity)
            for c, name in enumerate(class_names) if c > 0}
