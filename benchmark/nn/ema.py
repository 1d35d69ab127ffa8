"""Exponential-moving-average teacher shared by MT, UAMT, ICT, MONA and the contrastive frameworks."""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMATeacher(nn.Module):
    """A frozen copy of a student whose parameters follow it by EMA.

    SSL4MIS (`update_ema_variables`): ``alpha = min(1 - 1/(step+1), momentum)``, parameters only; the
    teacher's BN buffers are its own running statistics (it is never put in eval mode there).
    """

    def __init__(self, student: nn.Module, momentum: float = 0.99, warmup: bool = True,
                 train_mode: bool = True, buffers: bool = False) -> None:
        super().__init__()
        self.module = copy.deepcopy(student)
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.momentum = momentum
        self.warmup = warmup
        self.train_mode = train_mode
        self.buffers_too = buffers  # BCP's update_model_ema: BN running statistics follow by EMA too

    def train(self, mode: bool = True) -> EMATeacher:
        """With ``train_mode=False`` the teacher stays in eval mode (no dropout, running BN
        statistics) even while the method trains; SSL4MIS keeps it in train mode."""
        return super().train(mode and self.train_mode)

    def alpha(self, step: int) -> float:
        return min(1.0 - 1.0 / (step + 1), self.momentum) if self.warmup else self.momentum

    @torch.no_grad()
    def reset_to(self, student: nn.Module) -> None:
        """Make the teacher an exact copy of ``student``'s current weights and buffers (BN running
        statistics and counters), as at construction but in place: the teacher's parameters stay
        frozen (``requires_grad`` False) and stay the same tensors (optimisers, hooks and references
        to them stay valid). The student must have the teacher's architecture (every key, same
        shapes). For a teacher that starts a stage from a pre-trained student (BCP's ``start_stage``)."""
        self.module.load_state_dict(student.state_dict())
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, student: nn.Module, step: int) -> None:
        """Call after the optimiser step; `step` is the 0-based iteration just taken."""
        alpha = self.alpha(step)
        t_params = list(self.module.parameters())
        s_params = [p.detach() for p in student.parameters()]
        torch._foreach_mul_(t_params, alpha)
        torch._foreach_add_(t_params, s_params, alpha=1.0 - alpha)
        if self.buffers_too:
            pairs = list(zip(self.module.buffers(), student.buffers()))
            t_float = [t for t, _ in pairs if t.is_floating_point()]
            s_float = [s.detach() for t, s in pairs if t.is_floating_point()]
            torch._foreach_mul_(t_float, alpha)
            torch._foreach_add_(t_float, s_float, alpha=1.0 - alpha)
            for t, s in pairs:
                if not t.is_floating_point():
                    t.copy_(s)  # counters (num_batches_tracked)

    def forward(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return self.module(*args, **kwargs)
