"""The 3-D track's steps under bf16 autocast, checked on the CPU without a GPU.

The conformance kit's ``autocast`` check (a step of each stage under the CPU's bf16 autocast, then one
in fp32) runs the 3-D track on its own tiny crops (16 x 32 x 32) in a fresh process
(``tests/test_conformance.py``). This runs it in this process on the trainer a ``synthetic-la`` run
builds (its profile's patch size, a VNet of width 4), the configuration the GPU tests use:
``build_3d`` serves them too.
"""
from __future__ import annotations

import pytest
import torch

from sslbench.method import METHODS, build_method
from sslbench.run.specs import resolve
from sslbench.train.conformance import autocast_steps
from sslbench.train.kit_runs import tiny_volumes
from sslbench.train.trainer import Trainer


def stages_3d() -> list[tuple[str, int]]:
    """Every (method, stage index) of the shipped 3-D track's methods (LA, VNet)."""
    return [(name, i) for name in METHODS.names() if 3 in METHODS.get(name).dims
            and METHODS.get(name).__module__.startswith("sslbench.methods.")
            for i in range(len(METHODS.get(name).stages))]


def build_3d(name: str, stage: int, device: str = "cpu", amp: bool = False) -> Trainer:
    """A tiny VNet trainer on synthetic volumes (the synthetic-la settings, width 4) in ``stage``;
    ``amp``: the run's own bf16 autocast (on CUDA; a no-op on the CPU). The GPU tests use it too."""
    cfg = resolve(name, "quick", "synthetic-la", ["train.base_width=4", "train.batch_size=4", "train.labeled_bs=2",
                                                   f"train.amp={str(amp).lower()}"])
    torch.manual_seed(0)
    method = build_method(METHODS.get(name), cfg.method, cfg.train, 2, torch.device(device))
    trainer = Trainer(method, tiny_volumes(8, cfg.train.patch_size, torch.device(device)), cfg.train, 0,
                      progress=False, desc=name)
    trainer.stage_index = stage
    trainer.optimizer, trainer.extra = trainer.make_optimizers()
    return trainer


def stages_3d_methods() -> list[str]:
    return sorted({name for name, _ in stages_3d()})


@pytest.mark.parametrize("name", stages_3d_methods())
def test_a_bf16_autocast_3d_step_then_an_fp32_step(name: str) -> None:
    """The kit's check 10 (every stage under bf16 autocast, then in fp32) on the tiny VNet trainer."""
    autocast_steps(METHODS.get(name), make=lambda cls, stage: build_3d(name, stage))
