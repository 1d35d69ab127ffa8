"""The conformance kit fails the broken methods two outside authors met, and says what to do.

Small sample plugins, written against the public API (``sslbench.method``, ``sslbench.nn``): an MT-like
method and a two-stage method evaluated through its teacher. Each mutation breaks one contract and
must fail its check, with a message that names the fix; the unmutated samples pass every check.
Plugins are found through ``plugins=`` / ``$BENCH_PLUGINS``, and ``run_checks`` reports in lines.
"""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from sslbench.base.errors import RegistryError
from sslbench.method import METHODS, Batch, Losses, MethodContext, SSLMethod, StepInfo, TeacherConfig
from sslbench.methods.bcp import BCP
from sslbench.nn import ce_dice_loss, softmax_mse
from sslbench.testing import (
    CHECKS,
    check_eval_nets,
    check_gradients,
    check_method,
    check_teachers,
    check_validated,
    run_checks,
)


# ------------------------------------------------------------------ the sample plugins
class SampleMT(SSLMethod[TeacherConfig]):
    """A mean teacher: supervised loss plus the MSE to an EMA teacher on the unlabeled slices."""

    name = "sample-mt"

    def __init__(self, cfg: TeacherConfig, ctx: MethodContext) -> None:
        super().__init__(cfg, ctx)
        self.teacher = self.make_teacher()

    def training_step(self, batch: Batch, step: StepInfo) -> Losses:
        assert batch.x_u is not None
        logits = self.student(batch.joint())
        with torch.no_grad():
            target = torch.softmax(self.teacher(batch.x_u), dim=1)
        weight = step.consistency_weight(self.cfg.consistency)
        return {"loss_sup": ce_dice_loss(logits[:batch.n_l], batch.y_l),
                "loss_cons": weight * softmax_mse(logits[batch.n_l:], target)}

    def after_step(self, step: StepInfo, outputs: Losses) -> None:
        self.teacher.update(self.student, step.iteration)


class SampleTwoStage(SampleMT):
    """A supervised pre-training of the student (validated, its best carried: BCP's recipe), then a
    mean teacher started from it; the teacher is the evaluated network."""

    name = "sample-two-stage"
    stages = ("pretrain", "train")
    carry_best_of = ("pretrain",)
    eval_nets: ClassVar[dict[str, str]] = {"teacher": "teacher.module", "student": "student"}
    stage_nets: ClassVar[dict[str, str]] = {"pretrain": "student"}  # the teacher only moves in stage 2

    def training_step(self, batch: Batch, step: StepInfo) -> Losses:
        if step.stage == "pretrain":
            return {"loss_sup": ce_dice_loss(self.student(batch.x_l), batch.y_l)}
        return super().training_step(batch, step)

    def start_stage(self, stage: str) -> None:
        self.teacher.module.load_state_dict(self.student.state_dict())

    def after_step(self, step: StepInfo, outputs: Losses) -> None:
        if step.stage == "train":
            super().after_step(step, outputs)


# ------------------------------------------------------------------ the mutations
class FrozenTeacher(SampleMT):
    """(a) after_step forgets the EMA update: the teacher never moves."""

    name = "frozen-teacher"

    def after_step(self, step: StepInfo, outputs: Losses) -> None:
        pass


class NoStageNets(SampleTwoStage):
    """(b) no stage_nets: the untrained teacher is validated and carried out of the pre-training."""

    name = "no-stage-nets"
    stage_nets: ClassVar[dict[str, str]] = {}


class BCPByTeacher(BCP):
    """(b) on a built-in: BCP evaluated through its teacher, without stage_nets."""

    name = "bcp-by-teacher"
    eval_nets: ClassVar[dict[str, str]] = {"teacher": "teacher.module", "student": "student"}


class BCPByTeacherDeclared(BCPByTeacher):
    name = "bcp-by-teacher-declared"
    stage_nets: ClassVar[dict[str, str]] = {"pretrain": "student"}


class OverriddenInferenceNet(SampleTwoStage):
    """(c) the evaluated network changes between stages through an override, not a declaration."""

    name = "overridden-inference-net"
    stage_nets: ClassVar[dict[str, str]] = {}

    def inference_net(self) -> torch.nn.Module:
        return self.student if self.current_stage == "pretrain" else self.teacher.module


class MisspelledStageNets(SampleTwoStage):
    name = "misspelled-stage-nets"
    stage_nets: ClassVar[dict[str, str]] = {"pre-train": "student"}


class ZeroConsistency(SampleMT):
    """(d) a term multiplied by 0: it sends no gradient."""

    name = "zero-consistency"

    def training_step(self, batch: Batch, step: StepInfo) -> Losses:
        out = super().training_step(batch, step)
        return {**out, "loss_cons": 0 * out["loss_cons"]}


