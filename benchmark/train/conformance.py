"""Conformance kit: the checks every registered method must pass (plugins can run them too).

    from sslbench.testing import check_method
    check_method("my-method")      # prints each check it passed; AssertionError naming the one that failed

A term that is zero by design on an untrained network (a confidence threshold nothing reaches yet, a
ramp-up) would fail check 2: the plugin says so with ``conformance_config``, a dict of its config
overrides under which every term is active (UniMatch: ``{"conf_thresh": 0.0}``).

Runs on the CPU with a tiny UNet (base width 4, 32 x 32 slices, 3 classes, batch 4) in seconds:

1. ``training_step`` returns finite scalars with at least one ``*loss*`` key;
2. every ``*loss*`` term, with ramps forced to their final value and after one step of its stage
   (teachers diverged, memory banks holding keys: an empty bank contributes nothing), sends a
   non-zero gradient to the trained parameters (catches USB's mean-teacher bug: a consistency term
   between two teacher outputs);
3. ``predict`` returns (B, K, H, W) and leaves train/eval flags and BN statistics untouched;
4. a checkpoint round trip (trainer state -> fresh trainer) reproduces the next step's losses exactly;
5. two runs with one seed give identical losses;
6. a method with a ``pretrain`` stage trains it without labels.
"""
from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path

import torch
from scipy import ndimage

from sslbench.base.config import TrainConfig
from sslbench.base.run_files import RunFiles
from sslbench.method import METHODS, MethodContext, SSLMethod
from sslbench.train.trainer import TrainData, Trainer

TINY = TrainConfig(iterations=8, pretrain_iterations=4, batch_size=4, labeled_bs=2, image_size=32,
                   base_width=4, val_every=4, log_every=4, amp=False)
NUM_CLASSES = 3


