"""A FIFO queue of keys (MoCo, kNN-MoCo, ISD, GLCon, MONA's diversity bank): buffers (checkpointed,
moved with the module), written with device tensors only, no host sync when pushing or reading."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FeatureQueue(nn.Module):
    """A FIFO of L2-normalised keys of shape ``shape`` (normalised over the last axis) that knows how
    many of its slots hold keys: ``valid()`` is False for slots never written.

    MoCo, ISD and MONA's released code start their queues from random unit vectors and use every slot
    from the first step. At the paper's 3 unlabeled keys per step a 65536-slot queue needs ~22k
    iterations to hold only keys and a 128000-slot one never does, so a framework would contrast
    mostly against noise. Every loss here masks the slots ``valid()`` rules out (no logit, never a
    neighbour): an empty queue contributes nothing, a full one gives the unmasked values. The
    initial content (random unit vectors or zeros) is therefore never read.
    """

    def __init__(self, size: int, *shape: int, init: str = "randn") -> None:
        super().__init__()
        bank = torch.randn(size, *shape) if init == "randn" else torch.zeros(size, *shape)
        self.register_buffer("bank", F.normalize(bank, dim=-1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.bank.shape[0]

    def valid(self) -> Tensor:
        """(K,) bool: the slots that hold a key (the first ``count``: pushes start at slot 0)."""
        return torch.arange(self.size, device=self.bank.device) < self.count

    @torch.no_grad()
    def push(self, keys: Tensor) -> None:
        n = min(keys.shape[0], self.size)
        keys = keys[-n:]
        idx = (self.ptr + torch.arange(n, device=keys.device)) % self.size
        self.bank[idx] = F.normalize(keys.detach().float(), dim=-1).to(self.bank.dtype)
        self.ptr.copy_((self.ptr + n) % self.size)
        self.count.copy_(torch.clamp(self.count + n, max=self.size))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        """Checkpoints from before the fill count: their queues were used whole, so count them full."""
        if prefix + "bank" in state_dict and prefix + "count" not in state_dict:
            state_dict[prefix + "count"] = torch.tensor(state_dict[prefix + "bank"].shape[0])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
