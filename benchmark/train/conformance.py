"""Conformance kit: the checks every registered method must pass (plugins can run them too).

    from sslbench.testing import check_method, run_checks
    check_method("my-method")                           # prints each check it passed; AssertionError naming the one that failed
    check_method("my-method", plugins=["my_lab.my_method"])   # a plugin module (or $BENCH_PLUGINS)
    ok = run_checks("my-method", ["my_lab.my_method"])  # `bench check`: "ok ..." lines, one "FAILED ..." line, a bool

A term that is zero by design on an untrained network (a confidence threshold nothing reaches yet, a
ramp-up) would fail check 2: the plugin says so with ``conformance_config``, a dict of its config
overrides under which every term is active (UniMatch: ``{"conf_thresh": 0.0}``).

Runs on the CPU with a tiny UNet (base width 4, 32 x 32 slices, 3 classes, batch 4) in seconds; a
method whose ``dims`` holds 3 (it runs on the 3-D track) passes every check there too, on a tiny VNet
(base width 4, 16 x 32 x 32 crops of smooth volumes, 2 classes, batch 4), each message saying
"in 3-D". Two runs are shared per track: the reference run (seed 0, four steps of the first stage
as training takes them) serves checks 1 and 3-6, the trajectory (``STEPS`` steps of every stage in
a row, ramps forced, the trainer's own ``next_stage`` between stages so ``start_stage`` runs)
checks 7-9.

1. ``losses``: ``training_step`` returns finite scalars with at least one ``*loss*`` key;
2. ``gradients``: every ``*loss*`` term, with ramps forced to their final value and after one step of
   its stage (teachers diverged, memory banks holding keys: an empty bank contributes nothing), sends
   a non-zero gradient to the trained parameters (catches USB's mean-teacher bug: a consistency term
   between two teacher outputs);
3. ``predict``: returns (B, K, H, W) logits ((B, K, D, H, W) of a crop in 3-D) and leaves train/eval
   flags and BN statistics untouched;
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
   pre-training of its pseudo-labeller) may leave the evaluated network alone;
10. ``autocast``: in every stage, a step under bf16 autocast (what CUDA's quick profile trains in;
   the CPU's own autocast here, which casts the same kinds of operations) gives finite losses, and an
   fp32 step after it, in the same process, still runs (a table cached while autocast was on must not
   serve bf16 to fp32 code, as MONA's pooling table once did on a GPU).
"""
from __future__ import annotations

import copy
import os
import subprocess
import sys
import traceback
from collections.abc import Callable, Sequence

import torch

from sslbench.base.errors import BenchError
from sslbench.method import SSLMethod, method_dims
from sslbench.train.trainer import Trainer
from sslbench.train.kit_runs import (
                                    NUM_CLASSES,
                                    NUM_CLASSES_3D,
                                    REFERENCE_STEPS,
                                    STEPS,
                                    TINY,
                                    TINY_3D,
                                    MethodRef,
                                    build,
                                    current_track,
                                    loss_values,
                                    method_label,
                                    num_classes,
                                    reference_run,
                                    resolve_method,
                                    tiny_config,
                                    tiny_data,
                                    track,
                                    trajectory,
)

__all__ = ["CHECKS", "NUM_CLASSES", "NUM_CLASSES_3D", "STEPS", "TINY", "TINY_3D", "WHAT", "build", "check_method",
           "num_classes", "resolve_method", "run_checks", "tiny_data", "track"]


def check_losses(name: MethodRef) -> None:
    run = reference_run(name)
    where = f"{run.label} [stage '{run.trainer.stages[0]}']"
    for out in run.outputs[:2]:
        assert any("loss" in k for k in out if k != "loss"), f"{where}: no '*loss*' term returned"
        for k, v in out.items():
            v = torch.as_tensor(v)
            assert v.numel() == 1, f"{where}: '{k}' is not a scalar"
            assert torch.isfinite(v).all(), f"{where}: '{k}' is not finite ({float(v)})"


def check_gradients(name: MethodRef) -> None:
    trainer = build(name)
    trainer.force_ramps = True
    method = trainer.method
    label = method_label(resolve_method(name))
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


