"""CUDA-only checks (skipped without a GPU): bf16 AMP steps are finite and the training step never
waits for the host (torch's sync debug mode turns any device->host synchronisation into an error)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from sslbench.method import METHODS
from sslbench.testing import TINY, build

pytestmark = pytest.mark.gpu


def _stages() -> list[tuple[str, int]]:
    """Every (method, stage index): two-stage methods are checked in both of their stages."""
    return [(name, i) for name in METHODS.names() for i in range(len(METHODS.get(name).stages))]


@pytest.mark.parametrize("name,stage", _stages())
def test_cuda_amp_step_without_host_sync(name: str, stage: int) -> None:
    trainer = build(name, cfg=dataclasses.replace(TINY, amp=True), device="cuda")
    trainer.stage_index = stage
    trainer.train_step()                       # warm-up: allocations, cuDNN autotuning
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            out = trainer.train_step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in out.values())
    assert next(trainer.method.parameters()).device.type == "cuda"
