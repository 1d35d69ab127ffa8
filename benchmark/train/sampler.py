"""The trainer's index sampler over slices kept on the device: epochs of random permutations, no host round trips."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from sslbench.base.fields import FieldError, integer, mapping


class CyclicSampler:
    """Draws batches of indices from ``pool`` as successive random permutations (SSL4MIS's
    ``TwoStreamBatchSampler`` cycles its index streams the same way). Deterministic given the
    generator; its position is part of the checkpoint."""

    def __init__(self, pool: Tensor, generator: torch.Generator) -> None:
        if pool.numel() == 0:
            raise ValueError("cannot sample from an empty pool")
        self.pool = pool
        self.generator = generator
        self.order = self._permute()
        self.pos = 0

    def _permute(self) -> Tensor:
        return self.pool[torch.randperm(self.pool.numel(), generator=self.generator, device=self.pool.device)]

    def next(self, n: int) -> Tensor:
        parts = []
        while n > 0:
            if self.pos >= self.order.numel():
                self.order, self.pos = self._permute(), 0
            take = min(n, self.order.numel() - self.pos)
            parts.append(self.order[self.pos:self.pos + take])
            self.pos += take
            n -= take
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def state_dict(self) -> dict[str, Any]:
        return {"order": self.order.cpu(), "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the position; an order that is not a permutation of the pool (a damaged or foreign
        checkpoint) is refused before it can index out of range on the device."""
        state = mapping(state, "sampler")
        order = state.get("order")
        if not (torch.is_tensor(order) and order.dim() == 1 and order.dtype == self.pool.dtype
                and order.numel() == self.pool.numel()
                and torch.equal(order.cpu().sort().values, self.pool.cpu().sort().values)):
            raise FieldError("sampler.order: not a permutation of this run's slices")
        self.pos = integer(state.get("pos"), "sampler.pos", 0, order.numel())
        self.order = order.to(self.pool.device)