def _assert_gradients(label: str, stage: str, terms: dict, params: list) -> None:  # type: ignore[type-arg]
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
    cfg = tiny_config()
    if cfg.dims == 3:  # a batch of crops, as the sliding window feeds them
        size: tuple[int, ...] = tuple(cfg.patch_size)
        x = torch.rand(2, 1, *size, generator=torch.Generator().manual_seed(0))
    else:
        size = (cfg.image_size, cfg.image_size)
        x = run.trainer.data.images[:3]
    out = method.predict(x)
    assert tuple(out.shape) == (len(x), num_classes(), *size), \
        f"{run.label}: predict shape {tuple(out.shape)}, expected {(len(x), num_classes(), *size)}"
    assert [m.training for m in method.modules()] == flags, f"{run.label}: predict changed train/eval flags"
    for k, v in method.state_dict().items():
        assert torch.equal(v, buffers[k]), f"{run.label}: predict changed state '{k}'"


def check_resume(name: MethodRef) -> None:
    run = reference_run(name)
    expected = loss_values(run.outputs[REFERENCE_STEPS])
    b = build(resolve_method(name), seed=123)
    b.load_state_dict(copy.deepcopy(run.state))  # a copy: the loaded optimiser may share the state's tensors
    got = loss_values(b.train_step())
    assert got == expected, f"{run.label}: resumed step differs: {got} != {expected}"


def check_determinism(name: MethodRef) -> None:
    run = reference_run(name)
    t = build(resolve_method(name), seed=0)
    again = [loss_values(t.train_step()) for _ in range(REFERENCE_STEPS)]
    first = [loss_values(out) for out in run.outputs[:REFERENCE_STEPS]]
    assert again == first, f"{run.label}: two runs with one seed differ: {first} != {again}"


def check_pretrain(name: MethodRef) -> None:
    run = reference_run(name)
    stages = run.trainer.stages
    if "pretrain" not in stages:
        return
    assert stages[0] == "pretrain", f"{run.label}: the pretrain stage must come first, stages are {tuple(stages)}"
    assert torch.isfinite(torch.as_tensor(run.outputs[0]["loss"])), f"{run.label}: pretrain step is not finite"


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


NOT_IMPORTABLE = 3  # the autocast probe's exit code for a class a new process cannot import


def _stage_trainer(cls: type[SSLMethod], index: int) -> Trainer:
    """The kit's tiny trainer, in stage ``index`` with that stage's optimisers."""
    trainer = build(cls)
    trainer.stage_index = index
    trainer.optimizer, trainer.extra = trainer.make_optimizers()
    return trainer


def autocast_steps(*classes: type[SSLMethod],
                   make: Callable[[type[SSLMethod], int], Trainer] = _stage_trainer) -> None:
    """Check 10 in this process: a step of every stage of every class under bf16 autocast, then the
    same in fp32 (bf16 first, so what a method caches on first use, even a table several methods
    share, is built under autocast). ``make``: the trainer of a class in a stage (default the kit's
    tiny one on the current track; the 3-D tests pass one of the 3-D phantom's settings)."""
    for precision in ("under bf16 autocast", "in fp32 after it"):
        for cls, index, stage in [(c, i, s) for c in classes for i, s in enumerate(c.stages)]:
            label = method_label(cls)
            trainer = make(cls, index)
            try:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "under bf16 autocast"):
                    out = trainer.train_step()
            except RuntimeError as exc:  # a dtype clash: one precision's tensor met the other's
                raise AssertionError(f"{label} [stage '{stage}']: the step fails {precision}: {exc}") from exc
            for key, value in out.items():
                value = torch.as_tensor(value).float()
                assert torch.isfinite(value).all(), \
                    f"{label} [stage '{stage}']: '{key}' is not finite {precision} ({float(value)})"


def check_autocast(name: MethodRef) -> None:
    """Check 10 in a fresh process (``sslbench.train.autocast_probe``): in this one the other checks ran
    in fp32 first, and a table they cached would hide a clash. A class a new process cannot import
    (defined in a function or in ``__main__``) is checked here."""
    cls = resolve_method(name)
    if cls.__module__ != "__main__" and "<locals>" not in cls.__qualname__:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        done = subprocess.run([sys.executable, "-m", "sslbench.train.autocast_probe",
                               *(["--3d"] if current_track() == 3 else []), f"{cls.__module__}:{cls.__qualname__}"],
                              capture_output=True, text=True, env=env, check=False, timeout=1800)
        if done.returncode == 0:
            return
        if done.returncode != NOT_IMPORTABLE:
            lines = done.stderr.strip().splitlines()
            raise AssertionError(lines[-1] if lines else f"the autocast check's process exited with {done.returncode}")
    autocast_steps(cls)


