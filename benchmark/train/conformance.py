"""Conformance kit: the checks every registered method must pass (plugins can run them too).

    from sslbench.testing import check_method, run_checks
    check_method("my-method")                           # prints each check it passed; AssertionError naming the one that failed
    check_method("my-method", plugins=["my_lab.my_method"])   # a plugin module (or $BENCH_PLUGINS)
    ok = run_checks("my-method", ["my_lab.my_method"])  # `bench check`: "ok ..." lines, one "FAILED ..." line, a bool

A term that is zero by design on an untrained network (a confidence threshold nothing reaches yet, a
ramp-up) would fail check 2: the plugin says so with ``conformance_config``, a dict of its config
overrides under which every term is active (UniMatch: ``{"conf_thresh": 0.0}``).

Runs on the CPU with a tiny UNet (base width 4, 32 x 32 slices, 3 classes, batch 4) in seconds. Two
runs are shared: the reference run (seed 0, four steps of the first stage as training takes them)
serves checks 1 and 3-6, the trajectory (``STEPS`` steps of every stage in a row, ramps forced, the
trainer's own ``next_stage`` between stages so ``start_stage`` runs) checks 7-9.

1. ``losses``: ``training_step`` returns finite scalars with at least one ``*loss*`` key;
2. ``gradients``: every ``*loss*`` term, with ramps forced to their final value and after one step of
   its stage (teachers diverged, memory banks holding keys: an empty bank contributes nothing), sends
   a non-zero gradient to the trained parameters (catches USB's mean-teacher bug: a consistency term
   between two teacher outputs);
3. ``predict``: returns (B, K, H, W) and leaves train/eval flags and BN statistics untouched;
4. ``resume``: a checkpoint round trip (trainer state -> fresh trainer) reproduces the next step's
   losses exactly;
5. ``determinism``: a second run with the reference run's seed gives its losses;
6. ``pretrain``: a method with a ``pretrain`` stage starts with it and takes a finite step;
7. ``eval-nets``: in every stage and for every ``eval_net`` choice, ``inference_net()`` is the network
   at ``stage_nets.get(stage) or eval_nets[choice]`` (the trainer validates, carries and selects
   through that declaration: a plugin that overrides ``inference_net`` instead escapes it), and every
   ``stage_nets`` key is a stage;
8. ``teachers``: every frozen parameter (``requires_grad`` False: no optimiser trains it; EMA
   teachers, momentum encoders) changes during at least one stage, judged per layer (the module that
   holds it: a convolution's bias before BatchNorm gets a gradient of rounding size, so its EMA copy
   may stay put bit for bit while the layer's weight moves). Exempt, precisely: a layer whose still
   parameters each equal a trained parameter that did not change either (the EMA of a network part
   that gets no gradient stays put: the decoder of a contrastive framework, whose loss reads only
   the bottleneck, and its momentum copy);
9. ``validated``: in every validated stage (each ``carry_best_of`` stage, whose best network goes
   on into the next stage, and the last), the network ``inference_net()`` gives, for every
   ``eval_net`` choice, changes during that stage (catches a two-stage method evaluated through a
   teacher that only moves in stage 2 and lacks ``stage_nets = {"pretrain": "student"}``: it would
   validate and carry the untrained teacher out of the pre-training). A stage nothing validates (PLC's
   pre-training of its pseudo-labeller) may leave the evaluated network alone.
"""
from __future__ import annotations

import copy
import dataclasses
import traceback
from collections.abc import Callable, Sequence
from operator import attrgetter
from pathlib import Path
from typing import Any, TypeVar

import torch
from scipy import ndimage
from torch import nn

from sslbench.base.config import TrainConfig
from sslbench.base.errors import BenchError, RegistryError
from sslbench.base.run_files import RunFiles
from sslbench.method import METHODS, MethodContext, SSLMethod
from sslbench.train.trainer import TrainData, Trainer

