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

from sslbench.method import METHODS, build_method
from sslbench.run.specs import resolve
from sslbench.run.speed import synthetic_volumes
from sslbench.testing import build
from sslbench.train.trainer import Trainer


def _stages() -> list[tuple[str, int]]:
    """Every (method, stage index): two-stage methods are checked in both of their stages."""
    return [(name, i) for name in METHODS.names() for i in range(len(METHODS.get(name).stages))]


def stages_3d() -> list[tuple[str, int]]:
    """The same for the methods of the 3-D track (LA, VNet)."""
    return [(name, i) for name, i in _stages() if 3 in METHODS.get(name).dims]


def _step(name: str, stage: int) -> dict[str, torch.Tensor]:
    trainer = build(name)
    trainer.stage_index = stage
    return trainer.train_step()


def build_3d(name: str, stage: int, device: str = "cpu", amp: bool = False) -> Trainer:
    """A tiny VNet trainer on synthetic volumes (the synthetic-la settings, width 4) in ``stage``;
    ``amp``: the run's own bf16 autocast (on CUDA; a no-op on the CPU). The GPU tests use it too."""
    cfg = resolve(name, "quick", "synthetic-la", ["train.base_width=4", "train.batch_size=4", "train.labeled_bs=2",
                                                   f"train.amp={str(amp).lower()}"])
    torch.manual_seed(0)
    method = build_method(METHODS.get(name), cfg.method, cfg.train, 2, torch.device(device))
    trainer = Trainer(method, synthetic_volumes(8, cfg.train.patch_size, torch.device(device)), cfg.train, 0,
                      progress=False, desc=name)
    trainer.stage_index = stage
    trainer.optimizer, trainer.extra = trainer.make_optimizers()
    return trainer


def _step_3d(name: str, stage: int) -> dict[str, torch.Tensor]:
    return build_3d(name, stage).train_step()


@pytest.mark.parametrize("name,stage", _stages())
def test_a_bf16_autocast_step_then_an_fp32_step(name: str, stage: int) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = _step(name, stage)
    assert all(torch.isfinite(torch.as_tensor(v, dtype=torch.float32)).all() for v in out.values()), out
    out = _step(name, stage)                  # fp32 now: nothing built under autocast may leak into it
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in out.values()), out
    assert all(torch.as_tensor(v).dtype != torch.bfloat16 for v in out.values()), out


@pytest.mark.parametrize("name,stage", stages_3d())
def test_a_bf16_autocast_3d_step_then_an_fp32_step(name: str, stage: int) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = _step_3d(name, stage)
    assert all(torch.isfinite(torch.as_tensor(v, dtype=torch.float32)).all() for v in out.values()), out
    out = _step_3d(name, stage)
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in out.values()), out
    assert all(torch.as_tensor(v).dtype != torch.bfloat16 for v in out.values()), out
