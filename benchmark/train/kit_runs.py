"""The conformance kit's runs: a tiny trainer of any method (``build``) on tiny smooth data, and the two
runs its checks share (the reference run and the trajectory), each computed once per method class and
track. A method whose ``dims`` holds 3 is checked on the 3-D track as well (``track(3)``): a tiny VNet
on 16 x 32 x 32 crops of smooth volumes, two classes as LA's."""
from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from operator import attrgetter
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from sslbench.base.config import TrainConfig
from sslbench.base.errors import RegistryError
from sslbench.base.run_files import RunFiles
from sslbench.method import METHODS, SSLMethod, build_method
from sslbench.train.trainer import TrainData, Trainer
from sslbench.train.volumes import VolumeData, volume_data

TINY = TrainConfig(iterations=8, pretrain_iterations=4, batch_size=4, labeled_bs=2, image_size=32,
                   base_width=4, val_every=4, log_every=4, amp=False)
NUM_CLASSES = 3
# the 3-D track: UA-MT's VNet (four halvings) on crops of 20 x 40 x 40 volumes, as the 3-D phantom's quick
# profile (its bottleneck holds 1 x 2 x 2 values: batch norm trains on one sample, as BCP's mixed halves)
TINY_3D = dataclasses.replace(TINY, dims=3, patch_size=(16, 32, 32), stride_xy=16, stride_z=8)
NUM_CLASSES_3D = 2  # LA's background and atrium
_TRACK: ContextVar[int] = ContextVar("conformance_track", default=2)
T = TypeVar("T")
STEPS = 2  # steps per stage of the run the eval-nets, teachers and validated checks share


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