CHECKS: dict[str, Callable[[MethodRef], None]] = {
    "losses": check_losses, "gradients": check_gradients, "predict": check_predict,
    "resume": check_resume, "determinism": check_determinism, "pretrain": check_pretrain,
    "eval-nets": check_eval_nets, "teachers": check_teachers, "validated": check_validated,
    "autocast": check_autocast,
}
WHAT = {
    "losses": "two steps return finite scalar terms, at least one '*loss*'",
    "gradients": "every '*loss*' term of every stage sends gradient to the trained networks (ramps at full "
                 "strength; settings from conformance_config)",
    "predict": "predict gives (B, K, H, W) logits (a crop's: (B, K, D, H, W)) and changes no train/eval flag or state",
    "resume": "a checkpoint round trip reproduces the next step exactly",
    "determinism": "a second run with one seed gives the same losses (CPU)",
    "pretrain": "a 'pretrain' stage, if any, comes first (the first stage of any name is the losses check's)",
    "eval-nets": "in every stage, for every eval_net choice, inference_net() is the network stage_nets / "
                 "eval_nets declare",
    "teachers": "every frozen layer (requires_grad False: EMA teacher, momentum encoder) changes in some stage",
    "validated": "the network validated in each carry_best_of stage and in the last trains in that stage",
    "autocast": "every stage's step runs under bf16 autocast (CUDA's quick profile) with finite losses, then in "
                "fp32 (a fresh process: bf16 first)",
}


def _line(dims: int, check: str) -> str:
    return f"ok  {check:<12} {WHAT[check]}" if dims == 2 else f"ok  {check:<12} in 3-D: {WHAT[check]}"


def check_method(name: MethodRef, plugins: Sequence[str] | str = (),
                 report: Callable[[str], None] | None = print) -> None:
    """Run every check of the contract on a tiny network, on each track the method runs on (2-D, and
    3-D where its ``dims`` holds 3); raises AssertionError naming the first that fails, and says what
    passed (``report=None``: silent). ``plugins``: modules that register the method (imported first,
    as ``$BENCH_PLUGINS``)."""
    if plugins is None or callable(plugins):  # the former signature check_method(name, report)
        plugins, report = (), plugins  # type: ignore[assignment]
    cls = resolve_method(name, plugins)
    try:
        on = method_dims(cls)  # each track the method runs on; a malformed dims: ConfigError
    except BenchError as exc:
        raise AssertionError(f"conformance check 'dims' failed: {exc}") from exc
    for dims in on:
        with track(dims):
            for check, fn in CHECKS.items():
                try:
                    fn(cls)
                except AssertionError as exc:
                    where = "" if dims == 2 else " in 3-D"
                    raise AssertionError(f"conformance check '{check}'{where} failed: {exc}") from exc
                if report is not None:
                    report(_line(dims, check))
    if report is not None:
        report(_passed(name, cls))


def _passed(name: MethodRef, cls: type[SSLMethod]) -> str:
    dims = method_dims(cls)
    where = "" if dims == (2,) else " (" + ", ".join(f"{len(CHECKS)} in {d}-D" for d in dims) + ")"
    return f"{method_label(name)}: all {len(CHECKS) * len(dims)} conformance checks passed{where}"


def run_checks(name: MethodRef, plugins: Sequence[str] | str = (), report: Callable[[str], None] = print) -> bool:
    """``bench check``: the checks one by one, on each track the method runs on, an ``ok  <check>
    <what>`` line for each that passed (``in 3-D:`` on the 3-D track); at the first failure one line
    ``FAILED <check>: <message>`` (no traceback) and False; True when all passed. A method that cannot
    be found or loaded is ``FAILED load: ...``."""
    try:
        cls = resolve_method(name, plugins)
    except BenchError as exc:
        report(f"FAILED load: {exc}")
        return False
    try:
        on = method_dims(cls)  # each track the method runs on; a malformed dims: ConfigError
    except BenchError as exc:
        report(f"FAILED dims: {exc}")
        return False
    for dims in on:
        with track(dims):
            for check, fn in CHECKS.items():
                failed = f"FAILED {check}" + ("" if dims == 2 else " in 3-D")
                try:
                    fn(cls)
                except AssertionError as exc:
                    report(f"{failed}: {exc}")
                    return False
                except BenchError as exc:  # the suite's own refusal (a bad stage length, a bad setting): its line says it all
                    report(f"{failed}: {exc}")
                    return False
                except Exception as exc:  # noqa: BLE001 - a plugin's own error is a failed check, said in one line
                    frame = traceback.extract_tb(exc.__traceback__)[-1]
                    report(f"{failed}: {type(exc).__name__}: {exc} (raised at {frame.filename}:{frame.lineno} in "
                           f"{frame.name})")
                    return False
                report(_line(dims, check))
    report(_passed(name, cls))
    return True