def tiny_data(seed: int = 0, n: int = 12, size: int = 32) -> TrainData:
    """Smooth random images whose labels (3 classes) follow their intensity, half of them labeled."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(n, size, size, generator=g).numpy()
    smooth = torch.from_numpy(ndimage.gaussian_filter(noise, sigma=(0, 3, 3))).float()
    lo, hi = smooth.quantile(0.5), smooth.quantile(0.8)
    labels = (smooth > lo).to(torch.uint8) + (smooth > hi).to(torch.uint8)
    images = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    idx = torch.arange(n)
    positions = (idx % 4 + 0.5) / 4  # volumes of four slices
    return TrainData(images[:, None], labels, idx[: n // 2], idx[n // 2:], positions)


MethodRef = str | type[SSLMethod]


def build(name: MethodRef, seed: int = 0, cfg: TrainConfig = TINY, device: str = "cpu",
          folder: Path | None = None) -> Trainer:
    """A tiny trainer for a registered method name or a method class; ``folder``: its run folder
    (none: checkpoints in memory)."""
    cls = METHODS.get(name) if isinstance(name, str) else name
    torch.manual_seed(seed)
    ctx = MethodContext(in_channels=1, num_classes=NUM_CLASSES, image_size=cfg.image_size,
                        device=torch.device(device), base_width=cfg.base_width)
    method = cls(dataclasses.replace(cls.Config(), **cls.conformance_config), ctx)
    data = tiny_data()
    data = TrainData(*(t.to(device) for t in (data.images, data.labels, data.labeled, data.unlabeled, data.positions)))
    files = None
    if folder is not None:
        files = RunFiles(folder)
        files.create()
    return Trainer(method, data, cfg, seed, progress=False, desc=cls.name or cls.__name__, files=files)


def _values(losses: dict[str, torch.Tensor | float]) -> dict[str, float]:
    return {k: float(v) for k, v in losses.items()}


def check_losses(name: MethodRef) -> None:
    trainer = build(name)
    for _ in range(2):
        out = trainer.train_step()
        assert any("loss" in k for k in out if k != "loss"), f"{name}: no '*loss*' term returned"
        for k, v in out.items():
            v = torch.as_tensor(v)
            assert v.numel() == 1, f"{name}: '{k}' is not a scalar"
            assert torch.isfinite(v).all(), f"{name}: '{k}' is not finite ({float(v)})"


def check_gradients(name: MethodRef) -> None:
    trainer = build(name)
    trainer.force_ramps = True
    method = trainer.method
    for stage_index, stage in enumerate(trainer.stages):
        trainer.stage_index = stage_index
        trainer.train_step()  # EMA teachers diverge from the student, this stage's banks get keys
        method.train()
        out = method.training_step(trainer.next_batch(), trainer.step_info())
        params = [p for p in method.optim_parameters()]
        terms = {k: v for k, v in out.items() if "loss" in k}
        assert terms, f"{name} [{stage}]: no '*loss*' term returned"
        _assert_gradients(name, stage, terms, params)
        batch = trainer.next_batch()
        for opt_name, spec in method.extra_optimizers().items():
            out = method.extra_step(opt_name, batch, trainer.step_info())
            terms = {f"{opt_name}/{k}": v for k, v in out.items() if "loss" in k}
            assert terms, f"{name} [{stage}]: optimiser '{opt_name}' got no '*loss*' term"
            _assert_gradients(name, stage, terms, list(spec.params))


def _assert_gradients(name: MethodRef, stage: str, terms: dict, params: list) -> None:  # type: ignore[type-arg]
    for key, term in terms.items():
        assert torch.is_tensor(term) and term.requires_grad, f"{name} [{stage}]: '{key}' carries no gradient"
        grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
        total = sum(float(g.abs().sum()) for g in grads if g is not None)
        assert total > 0, f"{name} [{stage}]: '{key}' sends zero gradient to the trained networks"


def check_predict(name: MethodRef) -> None:
    trainer = build(name)
    trainer.train_step()
    method: SSLMethod = trainer.method
    method.train()
    flags = [m.training for m in method.modules()]
    buffers = copy.deepcopy({k: v for k, v in method.state_dict().items()})
    x = trainer.data.images[:3]
    out = method.predict(x)
    assert out.shape == (3, NUM_CLASSES, TINY.image_size, TINY.image_size), f"{name}: predict shape {tuple(out.shape)}"
    assert [m.training for m in method.modules()] == flags, f"{name}: predict changed train/eval flags"
    for k, v in method.state_dict().items():
        assert torch.equal(v, buffers[k]), f"{name}: predict changed state '{k}'"


def check_resume(name: MethodRef) -> None:
    a = build(name, seed=0)
    for _ in range(3):
        a.train_step()
    state = copy.deepcopy(a.state_dict())
    expected = _values(a.train_step())
    b = build(name, seed=123)
    b.load_state_dict(state)
    got = _values(b.train_step())
    assert got == expected, f"{name}: resumed step differs: {got} != {expected}"


def check_determinism(name: MethodRef) -> None:
    runs = []
    for _ in range(2):
        t = build(name, seed=7)
        runs.append([_values(t.train_step()) for _ in range(3)])
    assert runs[0] == runs[1], f"{name}: two runs with one seed differ"


def check_pretrain(name: MethodRef) -> None:
    trainer = build(name)
    if "pretrain" not in trainer.stages:
        return
    assert trainer.stage == "pretrain"
    out = trainer.train_step()
    assert torch.isfinite(torch.as_tensor(out["loss"])), f"{name}: pretrain step is not finite"


CHECKS: dict[str, Callable[[MethodRef], None]] = {
    "losses": check_losses, "gradients": check_gradients, "predict": check_predict,
    "resume": check_resume, "determinism": check_determinism, "pretrain": check_pretrain,
}
WHAT = {
    "losses": "two steps return finite scalar terms, at least one '*loss*'",
    "gradients": "every '*loss*' term of every stage sends gradient to the trained networks (ramps at full "
                 "strength; settings from conformance_config)",
    "predict": "predict gives (B, K, H, W) logits and changes no train/eval flag or state",
    "resume": "a checkpoint round trip reproduces the next step exactly",
    "determinism": "two runs with one seed give the same losses (CPU)",
    "pretrain": "the pretrain stage, if any, takes a finite step",
}


def check_method(name: MethodRef, report: Callable[[str], None] | None = print) -> None:
    """Run every check of the contract on a tiny network; raises AssertionError naming the first that
    fails, and says what passed (``report=None``: silent)."""
    for check, fn in CHECKS.items():
        fn(name)
        if report is not None:
            report(f"ok  {check:<12} {WHAT[check]}")
    if report is not None:
        label = name if isinstance(name, str) else getattr(name, "name", "") or name.__name__
        report(f"{label}: all {len(CHECKS)} conformance checks passed")
