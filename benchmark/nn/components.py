"""Connected components of label maps on the device: BCP's and ABD's pseudo-label cleaning keeps,
per slice and class, only the largest 8-connected component (``skimage.measure.label`` +
``bincount`` in their code, on the host).

Components are found by label propagation: every pixel of a class starts with its own flat index,
then each round takes the minimum over its 3 x 3 neighbours of the same class and jumps to the
label its label points at (pointer jumping), so a component converges to the index of its first
pixel in raster order, skimage's numbering order. On a CPU the rounds stop when nothing changes; on a
GPU a fixed number run (reading "did it change" would make the step wait for the device), enough for
any blob-like shape; a component that has not converged by then would be counted as pieces.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def component_labels(mask: Tensor, max_rounds: int = 64) -> Tensor:
    """(N, H, W) bool -> (N, H, W) int64: each foreground pixel labelled with the smallest flat index
    of its 8-connected component; background ``H * W``. ``max_rounds`` bounds the rounds on a GPU
    (a blob converges in a handful; a 256-pixel snake folded 64 times needs a few hundred)."""
    n, h, w = mask.shape
    big = h * w
    index = torch.arange(big, device=mask.device, dtype=torch.float32).view(1, h, w).expand(n, h, w)
    lab = torch.where(mask, index, torch.full_like(index, float(big)))
    on_cpu = mask.device.type == "cpu"
    for _ in range(big if on_cpu else max_rounds):  # on a CPU: until nothing changes
        prev = lab
        nbr = -F.max_pool2d(-lab[:, None], 3, stride=1, padding=1)[:, 0]   # min over the 3 x 3 window
        lab = torch.where(mask, torch.minimum(lab, nbr), lab)
        flat = lab.flatten(1)
        jumped = flat.gather(1, flat.long().clamp(max=big - 1)).view(n, h, w)  # the label of my label
        lab = torch.where(mask, torch.minimum(lab, jumped), lab)
        if on_cpu and torch.equal(lab, prev):
            break
    return lab.long()


def largest_component(mask: Tensor, max_rounds: int = 64) -> Tensor:
    """(N, H, W) bool -> the largest 8-connected component of each map (ties: the one whose first
    pixel comes first in raster order, as ``np.argmax(np.bincount(...))`` picks); empty maps stay empty."""
    n, h, w = mask.shape
    big = h * w
    lab = component_labels(mask, max_rounds)
    counts = torch.zeros(n, big + 1, device=mask.device, dtype=torch.float32)
    counts.scatter_add_(1, lab.flatten(1), torch.ones(n, big, device=mask.device))
    counts[:, big] = -1.0                                              # the background is never picked
    # the largest count; among equal counts the smallest label (argmax returns the first maximum)
    best = counts.argmax(dim=1)
    return mask & (lab == best.view(n, 1, 1))


def keep_largest_per_class(labels: Tensor, num_classes: int, max_rounds: int = 64) -> Tensor:
    """BCP's ``get_ACDC_2DLargestCC``: per slice and foreground class, the pixels outside that class's
    largest component become background (0)."""
    masks = torch.stack([labels == c for c in range(1, num_classes)], dim=1)  # (B, C-1, H, W)
    b, k, h, w = masks.shape
    kept = largest_component(masks.view(b * k, h, w), max_rounds).view(b, k, h, w)
    classes = torch.arange(1, num_classes, device=labels.device).view(1, k, 1, 1)
    return (kept.long() * classes).sum(dim=1)