class CachedUnderAutocast(SampleMT):
    """A table cached on first use with no regard to precision: built in bf16 under autocast, it then
    meets an fp32 step (MONA's pooling table once did this on a GPU)."""

    name = "cached-under-autocast"
    table: ClassVar[dict[int, torch.Tensor]] = {}

    def training_step(self, batch: Batch, step: StepInfo) -> Losses:
        n = batch.x_l.shape[-1]
        if n not in self.table:
            self.table[n] = torch.eye(n) @ torch.eye(n)          # bf16 when first made under autocast
        out = super().training_step(batch, step)
        return {**out, "loss_sup": out["loss_sup"] + 0.0 * (batch.x_l @ self.table[n]).mean()}


class RaisingStep(SampleMT):
    name = "raising-step"

    def training_step(self, batch: Batch, step: StepInfo) -> Losses:
        raise ValueError("boom in the plugin")


# ------------------------------------------------------------------ (a)-(d): each fails its check
def test_a_teacher_that_never_moves_fails_the_teachers_check() -> None:
    with pytest.raises(AssertionError) as err:
        check_teachers(FrozenTeacher)
    message = str(err.value)
    assert "'teacher.module' is frozen" in message
    assert "after_step" in message and "self.teacher.update(self.student, step.iteration)" in message


@pytest.mark.parametrize("cls", [NoStageNets, BCPByTeacher], ids=["sample", "bcp"])
def test_a_pretraining_that_validates_an_untrained_teacher_fails(cls: type[SSLMethod]) -> None:
    check_eval_nets(cls)    # what it declares is what it evaluates ...
    check_teachers(cls)     # ... and its teacher moves in stage 2: only the pre-training is wrong
    with pytest.raises(AssertionError) as err:
        check_validated(cls)
    message = str(err.value)
    assert "[stage 'pretrain']" in message and "'teacher.module'" in message and "carry_best_of" in message
    assert "stage_nets = {'pretrain': '<attribute path of the network that trains>'}" in message
    assert "(here 'student' trains)" in message


@pytest.mark.parametrize("cls", [SampleTwoStage, BCPByTeacherDeclared], ids=["sample", "bcp"])
def test_declaring_stage_nets_passes(cls: type[SSLMethod]) -> None:
    for check in ("eval-nets", "teachers", "validated"):
        CHECKS[check](cls)


def test_an_inference_net_override_fails_the_eval_nets_check() -> None:
    with pytest.raises(AssertionError) as err:
        check_eval_nets(OverriddenInferenceNet)
    message = str(err.value)
    assert "[stage 'pretrain', eval_net 'teacher'] inference_net() gives 'student', not 'teacher.module'" in message
    assert "[stage 'train', eval_net 'student'] inference_net() gives 'teacher.module', not 'student'" in message
    assert "declare stage_nets" in message and "rather than override inference_net" in message


def test_a_stage_nets_key_that_is_no_stage_fails_the_eval_nets_check() -> None:
    with pytest.raises(AssertionError, match="stage_nets names 'pre-train', which is not a stage"):
        check_eval_nets(MisspelledStageNets)


def test_a_zero_term_fails_the_gradient_check_pointing_to_conformance_config() -> None:
    with pytest.raises(AssertionError) as err:
        check_gradients(ZeroConsistency)
    message = str(err.value)
    assert "[stage 'train']" in message and "'loss_cons' sends zero gradient" in message
    assert "conformance_config" in message


@pytest.mark.parametrize(("cls", "check", "words"), [
    (FrozenTeacher, "teachers", "self.teacher.update(self.student, step.iteration)"),
    (NoStageNets, "validated", "stage_nets = {'pretrain'"),
    (OverriddenInferenceNet, "eval-nets", "rather than override inference_net"),
    (ZeroConsistency, "gradients", "conformance_config"),
], ids=["frozen-teacher", "no-stage-nets", "inference-net-override", "zero-term"])
def test_run_checks_names_the_first_failed_check_in_one_line(cls: type[SSLMethod], check: str, words: str) -> None:
    lines: list[str] = []
    assert run_checks(cls, report=lines.append) is False
    order = list(CHECKS)
    assert lines[:-1] == [line for line in lines[:-1] if line.startswith("ok  ")]
    assert [line.split()[1] for line in lines[:-1]] == order[:order.index(check)]
    assert lines[-1].startswith(f"FAILED {check}: ") and words in lines[-1]
    assert "\n" not in lines[-1] and "Traceback" not in lines[-1]