TINY = TrainConfig(iterations=8, pretrain_iterations=4, batch_size=4, labeled_bs=2, image_size=32,
                   base_width=4, val_every=4, log_every=4, amp=False)
NUM_CLASSES = 3
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


def _label(name: MethodRef) -> str:
    return name if isinstance(name, str) else getattr(name, "name", "") or name.__name__


def build(name: MethodRef, seed: int = 0, cfg: TrainConfig = TINY, device: str = "cpu",
          folder: Path | None = None) -> Trainer:
    """A tiny trainer for a registered method name or a method class; ``folder``: its run folder
    (none: checkpoints in memory)."""
    cls = resolve_method(name)
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
        return ReferenceRun(_label(cls), trainer, outputs, state)

    return _shared("reference", resolve_method(name), compute)


def check_losses(name: MethodRef) -> None:
    run = reference_run(name)
    for out in run.outputs[:2]:
        assert any("loss" in k for k in out if k != "loss"), f"{run.label}: no '*loss*' term returned"
        for k, v in out.items():
            v = torch.as_tensor(v)
            assert v.numel() == 1, f"{run.label}: '{k}' is not a scalar"
            assert torch.isfinite(v).all(), f"{run.label}: '{k}' is not finite ({float(v)})"


def check_gradients(name: MethodRef) -> None:
    trainer = build(name)
    trainer.force_ramps = True
    method = trainer.method
    label = _label(resolve_method(name))
    for stage_index, stage in enumerate(trainer.stages):
        trainer.stage_index = stage_index
        trainer.train_step()  # EMA teachers diverge from the student, this stage's banks get keys
        method.train()
        out = method.training_step(trainer.next_batch(), trainer.step_info())
        params = [p for p in method.optim_parameters()]
        terms = {k: v for k, v in out.items() if "loss" in k}
        assert terms, f"{label} [stage '{stage}']: no '*loss*' term returned"
        _assert_gradients(label, stage, terms, params)
        batch = trainer.next_batch()
        for opt_name, spec in method.extra_optimizers().items():
            out = method.extra_step(opt_name, batch, trainer.step_info())
            terms = {f"{opt_name}/{k}": v for k, v in out.items() if "loss" in k}
            assert terms, f"{label} [stage '{stage}']: optimiser '{opt_name}' got no '*loss*' term"
            _assert_gradients(label, stage, terms, list(spec.params))


ZERO_BY_DESIGN = (
    "If the term is zero by design on an untrained tiny network (a confidence threshold nothing reaches yet, "
    "an empty mask, a ramp of the method's own that ignores step.force_ramps), set conformance_config = {...} "
    "on the class: the config overrides under which every term is active (UniMatch: conformance_config = "
    "{'conf_thresh': 0.0}). Otherwise the term is cut from the graph (detached, under no_grad, or between two "
    "outputs that get no gradient, as USB's mean-teacher bug).")


def _assert_gradients(name: MethodRef, stage: str, terms: dict, params: list) -> None:  # type: ignore[type-arg]
    label = _label(name)
    for key, term in terms.items():
        assert torch.is_tensor(term) and term.requires_grad, (
            f"{label} [stage '{stage}']: '{key}' carries no gradient (ramps at full strength, after one step of "
            f"stage '{stage}'). {ZERO_BY_DESIGN}")
        grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
        total = sum(float(g.abs().sum()) for g in grads if g is not None)
        assert total > 0, (
            f"{label} [stage '{stage}']: '{key}' sends zero gradient to the trained networks (ramps at full "
            f"strength, after one step of stage '{stage}'). {ZERO_BY_DESIGN}")


