"""The method-plugin contract: what a semi-supervised method implements and what it is given.

The contract comes in three tiers; a plugin uses only the ones it needs (docs/adding-a-method.md):

1. every method: ``@register_method("name")`` on an ``SSLMethod[MyConfig]`` subclass (the config
   dataclass's fields become ``method.<key>`` settings) whose ``training_step(batch, step)`` returns
   named terms; the trainer sums and optimises every term whose key contains ``"loss"`` and only
   logs the others;
2. methods with more networks: ``after_step(step, outputs)`` after each optimiser step (EMA
   teachers, banks), teachers from ``make_teacher``, and ``eval_nets`` naming the networks
   ``method.eval_net`` may pick for evaluation;
3. methods with more structure: ``stages`` (a ``pretrain`` stage), ``carry_best_of``, ``stage_nets``,
   ``start_stage``, ``extra_optimizers`` / ``extra_step``, ``conformance_config``.

The method never steps an optimiser, samples data or evaluates: the trainer does, identically for all.
``__all__`` lists the contract's public names (``Range`` and ``ConfigError`` too: a config's
``ranges`` and a method's own checks); building blocks are ``sslbench.nn``'s.
"""
from __future__ import annotations

import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, ClassVar, Generic, TypeVar

import torch
from torch import Tensor, nn

from sslbench.base.config import TrainConfig
from sslbench.base.printable import CONTROL
from sslbench.base.errors import ConfigError
from sslbench.base.names import MAX_NAME, NAME
from sslbench.base.ranges import Range
from sslbench.base.registry import Registry, RegistryError
from sslbench.nn.augment import default_generator
from sslbench.nn.ema import EMATeacher
from sslbench.nn.ramps import sigmoid_rampup, ssl4mis_consistency_weight
from sslbench.nn.unet import build_unet

__all__ = [
    "METHODS", "Batch", "ConfigError", "ConsistencyConfig", "ExtraOptimizer", "Losses", "MethodConfig", "MethodContext",
    "Range", "SSLMethod", "StepInfo", "TeacherConfig", "build_method", "register_method",
]

Losses = dict[str, Tensor]


@dataclass
class MethodConfig:
    """Base of every method's hyper-parameter dataclass (fields are ``method.<name>`` config keys)."""


@dataclass
class ConsistencyConfig(MethodConfig):
    """Methods with an unsupervised term: its maximum weight on SSL4MIS's sigmoid ramp."""

    consistency: float = 0.1  # the unsupervised term's maximum weight (SSL4MIS's sigmoid ramp over the run)


@dataclass
class TeacherConfig(ConsistencyConfig):
    """Methods with an EMA teacher."""

    ema_decay: float = 0.99  # the teacher's EMA decay
    teacher_train_mode: bool = True  # SSL4MIS: the teacher runs with dropout on and batch statistics


@dataclass
class Batch:
    """One training batch, already on the device and augmented.

    ``x_l`` (B_l, C, H, W) labeled images with ``y_l`` (B_l, H, W) int64 labels; ``x_u`` unlabeled
    images (None for methods that use no unlabeled data); ``positions`` the slices' relative positions
    in their volumes in ``joint()`` order (None when the data has no volumes).
    """

    x_l: Tensor
    y_l: Tensor
    x_u: Tensor | None = None
    positions: Tensor | None = None

    @property
    def n_l(self) -> int:
        return self.x_l.shape[0]

    def joint(self) -> Tensor:
        """Labeled then unlabeled images in one tensor (one forward pass, shared BN statistics)."""
        return self.x_l if self.x_u is None else torch.cat([self.x_l, self.x_u])


@dataclass
class ExtraOptimizer:
    """A further optimiser a method asks the trainer for (DAN's discriminator). The trainer steps it
    after the main step on the losses of ``method.extra_step(name, ...)``; its parameters are left out
    of the main optimiser."""

    params: list[nn.Parameter]
    kind: str = "adam"  # "adam" or "sgd"
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9
    weight_decay: float = 0.0


