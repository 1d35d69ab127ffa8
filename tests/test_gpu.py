"""CUDA-only checks (skipped without a GPU): training steps in bf16 autocast (the quick profile) and
in fp32 (the ssl4mis and paper profiles) are finite and never wait for the host (torch's sync debug
mode turns any device->host synchronisation into an error); evaluation on the GPU gives the CPU's
labels (the scipy-exact resize gathers on the device)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from sslbench.report.evaluation import predict_volume
from sslbench.method import METHODS
from sslbench.io.resize import resize_slices
from sslbench.testing import TINY, build

pytestmark = pytest.mark.gpu


def _stages() -> list[tuple[str, int]]:
    """Every (method, stage index): two-stage methods are checked in both of their stages."""
    return [(name, i) for name in METHODS.names() for i in range(len(METHODS.get(name).stages))]


@pytest.mark.parametrize("amp", [True, False], ids=["bf16", "fp32"])
@pytest.mark.parametrize("name,stage", _stages())
def test_cuda_step_without_host_sync(name: str, stage: int, amp: bool) -> None:
    trainer = build(name, cfg=dataclasses.replace(TINY, amp=amp), device="cuda")
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


def test_evaluation_on_cuda_matches_cpu() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, (3, 216, 181)).astype(np.uint8)
    on_gpu = resize_slices(torch.from_numpy(labels).cuda(), 64).cpu().numpy()
    assert np.array_equal(on_gpu, resize_slices(labels, 64))
    trainer = build("unet-l")                  # CPU weights, copied to the GPU below
    method = trainer.method
    image = rng.random((5, 150, 173)).astype(np.float32)
    cpu = predict_volume(method, image, 32, torch.device("cpu"), amp=False)
    gpu = predict_volume(method.cuda(), image, 32, torch.device("cuda"), amp=False)
    assert cpu.shape == gpu.shape == image.shape
    assert (cpu == gpu).mean() > 0.999        # fp32 on both; cuDNN may differ in the last bits