def test_a_table_cached_under_autocast_fails_the_autocast_check_after_the_others() -> None:
    """The whole kit in one process, as bench check runs it: the fp32 checks before it fill the table
    in fp32, so the autocast check runs in a fresh process, where bf16 comes first."""
    lines: list[str] = []
    assert run_checks(CachedUnderAutocast, report=lines.append) is False
    assert CachedUnderAutocast.table                              # filled in fp32 by the earlier checks
    assert lines[-1].startswith("FAILED autocast: ") and lines[:-1] == [l for l in lines[:-1] if l.startswith("ok  ")]
    assert "[stage 'train']: the step fails in fp32 after it" in lines[-1] and "BFloat16" in lines[-1]
    assert run_checks(SampleMT, report=lines.append) is True      # the unmutated sample passes


def test_a_class_no_new_process_can_import_is_checked_in_this_one() -> None:
    class FailsUnderAutocast(SampleMT):             # defined in a function: "<locals>" in its name
        name = "fails-under-autocast"

        def training_step(self, batch: Batch, step: StepInfo) -> Losses:
            if torch.is_autocast_enabled("cpu"):
                raise RuntimeError("expected scalar type Float but found BFloat16")
            return super().training_step(batch, step)

    with pytest.raises(AssertionError, match="the step fails under bf16 autocast: expected scalar type Float"):
        CHECKS["autocast"](FailsUnderAutocast)


def test_a_plugin_error_is_one_failed_line_with_its_place() -> None:
    lines: list[str] = []
    assert run_checks(RaisingStep, report=lines.append) is False
    assert lines == [lines[0]] and lines[0].startswith("FAILED losses: ValueError: boom in the plugin (raised at ")
    assert "test_conformance_mutations.py" in lines[0] and "in training_step)" in lines[0]


def test_check_method_names_the_failed_check() -> None:
    with pytest.raises(AssertionError, match="conformance check 'teachers' failed: frozen-teacher: 'teacher.module'"):
        check_method(FrozenTeacher, report=None)


# ------------------------------------------------------------------ (e): the unmutated samples pass
@pytest.mark.parametrize("cls", [SampleMT, SampleTwoStage], ids=["mt", "two-stage"])
def test_the_sample_plugins_pass_every_check(cls: type[SSLMethod]) -> None:
    lines: list[str] = []
    assert run_checks(cls, report=lines.append) is True
    assert [line.split()[1] for line in lines[:-1]] == list(CHECKS)
    assert lines[-1] == f"{cls.name}: all {len(CHECKS)} conformance checks passed"


# ------------------------------------------------------------------ plugins by module name
PLUGIN = '''
from sslbench.method import register_method
from sslbench.methods.supervised import UNetL


@register_method("{name}")
class Sample(UNetL):
    paper_name = "Sample"
'''


@pytest.fixture()
def plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Write a plugin module registering ``name``; its registration and import are undone after the test."""
    made: list[tuple[str, str]] = []
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(module: str, name: str) -> str:
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(PLUGIN.format(name=name)))
        made.append((module, name))
        return module

    yield make
    for module, name in made:
        METHODS._entries.pop(name, None)
        sys.modules.pop(module, None)


def test_check_method_loads_the_plugin_modules_it_is_given(plugin_module) -> None:  # type: ignore[no-untyped-def]
    module = plugin_module("conformance_sample_plugin", "conformance-sample")
    assert "conformance-sample" not in METHODS
    lines: list[str] = []
    check_method("conformance-sample", plugins=[module], report=lines.append)
    assert lines[-1] == f"conformance-sample: all {2 * len(CHECKS)} conformance checks passed (10 in 2-D, 10 in 3-D)"  # UNet-L's dims


def test_run_checks_loads_bench_plugins(plugin_module, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("BENCH_PLUGINS", plugin_module("conformance_env_plugin", "conformance-env"))
    lines: list[str] = []
    assert run_checks("conformance-env", report=lines.append) is True
    assert lines[-1] == f"conformance-env: all {2 * len(CHECKS)} conformance checks passed (10 in 2-D, 10 in 3-D)"  # UNet-L's dims


def test_an_unknown_name_says_how_to_pass_the_plugin() -> None:
    with pytest.raises(RegistryError) as err:
        check_method("no-such-method", report=None)
    assert "--plugin MODULE" in str(err.value) and "BENCH_PLUGINS=MODULE" in str(err.value)
    lines: list[str] = []
    assert run_checks("no-such-method", report=lines.append) is False
    assert len(lines) == 1 and lines[0].startswith("FAILED load: unknown method 'no-such-method'")
    assert "--plugin MODULE" in lines[0]
    lines.clear()
    assert run_checks("x", plugins=["no_such_module_anywhere"], report=lines.append) is False
    assert lines[0].startswith("FAILED load: cannot import plugin module 'no_such_module_anywhere'")
