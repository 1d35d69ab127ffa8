"""Every registered method passes the conformance kit (ANCHORS.md 1.6.4), and the kit can fail."""
from __future__ import annotations

import pytest
import torch

from sslbench.nn.losses import ce_dice_loss, softmax_mse
from sslbench.method import METHODS, Batch, Losses, StepInfo
from sslbench.methods.mean_teacher import MeanTeacher
from sslbench.testing import CHECKS, check_gradients, check_method, run_checks, track

NAMES = METHODS.names()
NAMES_3D = [n for n in NAMES if 3 in METHODS.get(n).dims]  # the methods of the 3-D track (LA, VNet)


@pytest.mark.parametrize("check", [c for c in CHECKS if c != "autocast"])
@pytest.mark.parametrize("name", NAMES)
def test_conformance(name: str, check: str) -> None:
    CHECKS[check](name)


@pytest.mark.parametrize("check", [c for c in CHECKS if c != "autocast"])
@pytest.mark.parametrize("name", NAMES_3D)
def test_conformance_in_3d(name: str, check: str) -> None:
    with track(3):
        CHECKS[check](name)


def test_the_3d_track_is_checked_for_the_methods_of_its_docs_table() -> None:
    assert sorted(NAMES_3D) == ["bcp", "cps", "mt", "uamt", "unet-f", "unet-l"]


def test_every_3d_method_under_autocast_in_one_fresh_process() -> None:
    """Check 10 on the 3-D track (``--3d``) for every method of it, in one new process."""
    import subprocess
    import sys

    refs = [f"{METHODS.get(n).__module__}:{METHODS.get(n).__qualname__}" for n in NAMES_3D]
    done = subprocess.run([sys.executable, "-m", "sslbench.train.autocast_probe", "--3d", *refs], capture_output=True,
                          text=True, timeout=1800, check=False)
    assert done.returncode == 0, done.stderr[-3000:]


def test_every_method_under_autocast_in_one_fresh_process() -> None:
    """Check 10 for every registered method at once, in one new process (as ``bench check`` runs it for
    one): every stage's bf16 step first, then the fp32 ones, so a table any method caches is built
    under autocast before any fp32 step meets it (MONA's and the fine-tuned frameworks' share one)."""
    import subprocess
    import sys

    refs = [f"{METHODS.get(n).__module__}:{METHODS.get(n).__qualname__}" for n in NAMES]
    done = subprocess.run([sys.executable, "-m", "sslbench.train.autocast_probe", *refs], capture_output=True,
                          text=True, timeout=1800, check=False)
    assert done.returncode == 0, done.stderr[-3000:]


class DeadConsistencyMT(MeanTeacher):
    """USB's mean-teacher bug: the consistency compares two teacher outputs, so it has no gradient."""

    name = "dead-mt"

    def training_step(self, batch: Batch, step: StepInfo) -> Losses:
        with torch.no_grad():
            t = torch.softmax(self.teacher(batch.x_u), dim=1)
            t_logits = self.teacher(batch.x_u)
        cons = softmax_mse(t_logits, t).requires_grad_()
        return {"loss_sup": ce_dice_loss(self.student(batch.x_l), batch.y_l), "loss_cons": cons}


def test_gradient_check_catches_a_dead_loss() -> None:
    with pytest.raises(AssertionError, match="loss_cons"):
        check_gradients(DeadConsistencyMT)


class DeadIn3D(MeanTeacher):
    """Right on slices, but in 3-D its consistency is cut from the graph: only the 3-D track sees it."""

    name = "dead-in-3d"

    def training_step(self, batch: Batch, step: StepInfo) -> Losses:
        out = super().training_step(batch, step)
        if self.ctx.dims == 3:
            out["loss_cons"] = out["loss_cons"].detach()
        return out