@dataclass
class MethodContext:
    """What a method may know about the run when it builds its networks."""

    in_channels: int
    num_classes: int
    image_size: int
    device: torch.device
    base_width: int = 16
    dims: int = 2  # 2: slices (the 2-D UNet); 3: volume crops (UA-MT's VNet)

    def build_unet(self) -> nn.Module:
        """The track's shared network on the device: the 2-D UNet, or in 3-D UA-MT's VNet (batch norm,
        dropout on as its LA scripts train it; ``predict`` runs it in eval mode, where dropout is off)."""
        if self.dims == 3:
            from sslbench.nn.vnet import VNet

            return VNet(self.in_channels, self.num_classes, self.base_width, "batchnorm", dropout=True).to(self.device)
        return build_unet(self.in_channels, self.num_classes, self.base_width).to(self.device)


@dataclass
class StepInfo:
    """Where the trainer is, handed to every ``training_step`` and ``after_step``:

    * ``stage``: the stage's name (``"train"``, or ``"pretrain"`` for a method with that stage);
    * ``iteration``: the 0-based iteration within the stage; ``total``: the stage's length;
    * ``rng(device)``: the generator every random draw of the method comes from;
    * ``consistency_weight(weight, start_fraction, ramp_length)``: the weight of an unsupervised
      term on SSL4MIS's sigmoid ramp;
    * ``progress()``: the fraction of the stage done, ``iteration / total`` in [0, 1) (1.0 under
      ``force_ramps``), for a method's own schedules (a threshold or a temperature that moves with
      training);
    * ``force_ramps``: True makes every ramp return its final value: ``consistency_weight`` returns
      ``weight`` and ``progress()`` 1.0 from the first step. The conformance kit sets it, so that a
      loss whose weight is still ramping up (zero at iteration 0) is checked at full strength; a
      method's own ramps should follow it too (read ``progress()`` or the flag). Training never sets it.
    * ``backward_now(losses)``: backpropagate these ``*loss*`` terms at once and get them back detached,
      for a step whose later passes never read this part's graph (MONA's equivariance pass reads only
      detached logits): the part's activations are freed before those passes run. The trainer still
      sums the returned values into the logged total; the gradients add up to those of one backward
      of the whole, to rounding. Outside the trainer's step (tests, the conformance kit's gradient
      check) it returns the terms as they are.

    ``generator`` is the trainer's seeded generator on the batch's device (checkpointed with the
    run): every random draw a method makes for augmentations, views, noise, feature perturbations
    and samples comes from ``rng(device)``. Three draws stay on the global generator, which the
    trainer seeds and checkpoints too: the networks' dropout layers and ICT's Beta coefficients
    (torch takes no generator for either) and DCT's rotation (a host-side choice: drawing it on the
    device would make the step wait for the device).
    """

    stage: str
    iteration: int
    total: int
    force_ramps: bool = False
    generator: torch.Generator | None = None
    backward: Callable[[Tensor], None] | None = None   # set by the trainer's step: see backward_now

    def backward_now(self, losses: dict[str, Any]) -> dict[str, Any]:
        """The ``*loss*`` terms of ``losses`` backpropagated now (their sum, once) and returned
        detached; every other entry as it is. Without the trainer's hook: ``losses`` unchanged."""
        live = [k for k, v in losses.items()
                if "loss" in k and not k.startswith("_") and torch.is_tensor(v) and v.requires_grad]
        if self.backward is None or not live:
            return losses
        self.backward(torch.stack([losses[k].float() for k in live]).sum())
        return {k: (v.detach() if k in live else v) for k, v in losses.items()}

    def rng(self, device: torch.device) -> torch.Generator:
        """The trainer's generator when it lives on ``device``, else the device's global one."""
        if self.generator is not None and self.generator.device.type == torch.device(device).type:
            return self.generator
        return default_generator(torch.device(device))

    def consistency_weight(self, weight: float, start_fraction: float = 0.0,
                           ramp_length: int | None = None, ramp_steps: int = 200) -> float:
        """``weight * exp(-5 (1 - t)^2)``: SSL4MIS's sigmoid ramp (``sigmoid_rampup``), 0 before
        ``start_fraction`` of the stage (MT's warm-up; the ramp still counts from the stage's start).

        ``ramp_length`` is the number of iterations over which the ramp rises to ``weight``:

        * None (the default): the whole stage, in SSL4MIS's 200 steps. The iteration is quantised to
          a quantum of ``max(total // 200, 1)`` iterations and ``t = min((iteration // quantum) /
          200, 1)``: the weight is constant within each quantum and is full from iteration
          ``200 * quantum`` (<= ``total``) on. At SSL4MIS's 30k iterations the quantum is 150, its
          ``sigmoid_rampup(iter_num // 150, 200)``; a stage under 200 iterations has quantum 1 and
          does not reach the full weight (``ssl4mis_consistency_weight``). ``ramp_steps`` changes the
          200: UA-MT's LA script ramps over 40 quanta of 150 iterations (``sigmoid_rampup(iter // 150,
          40)`` at 6000 iterations), ``ramp_steps=40``.
        * an int L > 0: a continuous ramp over the first L iterations, no quantum:
          ``t = min(iteration / L, 1)``; full weight from iteration L on, whatever ``total`` is.
          ``ramp_length=0`` is no ramp (the full weight at once).

        Under ``force_ramps`` it is ``weight`` from the first step (and the warm-up is skipped).
        """
        if ramp_length is not None and ramp_length < 0:
            raise ValueError(f"ramp_length must be >= 0 iterations, got {ramp_length}")
        if self.force_ramps:
            return weight
        if self.iteration < start_fraction * self.total:
            return 0.0
        if ramp_length is None:
            return ssl4mis_consistency_weight(weight, self.iteration, self.total, ramp_steps)
        return weight * sigmoid_rampup(self.iteration, ramp_length)

    def progress(self) -> float:
        """The fraction of the stage done, ``iteration / total`` (0 at the first step, below 1 at
        the last); 1.0 under ``force_ramps`` (every ramp at its final value)."""
        return 1.0 if self.force_ramps else self.iteration / max(self.total, 1)


