"""Where the trainer's batches come from: training slices kept on the device, two samplers (labeled,
unlabeled) and SSL4MIS's weak augmentation, every draw from the trainer's generator (no host round trip)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from sslbench.base.config import TrainConfig
from sslbench.base.errors import BenchError
from sslbench.method import Batch, SSLMethod
from sslbench.nn.augment import ssl4mis_weak
from sslbench.train.sampler import CyclicSampler


@dataclass
class TrainData:
    """Training slices on the device: images (N, C, S, S) float, labels (N, S, S) uint8, the indices
    of the labeled and unlabeled slices, each slice's relative position in its volume (N,) in
    [0, 1) (GCL's partition positives; None when unknown) and its native height / width (N,) before
    the resize to S x S (the weak rotation's aspect; None: square)."""

    images: Tensor
    labels: Tensor
    labeled: Tensor
    unlabeled: Tensor
    positions: Tensor | None = None
    aspect: Tensor | None = None


class BatchSource:
    """``labeled_bs`` labeled + ``batch_size - labeled_bs`` unlabeled slices per batch (every slice
    labeled for a method that uses no unlabeled data), augmented alike. In a stage the method lists
    in ``labeled_only_stages`` (a supervised pre-training) a batch is its ``labeled_bs`` labeled
    slices alone: no unlabeled slice is drawn or augmented."""

    def __init__(self, data: TrainData, cfg: TrainConfig, generator: torch.Generator, method: SSLMethod) -> None:
        if method.uses_unlabeled and data.unlabeled.numel() == 0:
            raise BenchError(f"method '{method.name}' needs unlabeled data but the split has none")
        self.data, self.cfg, self.generator = data, cfg, generator
        self.labeled_only = tuple(method.labeled_only_stages)
        self.lab_sampler = CyclicSampler(data.labeled, generator)
        self.unl_sampler = CyclicSampler(data.unlabeled, generator) if method.uses_unlabeled else None

    def next(self, stage: str = "") -> Batch:
        cfg, d = self.cfg, self.data
        unlabeled = self.unl_sampler is not None and stage not in self.labeled_only
        n_lab = cfg.labeled_bs if self.unl_sampler is not None else cfg.batch_size
        idx_l = self.lab_sampler.next(n_lab)
        x_l, y_l = d.images[idx_l], d.labels[idx_l].long()
        x_u, idx_u = None, None
        if unlabeled and self.unl_sampler is not None:
            idx_u = self.unl_sampler.next(cfg.batch_size - cfg.labeled_bs)
            x_u = d.images[idx_u]
        if cfg.augment == "ssl4mis":
            aspect = d.aspect
            x_l, y_l = ssl4mis_weak(x_l, y_l, self.generator, None if aspect is None else aspect[idx_l])
            if x_u is not None:
                x_u, _ = ssl4mis_weak(x_u, None, self.generator, None if aspect is None else aspect[idx_u])
        pos = None
        if d.positions is not None:
            pos = d.positions[idx_l] if idx_u is None else torch.cat([d.positions[idx_l], d.positions[idx_u]])
        return Batch(x_l, y_l, x_u, pos)  # type: ignore[arg-type]

    def state_dict(self) -> dict[str, Any]:
        return {"lab_sampler": self.lab_sampler.state_dict(),
                "unl_sampler": self.unl_sampler.state_dict() if self.unl_sampler else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lab_sampler.load_state_dict(state["lab_sampler"])
        if self.unl_sampler is not None and state["unl_sampler"] is not None:
            self.unl_sampler.load_state_dict(state["unl_sampler"])