class FlatIn3D(MeanTeacher):
    """predict drops the depth axis of a 3-D crop (a 2-D habit): the 3-D predict check catches it."""

    name = "flat-in-3d"

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        out = super().predict(x)
        return out[:, :, out.shape[2] // 2] if out.dim() == 5 else out


def test_a_defect_of_the_3d_path_alone_fails_the_3d_track(monkeypatch: pytest.MonkeyPatch) -> None:
    few = few_checks(monkeypatch, "losses", "gradients", "predict")
    lines: list[str] = []
    assert run_checks(DeadIn3D, report=lines.append) is False
    assert len(lines) == len(few) + 2  # every 2-D check, the 3-D losses check, then the failure
    assert all(line.startswith("ok ") and " in 3-D: " not in line for line in lines[:len(few)])
    assert lines[len(few)].startswith("ok  losses       in 3-D: ")
    assert lines[-1].startswith("FAILED gradients in 3-D: dead-in-3d [stage 'train']: 'loss_cons' carries no gradient")
    with pytest.raises(AssertionError, match="conformance check 'predict' in 3-D failed: flat-in-3d: predict "
                                             r"shape \(2, 2, 32, 32\), expected \(2, 2, 16, 32, 32\)"):
        check_method(FlatIn3D, report=None)


def few_checks(monkeypatch: pytest.MonkeyPatch, *names: str) -> dict:  # type: ignore[type-arg]
    """Some of the checks (default: losses and predict), where what a test reads is the tracks and the
    lines around them (every check on both tracks: ``test_check_method_says_what_it_checked``)."""
    from sslbench.train import conformance

    few = {k: conformance.CHECKS[k] for k in names or ("losses", "predict")}
    monkeypatch.setattr(conformance, "CHECKS", few)
    return few


def test_a_method_of_one_track_is_checked_on_that_track_only(monkeypatch: pytest.MonkeyPatch) -> None:
    class Only3D(MeanTeacher):
        name = "only-3d"
        dims = (3,)

    few = few_checks(monkeypatch)
    lines: list[str] = []
    assert run_checks(Only3D, report=lines.append) is True
    assert len(lines) == len(few) + 1 and all(" in 3-D: " in line for line in lines[:-1])
    assert lines[-1] == f"only-3d: all {len(few)} conformance checks passed ({len(few)} in 3-D)"
    lines.clear()
    check_method(MeanTeacher, report=lines.append)  # both tracks, 2-D first
    assert [" in 3-D: " in line for line in lines[:-1]] == [False] * len(few) + [True] * len(few)
    assert lines[-1] == f"mt: all {2 * len(few)} conformance checks passed ({len(few)} in 2-D, {len(few)} in 3-D)"


class ClashIn3D(MeanTeacher):
    """Its 3-D step fails under autocast (as a dtype clash would): only the 3-D autocast check, run in a
    fresh process with ``--3d``, sees it."""

    name = "clash-in-3d"

    def training_step(self, batch: Batch, step: StepInfo) -> Losses:
        if self.ctx.dims == 3 and torch.is_autocast_enabled("cpu"):
            raise RuntimeError("expected scalar type BFloat16 but found Float")
        return super().training_step(batch, step)


def test_the_autocast_check_runs_the_3d_track_in_its_fresh_process() -> None:
    from sslbench.testing import check_autocast

    check_autocast(ClashIn3D)  # 2-D: passes
    with track(3), pytest.raises(AssertionError, match=r"clash-in-3d \[stage 'train'\]: the step fails under bf16 "
                                                       "autocast"):
        check_autocast(ClashIn3D)


def test_each_track_keeps_its_own_shared_runs() -> None:
    from sslbench.nn.unet import UNet
    from sslbench.nn.vnet import VNet
    from sslbench.train.kit_runs import current_track, reference_run, trajectory

    for dims, net in ((2, UNet), (3, VNet), (2, UNet)):
        with track(dims):
            assert isinstance(reference_run("mt").trainer.method.student, net)
            assert trajectory("mt").label == "mt" and current_track() == dims


@pytest.mark.parametrize("dims", [3, (), (2, 4), [True], "23"], ids=["int", "empty", "four", "bool", "str"])
def test_a_malformed_dims_is_one_failed_line(dims: object) -> None:
    class BadDims(MeanTeacher):
        name = "bad-dims"

    BadDims.dims = dims  # type: ignore[assignment]
    lines: list[str] = []
    assert run_checks(BadDims, report=lines.append) is False
    assert lines == [f"FAILED dims: method 'bad-dims': dims must be a tuple of the tracks it runs on, (2,), (3,) or "
                     f"(2, 3), not {dims!r}"]
    with pytest.raises(AssertionError, match="conformance check 'dims' failed: method 'bad-dims': dims must be"):
        check_method(BadDims, report=None)


def test_the_summary_names_the_tracks_whatever_track_the_caller_is_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from sslbench.methods.abd import ABD

    few = few_checks(monkeypatch)
    lines: list[str] = []
    with track(3):
        assert run_checks(ABD, report=lines.append) is True
    assert lines[-1] == f"abd: all {len(few)} conformance checks passed"
    assert len(lines) == len(few) + 1 and not any(" in 3-D: " in line for line in lines)