def check_predict(name: MethodRef) -> None:
    run = reference_run(name)
    method: SSLMethod = run.trainer.method
    method.train()
    flags = [m.training for m in method.modules()]
    buffers = copy.deepcopy({k: v for k, v in method.state_dict().items()})
    x = run.trainer.data.images[:3]
    out = method.predict(x)
    assert out.shape == (3, NUM_CLASSES, TINY.image_size, TINY.image_size), \
        f"{run.label}: predict shape {tuple(out.shape)}"
    assert [m.training for m in method.modules()] == flags, f"{run.label}: predict changed train/eval flags"
    for k, v in method.state_dict().items():
        assert torch.equal(v, buffers[k]), f"{run.label}: predict changed state '{k}'"


def check_resume(name: MethodRef) -> None:
    run = reference_run(name)
    expected = _values(run.outputs[REFERENCE_STEPS])
    b = build(resolve_method(name), seed=123)
    b.load_state_dict(copy.deepcopy(run.state))  # a copy: the loaded optimiser may share the state's tensors
    got = _values(b.train_step())
    assert got == expected, f"{run.label}: resumed step differs: {got} != {expected}"


def check_determinism(name: MethodRef) -> None:
    run = reference_run(name)
    t = build(resolve_method(name), seed=0)
    again = [_values(t.train_step()) for _ in range(REFERENCE_STEPS)]
    first = [_values(out) for out in run.outputs[:REFERENCE_STEPS]]
    assert again == first, f"{run.label}: two runs with one seed differ: {first} != {again}"


def check_pretrain(name: MethodRef) -> None:
    run = reference_run(name)
    stages = run.trainer.stages
    if "pretrain" not in stages:
        return
    assert stages[0] == "pretrain", f"{run.label}: the pretrain stage must come first, stages are {tuple(stages)}"
    assert torch.isfinite(torch.as_tensor(run.outputs[0]["loss"])), f"{run.label}: pretrain step is not finite"


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
    trainer.checkpoint = lambda: None  # type: ignore[method-assign]  # next_stage's checkpoint: nothing reads it here
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
    return Trajectory(_label(cls), stages, validated, mismatches, stuck, sizes, still, trained_paths)


def check_eval_nets(name: MethodRef) -> None:
    run = trajectory(name)
    assert not run.eval_mismatches, (
        f"{run.label}: what inference_net() evaluates does not follow the class's eval_nets / stage_nets: "
        f"{'; '.join(run.eval_mismatches)}. "
        "The trainer validates, carries and selects the network that stage_nets.get(stage) or "
        "eval_nets[method.eval_net] names: declare stage_nets = {'<stage>': '<attribute path>'} for a stage that "
        "evaluates another network (and eval_nets for the choices), rather than override inference_net")


def check_teachers(name: MethodRef) -> None:
    run = trajectory(name)
    if not run.stuck:
        return
    by_group: dict[str, list[str]] = {}
    for layer, (group, _) in run.stuck.items():
        by_group.setdefault(group, []).append(layer)
    group, layers = next(iter(by_group.items()))
    others = [g for g in by_group if g != group]
    raise AssertionError(
        f"{run.label}: '{group}' is frozen (requires_grad False: no optimiser trains it) and did not change in "
        f"{STEPS} steps of any stage ({', '.join(run.stages)}), though the trained networks did: "
        f"{len(layers)} of its {run.frozen_sizes[group]} layers stayed put, e.g. '{layers[0]}'"
        + (f" (also: {', '.join(repr(g) for g in others)})" if others else "")
        + ". An EMA teacher or momentum encoder must be updated in after_step, e.g. "
          "self.teacher.update(self.student, step.iteration)")


