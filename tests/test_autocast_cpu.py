"""Every method's training step under bf16 autocast, checked on the CPU without a GPU.

On CUDA the quick profile trains under bf16 autocast (``train.amp``) and the ssl4mis and paper
profiles in fp32, and one process can run both (``bench speed``, the GPU check, a sweep of several
profiles). CPU runs never autocast (they stay fp32 and deterministic), so these tests wrap a step in
the CPU's own bf16 autocast, which casts the same kinds of operations: a step must run and give
finite losses there, and an fp32 step of the same method afterwards, in the same process, must still
run. The second half is what the H200 GPU check found in MONA: a table cached while autocast was on
served bf16 to every later fp32 step.
"""
from __future__ import annotations

import pytest
import torch

from sslbench.method import METHODS
from sslbench.testing import build


def _stages() -> list[tuple[str, int]]:
    """Every (method, stage index): two-stage methods are checked in both of their stages."""
    return [(name, i) for name in METHODS.names() for i in range(len(METHODS.get(name).stages))]


def _step(name: str, stage: int) -> dict[str, torch.Tensor]:
    trainer = build(name)
    trainer.stage_index = stage
    return trainer.train_step()


@pytest.mark.parametrize("name,stage", _stages())
def test_a_bf16_autocast_step_then_an_fp32_step(name: str, stage: int) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = _step(name, stage)
    assert all(torch.isfinite(torch.as_tensor(v, dtype=torch.float32)).all() for v in out.values()), out
    out = _step(name, stage)                  # fp32 now: nothing built under autocast may leak into it
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in out.values()), out
    assert all(torch.as_tensor(v).dtype != torch.bfloat16 for v in out.values()), out
