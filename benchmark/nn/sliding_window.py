"""Sliding-window inference over a whole 3-D volume, as UA-MT's ``test_single_case`` (``code/test_util.py``
lines 38-94) evaluates the Left Atrium benchmark (BCP's ``utils/test_3d_patch.py`` has the same window
arithmetic).

Axis order: the volume is indexed (X, Y, Z), the order the LA h5 files store ``image`` (the release
unpacks it as ``w, h, d``, lines 39 and 63). ``patch`` is given over those same axes, (112, 112, 80)
by default; ``stride_xy`` steps along X and Y, ``stride_z`` along Z. Each window is handed to the
network unchanged as (B, 1, X, Y, Z), so the network's (D, H, W) are (X, Y, Z); no axis is swapped.

Reproduced from the release on purpose:

1. Padding only along an axis shorter than the patch, up to exactly the patch size, with zeros
   (``np.pad`` constant 0, lines 43-62): ``pad // 2`` before and the rest after, so an odd amount puts
   the extra voxel at the end. An axis at least as long as the patch is never padded.
2. Windows per axis ``ceil((size - patch) / stride) + 1`` on the padded size (lines 65-67); the i-th
   window starts at ``min(stride * i, size - patch)`` (lines 73, 75, 77): regular steps, the last
   one pulled back to end flush with the volume (so it may overlap its neighbour more).
3. Every window's logits go through a softmax over the classes; the probabilities are summed into a
   float32 score map, a float32 count map counts the windows covering each voxel, and the score map
   is divided by it (lines 69-89). Windows are visited X outermost, Z innermost, as the release's
   loops, and summed in that order (float32 sums depend on it).
4. The label map is the argmax over classes (first class on ties, ``np.argmax``), then label and score
   maps are cropped back to the unpadded volume (lines 90-93).

Differences that do not change the values: the network runs under ``torch.no_grad`` (UA-MT's copy
tracks gradients, BCP's does not); several windows may share one forward pass (``batch_size``): the
network sees the same windows and the sums run in the same order, so for a network that treats batch
items independently (eval mode; train-mode batch norm does not) the result equals one window at a
time, up to the last bits a conv backend may round differently for a batch; the score map is
accumulated on ``device`` rather than on the host. The label map is returned as uint8 (the release's is int64).
The caller sets the network's mode, as the release (``test_LA.py`` calls ``net.eval()`` first).

BCP's copy differs in what it keeps, not in the windows: it adds only the foreground probability
(``y[0, 1]``) into every channel and labels ``score[0] > 0.5``; for two classes that is this argmax
except at exact ties. Its VNet returns ``(logits, features)``: pass ``lambda x: model(x)[0]``.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

LA_PATCH = (112, 112, 80)
LA_STRIDE_XY = 18
LA_STRIDE_Z = 4


def pad_widths(shape: Sequence[int], patch: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """Zero padding (before, after) per axis: up to the patch size where the axis is shorter, the
    smaller half before (``pad // 2``), the larger after; nothing where it is long enough."""
    widths = []
    for size, p in zip(shape, patch):
        total = max(p - size, 0)
        widths.append((total // 2, total - total // 2))
    return tuple(widths)


def window_starts(size: int, patch: int, stride: int) -> list[int]:
    """Start indices of the windows along one (already padded, ``size >= patch``) axis:
    ``ceil((size - patch) / stride) + 1`` of them, the i-th at ``min(stride * i, size - patch)``."""
    if size < patch:
        raise ValueError(f"axis of {size} shorter than the patch {patch}: pad it first")
    steps = math.ceil((size - patch) / stride) + 1
    return [min(stride * i, size - patch) for i in range(steps)]


def _as_volume(volume: np.ndarray | Tensor) -> np.ndarray:
    if isinstance(volume, Tensor):
        volume = volume.detach().cpu().numpy()
    array = np.asarray(volume, dtype=np.float32)
    if array.ndim != 3:
        raise ValueError(f"expected a 3-D volume (X, Y, Z), got shape {array.shape}")
    return array


def _default_device(net: Callable[[Tensor], Tensor]) -> torch.device:
    if isinstance(net, nn.Module):
        param = next(net.parameters(), None)
        if param is not None:
            return param.device
    return torch.device("cpu")


def sliding_window_predict(
    net: Callable[[Tensor], Tensor],
    volume: np.ndarray | Tensor,
    num_classes: int,
    patch: Sequence[int] = LA_PATCH,
    stride_xy: int = LA_STRIDE_XY,
    stride_z: int = LA_STRIDE_Z,
    device: str | torch.device | None = None,
    batch_size: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Predict a whole volume (X, Y, Z) window by window; ``net`` maps (B, 1, *patch) to logits
    (B, num_classes, *patch). Returns the label map (X, Y, Z) as uint8 and the averaged softmax
    probabilities (num_classes, X, Y, Z) as float32, both over the unpadded volume. ``device``
    defaults to that of the network's parameters (CPU for a plain callable)."""
    patch = tuple(int(p) for p in patch)
    if len(patch) != 3 or min(patch) < 1:
        raise ValueError(f"patch must be three positive sizes, got {patch}")
    strides = (int(stride_xy), int(stride_xy), int(stride_z))
    if min(strides) < 1:
        raise ValueError(f"strides must be positive, got stride_xy={stride_xy}, stride_z={stride_z}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if not 1 <= num_classes <= 256:
        raise ValueError(f"num_classes must be in 1..256 (uint8 labels), got {num_classes}")

    image = _as_volume(volume)
    original = image.shape
    pads = pad_widths(original, patch)
    if any(before or after for before, after in pads):
        image = np.pad(image, pads, mode="constant", constant_values=0)
    padded = image.shape
    corners = list(itertools.product(*(window_starts(padded[a], patch[a], strides[a]) for a in range(3))))

    dev = torch.device(device) if device is not None else _default_device(net)
    source = torch.from_numpy(image).to(dev)
    score = torch.zeros((num_classes, *padded), dtype=torch.float32, device=dev)
    count = np.zeros(padded, dtype=np.float32)
    px, py, pz = patch
    with torch.no_grad():
        for first in range(0, len(corners), batch_size):
            chunk = corners[first:first + batch_size]
            windows = torch.stack([source[x:x + px, y:y + py, z:z + pz] for x, y, z in chunk]).unsqueeze(1)
            logits = net(windows)
            expected = (len(chunk), num_classes, *patch)
            if tuple(logits.shape) != expected:
                raise ValueError(f"net returned logits of shape {tuple(logits.shape)}, expected {expected}")
            probs = torch.softmax(logits.float(), dim=1).to(dev)
            for (x, y, z), prob in zip(chunk, probs):
                score[:, x:x + px, y:y + py, z:z + pz] += prob
                count[x:x + px, y:y + py, z:z + pz] += 1

    score_map = score.cpu().numpy() / count[None]
    label_map = np.argmax(score_map, axis=0).astype(np.uint8)
    crop = tuple(slice(before, before + size) for (before, _), size in zip(pads, original))
    return label_map[crop], np.ascontiguousarray(score_map[(slice(None), *crop)])


__all__ = ["LA_PATCH", "LA_STRIDE_XY", "LA_STRIDE_Z", "pad_widths", "sliding_window_predict", "window_starts"]