def tiny_volumes(n: int, patch: Sequence[int], device: torch.device, seed: int = 0) -> VolumeData:
    """Smooth random volumes a little larger than the crop (labels: the positive half), half labeled."""
    rng = np.random.default_rng(seed)
    shape = (patch[0] + 4, patch[1] + 8, patch[2] + 8)
    volumes = []
    for _ in range(n):
        image = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 2.0)
        image /= image.std() + 1e-8
        volumes.append((image, (image > 0).astype(np.uint8)))
    return volume_data(volumes, range(n // 2), range(n // 2, n), patch, device)


@contextmanager
def track(dims: int) -> Iterator[None]:
    """The checks inside run on the 2-D track (tiny UNet on slices) or the 3-D one (tiny VNet on crops)."""
    if dims not in (2, 3):
        raise ValueError(f"a track is 2-D or 3-D, not {dims}-D")
    token = _TRACK.set(dims)
    try:
        yield
    finally:
        _TRACK.reset(token)


def current_track() -> int:
    return _TRACK.get()


def tiny_config() -> TrainConfig:
    """The kit's training settings on the current track."""
    return TINY_3D if _TRACK.get() == 3 else TINY


def num_classes() -> int:
    return NUM_CLASSES_3D if _TRACK.get() == 3 else NUM_CLASSES


MethodRef = str | type[SSLMethod]


def resolve_method(name: MethodRef, plugins: Sequence[str] | str = ()) -> type[SSLMethod]:
    """The method class of a registered name (a class is returned as it is), after importing the
    plugin modules of ``$BENCH_PLUGINS`` and ``plugins`` (their decorators register them). An unknown
    name is a ``RegistryError`` that says how to pass the plugin's module."""
    if not isinstance(name, str):
        return name
    METHODS.load_env_plugins()
    for module in (plugins,) if isinstance(plugins, str) else plugins:
        METHODS.load_plugin_module(module)
    if name not in METHODS:
        known = ", ".join(sorted(METHODS.names()))
        raise RegistryError(
            f"unknown method '{name}' (known: {known}); if it is a plugin, pass the module that registers it: "
            f"check_method('{name}', plugins=['MODULE']), `bench check {name} --plugin MODULE` or "
            f"BENCH_PLUGINS=MODULE (a module path importable from the working directory, e.g. my_lab.my_method)")
    return METHODS.get(name)


def method_label(name: MethodRef) -> str:
    return name if isinstance(name, str) else getattr(name, "name", "") or name.__name__


def build(name: MethodRef, seed: int = 0, cfg: TrainConfig | None = None, device: str = "cpu",
          folder: Path | None = None) -> Trainer:
    """A tiny trainer for a registered method name or a method class; ``cfg``: its training settings
    (default: the current track's; ``dims = 3`` trains a VNet on tiny volumes); ``folder``: its run
    folder (none: checkpoints in memory)."""
    cls = resolve_method(name)
    cfg = tiny_config() if cfg is None else cfg
    torch.manual_seed(seed)
    method = build_method(cls, dataclasses.replace(cls.Config(), **cls.conformance_config), cfg,
                          NUM_CLASSES_3D if cfg.dims == 3 else NUM_CLASSES, torch.device(device))
    data: TrainData | VolumeData
    if cfg.dims == 3:
        data = tiny_volumes(8, cfg.patch_size, torch.device(device))
    else:
        data = tiny_data()
        data = TrainData(*(t.to(device) for t in (data.images, data.labels, data.labeled, data.unlabeled,
                                                 data.positions)))
    files = None
    if folder is not None:
        files = RunFiles(folder)
        files.create()
    return Trainer(method, data, cfg, seed, progress=False, desc=cls.name or cls.__name__, files=files)


def loss_values(losses: dict[str, torch.Tensor | float]) -> dict[str, float]:
    return {k: float(v) for k, v in losses.items()}


# Two runs are shared between checks, the last of each kept: the reference run (checks 1 and 3-6) and
# the trajectory (checks 7-9). check_method and a test that runs the checks of one method in a row
# compute each once.
_RUNS: dict[str, tuple[list[object], object]] = {}


def _fingerprint(cls: type[SSLMethod]) -> list[object]:
    """The class and everything its classes define, compared by identity: a class patched between two
    checks (a test's monkeypatch) gets new runs."""
    return [cls, *(v for c in cls.__mro__ for item in vars(c).items() for v in item)]


def _shared(kind: str, cls: type[SSLMethod], compute: Callable[[type[SSLMethod]], T]) -> T:
    key = _fingerprint(cls)
    kind = f"{kind} {_TRACK.get()}-D"  # each track keeps its own runs
    kept = _RUNS.get(kind)
    if kept is not None and len(kept[0]) == len(key) and all(a is b for a, b in zip(kept[0], key)):
        return kept[1]  # type: ignore[return-value]
    _RUNS.pop(kind, None)
    result = compute(cls)
    _RUNS[kind] = (key, result)
    return result


@dataclasses.dataclass
class ReferenceRun:
    """Seed 0, ``REFERENCE_STEPS`` + 1 steps of the first stage as training runs them (ramps as
    scheduled): the logged outputs of each step, the trainer state before the last one, the trainer."""

    label: str
    trainer: Trainer
    outputs: list[dict[str, torch.Tensor | float]]
    state: dict[str, Any]


REFERENCE_STEPS = 3


def reference_run(name: MethodRef) -> ReferenceRun:
    def compute(cls: type[SSLMethod]) -> ReferenceRun:
        trainer = build(cls, seed=0)
        outputs = [trainer.train_step() for _ in range(REFERENCE_STEPS)]
        state = copy.deepcopy(trainer.state_dict())
        outputs.append(trainer.train_step())
        return ReferenceRun(method_label(cls), trainer, outputs, state)

    return _shared("reference", resolve_method(name), compute)


# ------------------------------------------------------------------ the shared run of checks 7-9
@dataclasses.dataclass
class Trajectory:
    """What ``STEPS`` steps of every stage showed (``trajectory``)."""

    label: str
    stages: list[str]
    validated: list[str]                  # carry_best_of stages and the last
    eval_mismatches: list[str]            # check 7: what inference_net() got wrong, in words
    # check 8: layer holding frozen parameters, none of which ever changed -> (the frozen module it is
    # part of, the stages where one of them stayed put while no unchanged trained parameter equals it)
    stuck: dict[str, tuple[str, list[str]]]
    frozen_sizes: dict[str, int]          # frozen module path -> its number of layers with parameters
    # check 9: validated stage -> [(eval_net choice, path of what inference_net() gave)] that did not change
    still: dict[str, list[tuple[str, str]]]
    trained_paths: dict[str, list[str]]   # stage -> declared network paths that did change (for the hint)


def _path_of(method: nn.Module, module: nn.Module) -> str:
    for path, m in method.named_modules():
        if m is module:
            return path or "<the method itself>"
    return f"a {type(module).__name__} that is not a submodule of the method"


def _frozen_groups(method: nn.Module) -> dict[str, nn.Module]:
    """The largest modules all of whose parameters are frozen, by path; a wrapper with one child
    that holds all of them is named by that child (an ``EMATeacher`` at ``teacher``: ``teacher.module``)."""
    groups: dict[str, nn.Module] = {}
    for path, m in method.named_modules():
        params = list(m.parameters())
        if not path or not params or any(p.requires_grad for p in params):
            continue
        if any(path.startswith(g + ".") for g in groups):
            continue
        while not list(m.parameters(recurse=False)):
            children = [(n, c) for n, c in m.named_children() if list(c.parameters())]
            if len(children) != 1:
                break
            path, m = f"{path}.{children[0][0]}", children[0][1]
        groups[path] = m
    return groups


def trajectory(name: MethodRef) -> Trajectory:
    """Run ``STEPS`` steps of every stage in a row (ramps forced) and record what checks 7-9 read:
    which network ``inference_net()`` gives per stage and ``eval_net`` choice, which frozen parameters
    and which evaluated networks changed. The last run is kept for the next check of the same class."""
    return _shared("trajectory", resolve_method(name), _trajectory)


def _trajectory(cls: type[SSLMethod]) -> Trajectory:
    trainer = build(cls)
    trainer.force_ramps = True
    trainer.checkpoint = lambda timed=True: None  # type: ignore[method-assign]  # next_stage's checkpoint: nothing reads it here
    method = trainer.method
    stages = list(trainer.stages)
    validated = [s for s in stages[:-1] if s in method.carry_best_of] + [stages[-1]]
    default_choice = method.inference_net_name
    frozen = {n: p for n, p in method.named_parameters() if not p.requires_grad}
    trained = {n: p for n, p in method.named_parameters() if p.requires_grad}
    groups = _frozen_groups(method)
    group_of = {n: next((g for g in groups if n.startswith(g + ".")), n.rsplit(".", 1)[0]) for n in frozen}
    moved: set[str] = set()
    unexplained: dict[str, list[str]] = {}
    mismatches: list[str] = []
    still: dict[str, list[tuple[str, str]]] = {}
    trained_paths: dict[str, list[str]] = {}
    typos = sorted(set(method.stage_nets) - set(stages))
    if typos:
        mismatches.append(f"stage_nets names {', '.join(repr(t) for t in typos)}, which is not a stage of "
                          f"{tuple(stages)}: that entry is never used")
    for index, stage in enumerate(stages):
        if index:
            trainer.next_stage()  # carry (nothing validated here: the last weights), start_stage, fresh optimisers
        method.current_stage = stage
        nets: dict[str, nn.Module] = {}
        for choice in method.eval_nets:
            method.inference_net_name = choice
            declared = method.stage_nets.get(stage) or method.eval_nets[choice]
            try:
                expected = attrgetter(declared)(method)
            except AttributeError as exc:
                mismatches.append(f"[stage '{stage}', eval_net '{choice}'] '{declared}' names no attribute ({exc})")
                expected = None
            got = method.inference_net()
            if expected is not None and got is not expected:
                mismatches.append(f"[stage '{stage}', eval_net '{choice}'] inference_net() gives "
                                  f"'{_path_of(method, got)}', not '{declared}'")
            nets[choice] = got
        method.inference_net_name = default_choice
        steps = min(STEPS, trainer.lengths[stage])
        if not steps:
            continue  # a stage of no iterations: nothing to see
        before = {n: p.detach().clone() for n, p in method.named_parameters()}
        net_before = {choice: [p.detach().clone() for p in net.parameters()] for choice, net in nets.items()}
        for _ in range(steps):
            trainer.train_step()
        now = dict(method.named_parameters())
        changed = {n for n, p in now.items() if not torch.equal(before[n], p)}
        moved |= changed & set(frozen)
        resting: dict[tuple[torch.Size, torch.dtype], list[torch.Tensor]] = {}
        for n, p in trained.items():
            if n not in changed:
                resting.setdefault((p.shape, p.dtype), []).append(p.detach())
        for n, p in frozen.items():
            if n in changed:
                continue
            if not any(torch.equal(p, q) for q in resting.get((p.shape, p.dtype), [])):
                unexplained.setdefault(n, []).append(stage)  # still while what it could mirror moved
        if stage in validated:
            for choice, net in nets.items():
                after = list(net.parameters())
                if after and all(torch.equal(a, b) for a, b in zip(net_before[choice], after)):
                    still.setdefault(stage, []).append((choice, _path_of(method, net)))
            candidates = dict.fromkeys(["student", *method.eval_nets.values(), *method.stage_nets.values()])
            trained_paths[stage] = [c for c in candidates if any(n.startswith(c + ".") for n in changed)]
    # judged per layer (the module that holds the parameters): a convolution's bias before BatchNorm gets a
    # gradient of rounding size only, its EMA copy can stay put bit for bit while the layer's weight moves
    layers: dict[str, list[str]] = {}
    for n in frozen:
        layers.setdefault(n.rsplit(".", 1)[0], []).append(n)
    stuck = {layer: (group_of[names[0]], sorted({s for n in names for s in unexplained.get(n, [])}, key=stages.index))
             for layer, names in layers.items()
             if not moved & set(names) and any(n in unexplained for n in names)}
    sizes: dict[str, int] = {}
    for names in layers.values():
        sizes[group_of[names[0]]] = sizes.get(group_of[names[0]], 0) + 1
    return Trajectory(method_label(cls), stages, validated, mismatches, stuck, sizes, still, trained_paths)
