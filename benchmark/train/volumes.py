"""3-D batches as UA-MT's LA scripts draw them: whole training volumes kept on the device, one random
crop of ``train.patch_size`` per sample, after one of the four reflections of the in-plane square
that its ``RandomRotFlip`` produces; every draw from the trainer's generator, no host round trip.

UA-MT (``code/dataloaders/la_heart.py``) per sample: ``RandomRotFlip`` (``np.rot90`` by k in 0..3 in
the in-plane axes, then ``np.flip`` along one of them: the composition is always a reflection, each
of the square's four reflections with probability 1/4, never the identity), then ``RandomCrop``: a
volume with any axis no longer than the patch is zero-padded by ``(patch - size) // 2 + 3`` on both
sides of every axis (where positive), and the crop starts at ``randint(0, size - patch)`` on each
axis, numpy's exclusive upper bound (the last position is never drawn). Here the padding is done once
when the volumes are put on the device (it does not depend on the draw), the reflection is applied in
the index arithmetic of the crop (one gather for the whole batch), and the crop is drawn in the
reflected volume's coordinates as the release draws it. Our volumes are (D, H, W): the release's
(W, H, D) transposed, so its in-plane axes are H and W and its 112 x 112 x 80 patch is (80, 112, 112).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from sslbench.base.config import TrainConfig
from sslbench.method import Batch, SSLMethod
from sslbench.train.batches import BatchSource

# the four reflections of the in-plane square, in the order of ``reflect_indices``'s ``kind``
REFLECTIONS = ("flip_h", "flip_w", "transpose", "anti_transpose")


def release_padding(shape: Sequence[int], patch: Sequence[int]) -> list[tuple[int, int]]:
    """UA-MT's ``RandomCrop`` padding: when any axis is no longer than the patch, every axis gets
    ``max((patch - size) // 2 + 3, 0)`` zeros on both sides; otherwise none."""
    if not any(s <= p for s, p in zip(shape, patch)):
        return [(0, 0)] * len(shape)
    return [(max((p - s) // 2 + 3, 0),) * 2 for s, p in zip(shape, patch)]


@dataclass
class VolumeData:
    """Training volumes on the device, padded by the release's rule and then (at the end of each
    axis, outside the volume) to one common shape: images (N, D, H, W) float16, labels (N, D, H, W)
    uint8, each volume's padded shape (N, 3), the indices of the labeled and unlabeled volumes and
    the crop size (D, H, W)."""

    images: Tensor
    labels: Tensor
    shapes: Tensor
    labeled: Tensor
    unlabeled: Tensor
    patch: tuple[int, int, int]
    positions: Tensor | None = None  # no slice positions in 3-D (the 2-D ``TrainData`` field)
    aspect: Tensor | None = None


def volume_data(volumes: Sequence[tuple[np.ndarray, np.ndarray]], labeled: Sequence[int], unlabeled: Sequence[int],
                patch: Sequence[int], device: torch.device) -> VolumeData:
    """``VolumeData`` from (image, label) volumes in (D, H, W); ``labeled`` / ``unlabeled`` index them."""
    patch = tuple(int(p) for p in patch)
    pads = [release_padding(image.shape, patch) for image, _ in volumes]
    shapes = np.array([[s + a + b for s, (a, b) in zip(image.shape, pad)] for (image, _), pad in zip(volumes, pads)],
                      dtype=np.int64).reshape(len(volumes), 3)
    top = shapes.max(axis=0)
    # each volume written at its padding's offset into zeros (no padded copy of every volume at once:
    # 80 LA volumes held ~0.9 GB of copies at the peak)
    images = np.zeros((len(volumes), *top), np.float16)
    labels = np.zeros((len(volumes), *top), np.uint8)
    for i, ((image, label), pad) in enumerate(zip(volumes, pads)):
        at = tuple(slice(a, a + s) for (a, _), s in zip(pad, image.shape))
        images[(i, *at)] = image
        labels[(i, *at)] = label
    as_index = lambda ids: torch.as_tensor(list(ids), dtype=torch.long, device=device)  # noqa: E731
    return VolumeData(torch.from_numpy(images).to(device), torch.from_numpy(labels).to(device),
                      torch.from_numpy(shapes).to(device), as_index(labeled), as_index(unlabeled),
                      patch)  # type: ignore[arg-type]


def _starts(room: Tensor, g: torch.Generator) -> Tensor:
    """``randint(0, room)`` per entry (numpy's exclusive bound), drawn on the device."""
    u = torch.rand(room.shape, generator=g, device=room.device, dtype=torch.float64)
    return torch.minimum((u * room).long(), room - 1)


def reflect_indices(kind: Tensor, shape_hw: Tensor, starts: Tensor, size: int,
                    size_w: int | None = None) -> tuple[Tensor, Tensor]:
    """Source (H, W) indices (B, size, size_w) of a ``size`` x ``size_w`` crop (square by default) at
    ``starts`` (B, 2) of the reflected in-plane square: ``kind`` (B,) indexes ``REFLECTIONS`` (-1: no
    reflection, the only kind a non-square crop may take); ``shape_hw`` (B, 2) the unreflected
    volume's (H, W). Reflected coordinates (a, b) map back to the volume as flip_h (H-1-a, b), flip_w
    (a, W-1-b), transpose (b, a), anti_transpose (H-1-b, W-1-a)."""
    size_w = size if size_w is None else size_w
    a = (starts[:, 0, None] + torch.arange(size, device=starts.device))[:, :, None].expand(-1, size, size_w)
    b = (starts[:, 1, None] + torch.arange(size_w, device=starts.device))[:, None, :].expand(-1, size, size_w)
    h1 = (shape_hw[:, 0] - 1)[:, None, None]
    w1 = (shape_hw[:, 1] - 1)[:, None, None]
    k = kind[:, None, None]
    hi = torch.where(k == 0, h1 - a, torch.where(k == 2, b, torch.where(k == 3, h1 - b, a)))
    wi = torch.where(k == 1, w1 - b, torch.where(k == 2, a, torch.where(k == 3, w1 - a, b)))
    return hi, wi


def crop_batch(data: VolumeData, idx: Tensor, g: torch.Generator, augment: bool) -> tuple[Tensor, Tensor]:
    """Crops (B, 1, D, H, W) float32 and their labels (B, D, H, W) int64 of the volumes ``idx``."""
    pd, ph, pw = data.patch
    shapes = data.shapes[idx]
    n = idx.shape[0]
    if augment:
        kind = torch.randint(0, len(REFLECTIONS), (n,), generator=g, device=idx.device)
    else:
        kind = torch.full((n,), -1, dtype=torch.long, device=idx.device)
    swapped = (kind >= 2)[:, None]  # transposes swap the in-plane sizes of the reflected volume
    hw = shapes[:, 1:]
    reflected = torch.where(swapped, hw.flip(1), hw)
    room = torch.stack([shapes[:, 0] - pd, reflected[:, 0] - ph, reflected[:, 1] - pw], dim=1)  # no host tensor
    starts = _starts(room, g)
    hi, wi = reflect_indices(kind, hw, starts[:, 1:], ph, pw)  # non-square crops only unreflected (config)
    di = starts[:, :1] + torch.arange(pd, device=idx.device)
    pick = (idx[:, None, None, None], di[:, :, None, None], hi[:, None], wi[:, None])
    return data.images[pick].float()[:, None], data.labels[pick].long()


class VolumeBatchSource(BatchSource):
    """``BatchSource`` over volumes: ``labeled_bs`` labeled + the rest unlabeled crops per batch (all
    labeled for a method without unlabeled data), UA-MT's reflection and crop on each (``augment =
    "ssl4mis"`` names the track's release augmentation; ``"none"``: crops only)."""

    def __init__(self, data: VolumeData, cfg: TrainConfig, generator: torch.Generator, method: SSLMethod) -> None:
        super().__init__(data, cfg, generator, method)  # type: ignore[arg-type]
        self.volumes = data

    def next(self, stage: str = "") -> Batch:
        cfg = self.cfg
        unlabeled = self.unl_sampler is not None and stage not in self.labeled_only
        n_lab = cfg.labeled_bs if self.unl_sampler is not None else cfg.batch_size
        augment = cfg.augment != "none"
        x_l, y_l = crop_batch(self.volumes, self.lab_sampler.next(n_lab), self.generator, augment)
        x_u = None
        if unlabeled and self.unl_sampler is not None:
            x_u, _ = crop_batch(self.volumes, self.unl_sampler.next(cfg.batch_size - cfg.labeled_bs), self.generator,
                                augment)
        return Batch(x_l, y_l, x_u)
