"""Connected components of label maps on the device: BCP's and ABD's pseudo-label cleaning keeps,
per slice and class, only the largest 8-connected component (``skimage.measure.label`` +
``bincount`` in their code, on the host).

Every foreground pixel starts with its own flat index as its label, and a label is read as a pointer
to a pixel of the same component. Each round (a parallel union-find):

1. every pixel takes the smallest label in its 3 x 3 window of the same mask (propagation);
2. the pixel its old label pointed to is re-pointed to that smallest label too (hooking: a whole
   tree moves at once, not one pixel layer per round);
3. every label jumps twice to the label of the pixel it points to (path compression).

Labels only decrease, so a round that changes nothing is a fixed point, where every component
carries one label: the smallest flat index in it (skimage's raster order). The loop runs until that
fixed point on every device, so the result is exact for any shape (spirals, C and U shapes need tens
to hundreds of rounds of plain propagation; a few with hooking). On a GPU the "did anything change"
read is the only host sync of the cleaning and happens once every ``check_every`` rounds (8); on a
CPU it is free and happens every round.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

GPU_CHECK_EVERY = 8


def _round(lab: Tensor, mask: Tensor, big: int) -> Tensor:
    """One propagation + hooking + two pointer jumps over labels (N, H*W + 1); the last slot is the
    background's sentinel ``big``, which points to itself. A (N, D, H, W) mask propagates over the
    3 x 3 x 3 window (26-connectivity: skimage's default for a volume, BCP's LA ``LargestCC``)."""
    n, size = lab.shape[0], big
    spatial = mask.shape[1:]
    pool = F.max_pool3d if len(spatial) == 3 else F.max_pool2d
    pixels = lab[:, :size]
    # float32 holds every index exactly up to 2^24 voxels, a 256^3 volume
    smallest = -pool(-pixels.view(n, 1, *spatial).float(), 3, stride=1, padding=1).view(n, size).long()
    smallest = torch.where(mask.view(n, size), torch.minimum(pixels, smallest), pixels)
    hooked = lab.scatter_reduce(1, pixels, smallest, reduce="amin")     # the pixel I pointed to follows me
    hooked[:, :size] = torch.minimum(hooked[:, :size], smallest)
    hooked = hooked.gather(1, hooked)
    return hooked.gather(1, hooked)


def converged(lab: Tensor, before: Tensor) -> bool:
    """Whether ``check_every`` rounds changed nothing: the cleaning's one host read (a sync on a GPU)."""
    return torch.equal(lab, before)


def component_labels(mask: Tensor, check_every: int | None = None) -> Tensor:
    """(N, H, W) bool -> (N, H, W) int64: each foreground pixel labelled with the smallest flat index
    of its 8-connected component; background ``H * W``. ``check_every``: rounds between convergence
    checks (default: every round on a CPU, ``GPU_CHECK_EVERY`` elsewhere; tests force the GPU's
    value on a CPU); the loop always runs to convergence."""
    n, spatial = mask.shape[0], mask.shape[1:]
    big = math.prod(spatial)
    if big > 2 ** 24:
        raise ValueError(f"component_labels: {big} pixels per map is more than float32 indexes exactly (2^24)")
    if check_every is None:
        check_every = 1 if mask.device.type == "cpu" else GPU_CHECK_EVERY
    index = torch.arange(big, device=mask.device).expand(n, big)
    lab = torch.where(mask.reshape(n, big), index, torch.full_like(index, big))
    lab = torch.cat([lab, torch.full((n, 1), big, device=mask.device, dtype=lab.dtype)], dim=1)
    while True:  # each round that is not a fixed point lowers a label: at most H * W of them
        before = lab
        for _ in range(check_every):
            lab = _round(lab, mask, big)
        if converged(lab, before):  # labels never rise: unchanged over k rounds means a fixed point
            break
    return lab[:, :big].view(n, *spatial)


def largest_component(mask: Tensor, check_every: int | None = None) -> Tensor:
    """(N, H, W) bool -> the largest 8-connected component of each map ((N, D, H, W): 26-connected)
    (ties: the one whose first pixel comes first in raster order, as ``np.argmax(np.bincount(...))``
    picks); empty maps stay empty."""
    n = mask.shape[0]
    big = math.prod(mask.shape[1:])
    lab = component_labels(mask, check_every)
    counts = torch.zeros(n, big + 1, device=mask.device, dtype=torch.float32)
    counts.scatter_add_(1, lab.flatten(1), torch.ones(n, big, device=mask.device))
    counts[:, big] = -1.0                                              # the background is never picked
    # the largest count; among equal counts the smallest label (argmax returns the first maximum)
    best = counts.argmax(dim=1)
    return mask & (lab == best.view(n, *[1] * (mask.dim() - 1)))


def keep_largest_per_class(labels: Tensor, num_classes: int, check_every: int | None = None) -> Tensor:
    """BCP's ``get_ACDC_2DLargestCC``: per slice and foreground class, the pixels outside that class's
    largest component become background (0). For (B, D, H, W) label volumes the same per volume and
    class over 26-connected components (BCP's LA ``LargestCC_pancreas`` on its binary labels)."""
    masks = torch.stack([labels == c for c in range(1, num_classes)], dim=1)  # (B, C-1, *S)
    b, k, spatial = masks.shape[0], masks.shape[1], masks.shape[2:]
    kept = largest_component(masks.reshape(b * k, *spatial), check_every).view(b, k, *spatial)
    classes = torch.arange(1, num_classes, device=labels.device).view(1, k, *[1] * len(spatial))
    return (kept.long() * classes).sum(dim=1)
