"""The method-plugin contract: what a semi-supervised method implements and what it is given.

A method is an ``nn.Module`` registered under its CLI name with ``@register_method("name")``. It
declares its paper name, a ``Config`` dataclass of hyper-parameters (paper defaults), its stages and
whether it uses unlabeled data, builds its networks with ``ctx.build_unet()``, and returns named
losses from ``training_step``. The trainer sums every value whose key contains ``"loss"`` and
optimises it; other keys are only logged. Hooks run after each optimiser step (EMA teachers, banks).
The method never steps an optimiser, samples data or evaluates: the trainer does, identically for all.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from .ramps import ssl4mis_consistency_weight
from .registry import Registry
from .unet import UNet, build_unet

Losses = dict[str, Tensor]


@dataclass
class MethodConfig:
    """Base of every method's hyper-parameter dataclass (fields are ``method.<name>`` config keys)."""


@dataclass
class Batch:
    """One training batch, already on the device and augmented.

    ``x_l`` (B_l, C, H, W) labeled images with ``y_l`` (B_l, H, W) int64 labels; ``x_u`` unlabeled
    images (None for methods that use no unlabeled data).
    """

    x_l: Tensor
    y_l: Tensor
    x_u: Tensor | None = None


@dataclass
class MethodContext:
    """What a method may know about the run when it builds its networks."""

    in_channels: int
    num_classes: int
    image_size: int
    device: torch.device
    base_width: int = 16
    stage_iterations: dict[str, int] = field(default_factory=dict)

    def build_unet(self) -> UNet:
        return build_unet(self.in_channels, self.num_classes, self.base_width).to(self.device)


@dataclass
class StepInfo:
    """Where the trainer is: stage, 0-based iteration within it, and the stage length.

    ``force_ramps`` makes every ramp return its final value (used by the conformance tests, so that a
    loss whose weight is still ramping up is checked at full strength).
    """

    stage: str
    iteration: int
    total: int
    force_ramps: bool = False

    def consistency_weight(self, weight: float, start_fraction: float = 0.0) -> float:
        """SSL4MIS consistency weight; zero before ``start_fraction`` of the stage (MT's warm-up)."""
        if self.force_ramps:
            return weight
        if self.iteration < start_fraction * self.total:
            return 0.0
        return ssl4mis_consistency_weight(weight, self.iteration, self.total)

    def progress(self) -> float:
        return 1.0 if self.force_ramps else self.iteration / max(self.total, 1)


class SSLMethod(nn.Module):
    """Base class of all method plugins."""

    name: ClassVar[str] = ""
    paper_name: ClassVar[str] = ""
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    stages: ClassVar[tuple[str, ...]] = ("train",)
    uses_unlabeled: ClassVar[bool] = True
    uses_all_labels: ClassVar[bool] = False  # UNet-F: trains on every training label, ratio ignored
    inference_net_name: ClassVar[str] = "student"

    def __init__(self, cfg: MethodConfig, ctx: MethodContext) -> None:
        super().__init__()
        self.cfg = cfg
        self.ctx = ctx
        self.student = ctx.build_unet()

    # -------------------------------------------------------------- required
    def training_step(self, batch: Batch, step: StepInfo) -> Losses:
        raise NotImplementedError

    # -------------------------------------------------------------- optional hooks
    def after_step(self, step: StepInfo) -> None:
        """Called after each optimiser step (EMA teachers, memory banks)."""

    def optim_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters the trainer's optimiser updates (frozen teachers are excluded)."""
        return (p for p in self.parameters() if p.requires_grad)

    def inference_net(self) -> nn.Module:
        """The network evaluated on validation and test volumes (recorded in the run record)."""
        return self.student

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """Logits (B, K, H, W) of the inference network in eval mode; train/eval state is restored."""
        net = self.inference_net()
        modes = {m: m.training for m in net.modules()}
        net.eval()
        try:
            out = net(x)
        finally:
            for m, mode in modes.items():
                m.train(mode)
        return out


METHODS: Registry[type[SSLMethod]] = Registry("method", "sslbench.methods", "sslbench.methods")


def register_method(name: str) -> Callable[[type[SSLMethod]], type[SSLMethod]]:
    """Class decorator registering a method plugin under its CLI name."""

    def deco(cls: type[SSLMethod]) -> type[SSLMethod]:
        cls.name = name
        if "paper_name" not in cls.__dict__:  # never inherit another method's row name
            cls.paper_name = name
        return METHODS.register(name)(cls)

    return deco