C = TypeVar("C", bound=MethodConfig)


class SSLMethod(nn.Module, Generic[C]):
    """Base of all method plugins: ``class MyMethod(SSLMethod[MyConfig])`` types ``self.cfg`` and
    sets ``Config`` (a subclass of another method sets ``Config`` and annotates ``cfg`` itself)."""

    name: ClassVar[str] = ""
    paper_name: ClassVar[str] = ""
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    stages: ClassVar[tuple[str, ...]] = ("train",)
    uses_unlabeled: ClassVar[bool] = True
    uses_all_labels: ClassVar[bool] = False  # UNet-F: trains on every training label, ratio ignored
    # the networks ``method.eval_net`` may choose for validation and evaluation: choice -> attribute
    # path (the first is the default when the config has no ``eval_net``); the record names the choice
    eval_nets: ClassVar[dict[str, str]] = {"student": "student"}
    # stages that evaluate one network whatever ``eval_net`` says: stage -> attribute path (a
    # pre-training that trains only the student, before the twin the choice names exists in training)
    stage_nets: ClassVar[dict[str, str]] = {}
    # earlier stages whose best-validated inference network, not their last, goes on into the next
    # stage, as releases that reload "<stage>_best_model.pth" do (BCP's and ABD's pre-training)
    carry_best_of: ClassVar[tuple[str, ...]] = ()
    # config overrides the conformance kit applies: settings under which every loss term is active on
    # an untrained tiny network (for example a confidence threshold that would mask everything)
    conformance_config: ClassVar[dict[str, Any]] = {}
    # the setting each stage takes its length from, "train.<key>" or "method.<key>" (default: the last
    # stage train.iterations, an earlier one train.pretrain_iterations)
    stage_lengths: ClassVar[dict[str, str]] = {}
    # stages whose batches hold labeled slices only (a supervised pre-training): no unlabeled draw
    labeled_only_stages: ClassVar[tuple[str, ...]] = ()
    # the track dimensions the method is written for: (2,) a 2-D method, (2, 3) also UA-MT's 3-D track
    # (its losses and augmentations work on (B, C, D, H, W) crops and its release, or UA-MT's, runs LA)
    dims: ClassVar[tuple[int, ...]] = (2,)
    # the method's own configuration layer, in the form of a configs/methods/<name>.toml file:
    # {"train": {...}, "method": {...}, "profile": {"<profile>": {"train": {...}}}} (a plugin's defaults)
    defaults: ClassVar[dict[str, Any]] = {}
    cfg: C

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "Config" not in cls.__dict__:  # SSLMethod[MyConfig] says it once
            for base in cls.__dict__.get("__orig_bases__", ()):
                args = typing.get_args(base)
                if typing.get_origin(base) is SSLMethod and args and isinstance(args[0], type):
                    cls.Config = args[0]

    def __init__(self, cfg: C, ctx: MethodContext) -> None:
        super().__init__()
        self.cfg = cfg
        self.ctx = ctx
        self.current_stage = self.stages[-1]  # the trainer sets it as stages run (and on resume)
        choice = getattr(cfg, "eval_net", None)
        if choice is not None and choice not in self.eval_nets:
            raise ConfigError(f"method.eval_net must be {' or '.join(repr(n) for n in self.eval_nets)}, "
                              f"got {choice!r}")
        self.inference_net_name: str = choice if choice is not None else next(iter(self.eval_nets))
        self.student = self.build_student(ctx)

    @classmethod
    def stage_length_keys(cls) -> dict[str, str]:
        """Each stage's length setting, in stage order (see ``stage_lengths``)."""
        last = cls.stages[-1]
        return {stage: cls.stage_lengths.get(stage) or ("train.iterations" if stage == last else
                                                        "train.pretrain_iterations") for stage in cls.stages}

    def build_student(self, ctx: MethodContext) -> nn.Module:
        """The trained network (default: the shared UNet); its ``forward`` returns logits."""
        return ctx.build_unet()

    def make_teacher(self) -> EMATeacher:
        """An EMA teacher of the student configured from a ``TeacherConfig``."""
        cfg = self.cfg
        assert isinstance(cfg, TeacherConfig), f"{type(self).__name__}.Config must derive from TeacherConfig"
        return EMATeacher(self.student, cfg.ema_decay, train_mode=cfg.teacher_train_mode)

    # -------------------------------------------------------------- required
    def training_step(self, batch: Batch, step: StepInfo) -> Losses:
        raise NotImplementedError

    # -------------------------------------------------------------- optional hooks
    def after_step(self, step: StepInfo, outputs: Losses) -> None:
        """Called after each optimiser step (EMA teachers, memory banks) with the step's outputs:
        ``training_step``'s dict (plus ``<optimiser>/<key>`` of extra optimisers). Entries whose key
        starts with ``_`` reach this hook only (never logged, never optimised): the place for what
        the step computed for the hook, such as the keys a queue stores."""

    def start_stage(self, stage: str) -> None:
        """Called once when ``stage`` (not the first) begins, after a ``carry_best_of`` stage's best
        weights were put into the inference network: the place to copy them into teachers or twins."""

    def extra_optimizers(self) -> dict[str, ExtraOptimizer]:
        """Further optimisers, stepped in this order after the main one (default: none)."""
        return {}

    def extra_step(self, name: str, batch: Batch, step: StepInfo) -> Losses:
        """The named losses of extra optimiser ``name`` for this batch (same ``*loss*`` rule)."""
        raise NotImplementedError(f"{type(self).__name__} declares optimiser '{name}' but no extra_step")

    def optim_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters the main optimiser updates: everything trainable that no extra optimiser owns
        (frozen EMA teachers are excluded by requires_grad=False)."""
        owned = {id(p) for spec in self.extra_optimizers().values() for p in spec.params}
        return (p for p in self.parameters() if p.requires_grad and id(p) not in owned)

    def inference_net(self) -> nn.Module:
        """The network evaluated on validation and test volumes: ``eval_nets[inference_net_name]``
        (``stage_nets[current_stage]`` in a stage that names its own)."""
        return attrgetter(self.stage_nets.get(self.current_stage) or self.eval_nets[self.inference_net_name])(self)

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


def _name_method(name: str, cls: type[SSLMethod]) -> None:
    """What ``register_method`` sets, for a class an entry point exposes without the decorator. The
    name becomes a folder name and a record field: the rule of dataset and profile names."""
    if not isinstance(name, str) or not NAME.fullmatch(name) or len(name) > MAX_NAME:
        raise RegistryError(f"method name {name!r} is not allowed: letters, digits, '.', '_' and '-', starting "
                            f"with a letter or digit (at most {MAX_NAME} characters)")
    paper_name = cls.__dict__.get("paper_name", name)
    if not isinstance(paper_name, str) or not 0 < len(paper_name) <= 200 or CONTROL.search(paper_name):
        raise RegistryError(f"method {name!r}: paper_name must be a string of 1-200 characters without control "
                            "characters (it is printed and written in every table)")
    cls.name = name
    if "paper_name" not in cls.__dict__:  # never inherit another method's row name
        cls.paper_name = name


METHODS: Registry[type[SSLMethod]] = Registry(
    "method", "sslbench.methods", "sslbench.methods", adopt=_name_method,
    hint="a plugin method is found with --plugin MODULE (or BENCH_PLUGINS=MODULE, or an installed package's "
         "'sslbench.methods' entry point)")


def register_method(name: str) -> Callable[[type[SSLMethod]], type[SSLMethod]]:
    """Class decorator registering a method plugin under its CLI name."""

    def deco(cls: type[SSLMethod]) -> type[SSLMethod]:
        _name_method(name, cls)
        return METHODS.register(name)(cls)

    return deco


def method_dims(cls: type[SSLMethod]) -> tuple[int, ...]:
    """The tracks a method class runs on, its ``dims`` checked: a tuple of 2 and / or 3 (a plugin that
    writes ``dims = 3``, as ``train.dims`` reads, gets one line that says how to write it)."""
    dims = cls.dims
    if not isinstance(dims, (tuple, list)) or not dims or any(d not in (2, 3) for d in dims):
        raise ConfigError(f"method '{cls.name or cls.__name__}': dims must be a tuple of the tracks it runs on, (2,), "
                          f"(3,) or (2, 3), not {dims!r}")
    return tuple(sorted(set(dims)))


def check_dims(cls: type[SSLMethod], train: TrainConfig) -> None:
    """Refuse a method on a track its release does not run (a 2-D method on LA's volumes)."""
    if train.dims not in method_dims(cls):
        raise ConfigError(f"method '{cls.name}' is written for {' and '.join(f'{d}-D' for d in cls.dims)} training, "
                          f"not {train.dims}-D (train.dims = {train.dims}): its release has no 3-D version here")


def build_method(cls: type[SSLMethod], method_cfg: MethodConfig, train: TrainConfig, num_classes: int,
                 device: torch.device, in_channels: int = 1) -> SSLMethod:
    """The method with its networks on ``device``, from its settings and the schedule's image size and
    width: the one factory a run, ``bench predict``, ``bench speed`` and the conformance kit share
    (a notebook too). The slice cache holds one channel per slice, hence ``in_channels=1``."""
    check_dims(cls, train)
    ctx = MethodContext(in_channels=in_channels, num_classes=num_classes, image_size=train.image_size,
                        device=device, base_width=train.base_width, dims=train.dims)
    return cls(method_cfg, ctx)
