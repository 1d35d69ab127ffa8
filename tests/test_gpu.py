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
from sslbench.train.trainer import Trainer

from .test_autocast_cpu import build_3d, stages_3d

pytestmark = pytest.mark.gpu


def _stages() -> list[tuple[str, int]]:
    """Every (method, stage index): two-stage methods are checked in both of their stages."""
    return [(name, i) for name in METHODS.names() for i in range(len(METHODS.get(name).stages))]


def _steps_without_host_sync(trainer: Trainer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A warm-up step, then three steps in torch's sync debug mode "error": finite losses, the method on
    the GPU, and no read back but the connected components' convergence check (BCP, ABD: their one
    documented sync), counted: a few a step (8 rounds each), if any."""
    import sslbench.nn.components as components

    reads = []

    def documented_read(lab: torch.Tensor, before: torch.Tensor) -> bool:
        torch.cuda.set_sync_debug_mode("default")
        try:
            reads.append(1)
            return torch.equal(lab, before)
        finally:
            torch.cuda.set_sync_debug_mode("error")

    monkeypatch.setattr(components, "converged", documented_read)
    trainer.train_step()                       # warm-up: allocations, cuDNN autotuning
    torch.cuda.synchronize()
    reads.clear()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            out = trainer.train_step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in out.values())
    assert next(trainer.method.parameters()).device.type == "cuda"
    assert len(reads) <= 3 * 4


@pytest.mark.parametrize("amp", [True, False], ids=["bf16", "fp32"])
@pytest.mark.parametrize("name,stage", _stages())
def test_cuda_step_without_host_sync(name: str, stage: int, amp: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = build(name, cfg=dataclasses.replace(TINY, amp=amp), device="cuda")
    trainer.stage_index = stage
    _steps_without_host_sync(trainer, monkeypatch)


@pytest.mark.parametrize("amp", [True, False], ids=["bf16", "fp32"])
@pytest.mark.parametrize("name,stage", stages_3d())
def test_cuda_3d_step_without_host_sync(name: str, stage: int, amp: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The 3-D track's steps (VNet on volume crops; BCP's 26-connected cleaning) the same way."""
    _steps_without_host_sync(build_3d(name, stage, device="cuda", amp=amp), monkeypatch)


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


def test_connected_components_on_cuda_equal_scipy() -> None:
    """The device path itself (a convergence read every 8 rounds) on spirals, C, ring and U shapes."""
    from sslbench.nn.components import component_labels

    from .test_components import hard_shapes, smallest_index_labels

    masks = hard_shapes()
    got = component_labels(torch.from_numpy(masks).cuda()).cpu().numpy()
    for i, m in enumerate(masks):
        assert np.array_equal(got[i], smallest_index_labels(m)), i


def test_boxes_on_cuda_have_the_cpu_distribution() -> None:
    """Both box draws run on the device: sizes within the image, each present with probability p."""
    from sslbench.nn.boxes import random_boxes

    for redraw in (False, True):
        g = torch.Generator(device="cuda").manual_seed(0)
        masks = random_boxes(4000, 64, 64, g, torch.device("cuda"), 0.5, redraw_area=redraw)
        present = masks.flatten(1).any(1).float().mean().item()
        assert abs(present - 0.5) < 0.03