def check_validated(name: MethodRef) -> None:
    run = trajectory(name)
    for stage, nets in run.still.items():
        choice, path = nets[0]
        movers = [p for p in run.trained_paths.get(stage, []) if p != path]
        hint = f" (here '{movers[0]}' trains)" if movers else ""
        if stage != run.stages[-1]:
            raise AssertionError(
                f"{run.label} [stage '{stage}']: the network validated in stage '{stage}' and carried out of it "
                f"(carry_best_of), inference_net() = '{path}' with eval_net '{choice}', did not change in {STEPS} "
                f"steps of that stage: it does not train there, so the next stage would start from untrained "
                f"weights. Declare stage_nets = {{'{stage}': '<attribute path of the network that trains>'}} on the "
                f"class{hint}")
        raise AssertionError(
            f"{run.label} [stage '{stage}']: the evaluated network, inference_net() = '{path}' with eval_net "
            f"'{choice}', did not change in {STEPS} steps of the last stage: validation and test would score "
            f"untrained weights. eval_nets (or stage_nets = {{'{stage}': '...'}}) must name a network that trains or "
            f"that after_step updates{hint}")


CHECKS: dict[str, Callable[[MethodRef], None]] = {
    "losses": check_losses, "gradients": check_gradients, "predict": check_predict,
    "resume": check_resume, "determinism": check_determinism, "pretrain": check_pretrain,
    "eval-nets": check_eval_nets, "teachers": check_teachers, "validated": check_validated,
}
WHAT = {
    "losses": "two steps return finite scalar terms, at least one '*loss*'",
    "gradients": "every '*loss*' term of every stage sends gradient to the trained networks (ramps at full "
                 "strength; settings from conformance_config)",
    "predict": "predict gives (B, K, H, W) logits and changes no train/eval flag or state",
    "resume": "a checkpoint round trip reproduces the next step exactly",
    "determinism": "a second run with one seed gives the same losses (CPU)",
    "pretrain": "the pretrain stage, if any, takes a finite step",
    "eval-nets": "in every stage, for every eval_net choice, inference_net() is the network stage_nets / "
                 "eval_nets declare",
    "teachers": "every frozen layer (requires_grad False: EMA teacher, momentum encoder) changes in some stage",
    "validated": "the network validated in each carry_best_of stage and in the last trains in that stage",
}


def check_method(name: MethodRef, plugins: Sequence[str] | str = (),
                 report: Callable[[str], None] | None = print) -> None:
    """Run every check of the contract on a tiny network; raises AssertionError naming the first that
    fails, and says what passed (``report=None``: silent). ``plugins``: modules that register the
    method (imported first, as ``$BENCH_PLUGINS``)."""
    if plugins is None or callable(plugins):  # the former signature check_method(name, report)
        plugins, report = (), plugins  # type: ignore[assignment]
    cls = resolve_method(name, plugins)
    for check, fn in CHECKS.items():
        try:
            fn(cls)
        except AssertionError as exc:
            raise AssertionError(f"conformance check '{check}' failed: {exc}") from exc
        if report is not None:
            report(f"ok  {check:<12} {WHAT[check]}")
    if report is not None:
        report(f"{_label(name)}: all {len(CHECKS)} conformance checks passed")


def run_checks(name: MethodRef, plugins: Sequence[str] | str = (), report: Callable[[str], None] = print) -> bool:
    """``bench check``: the checks one by one, an ``ok  <check>  <what>`` line for each that passed;
    at the first failure one line ``FAILED <check>: <message>`` (no traceback) and False; True when
    all passed. A method that cannot be found or loaded is ``FAILED load: ...``."""
    try:
        cls = resolve_method(name, plugins)
    except BenchError as exc:
        report(f"FAILED load: {exc}")
        return False
    for check, fn in CHECKS.items():
        try:
            fn(cls)
        except AssertionError as exc:
            report(f"FAILED {check}: {exc}")
            return False
        except Exception as exc:  # noqa: BLE001 - a plugin's own error is a failed check, said in one line
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            report(f"FAILED {check}: {type(exc).__name__}: {exc} (raised at {frame.filename}:{frame.lineno} in "
                   f"{frame.name})")
            return False
        report(f"ok  {check:<12} {WHAT[check]}")
    report(f"{_label(name)}: all {len(CHECKS)} conformance checks passed")
    return True
