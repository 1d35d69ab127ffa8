"""The plugin surface is public and complete: the built-in methods (plugins too) import only the four
public modules ``sslbench.method``, ``sslbench.nn``, ``sslbench.data``, ``sslbench.testing`` and their
own package, every name they take from those is in the module's ``__all__``, and every ``__all__``
name imports. Plus the two helpers plugin authors asked for: the consistency ramp with an explicit
length and ``EMATeacher.reset_to``."""
from __future__ import annotations

import ast
import importlib
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from sslbench.method import StepInfo
from sslbench.nn import EMATeacher, build_unet

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = ("sslbench.method", "sslbench.nn", "sslbench.data", "sslbench.testing")
OWN = "sslbench.methods"


def _method_imports() -> list[tuple[str, int, str, list[str]]]:
    """(file, line, absolute module, imported names) of every ``sslbench`` import under methods/, at
    any depth of the module (function-level imports too); relative imports are left out (their own
    package). ``import X`` gives no names."""
    found = []
    for path in sorted((ROOT / "methods").rglob("*.py")):
        where = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text(), where)):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module == "sslbench":                # from sslbench import nn: the module sslbench.nn
                    found += [(where, node.lineno, f"sslbench.{a.name}", []) for a in node.names]
                elif node.module.startswith("sslbench."):
                    found.append((where, node.lineno, node.module, [a.name for a in node.names]))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == "sslbench" or alias.name.startswith("sslbench."):
                        found.append((where, node.lineno, alias.name, []))
    return found


def _allowed(module: str) -> bool:
    return module in PUBLIC or module == OWN or module.startswith(OWN + ".")


def test_the_walker_sees_the_imports() -> None:
    imports = _method_imports()
    assert any(m == "sslbench.method" for _, _, m, _ in imports)
    assert any(m == "sslbench.nn" for _, _, m, _ in imports)
    assert any(m.startswith(OWN + ".") for _, _, m, _ in imports)   # abd -> bcp, glcon -> contrastive


def test_methods_import_only_the_public_modules() -> None:
    private = [f"{where}:{line}: {module}" for where, line, module, _ in _method_imports() if not _allowed(module)]
    assert not private, "methods/ imports private modules (use sslbench.method / sslbench.nn):\n" + "\n".join(private)


def test_every_name_methods_take_from_a_public_module_is_in_its_all() -> None:
    missing = []
    for where, line, module, names in _method_imports():
        if module not in PUBLIC:
            continue
        public = importlib.import_module(module).__all__
        missing += [f"{where}:{line}: {module}.{n}" for n in names if n not in public]
    assert not missing, "names not in __all__:\n" + "\n".join(missing)


@pytest.mark.parametrize("module", PUBLIC)
def test_every_name_in_all_imports(module: str) -> None:
    mod = importlib.import_module(module)
    assert isinstance(mod.__all__, list) and mod.__all__, f"{module} has no __all__"
    assert len(set(mod.__all__)) == len(mod.__all__), f"{module}.__all__ lists a name twice"
    absent = [n for n in mod.__all__ if not hasattr(mod, n)]
    assert not absent, f"{module}.__all__ names what it does not define: {absent}"


def test_the_contract_exports_range_and_config_error() -> None:
    from sslbench.base.errors import ConfigError
    from sslbench.base.ranges import Range
    from sslbench.method import ConfigError as PublicConfigError
    from sslbench.method import Range as PublicRange
    assert PublicRange is Range and PublicConfigError is ConfigError


def test_nn_exports_every_public_loss_and_the_ramps() -> None:
    import sslbench.nn as public
    from sslbench.nn import losses
    defined = [n for n, v in vars(losses).items()
               if callable(v) and not n.startswith("_") and getattr(v, "__module__", "") == losses.__name__]
    assert defined and not [n for n in defined if n not in public.__all__]
    for name in ("sigmoid_rampup", "ssl4mis_consistency_weight", "color_jitter", "gaussian_blur", "uniform",
                 "keep_largest_per_class", "random_boxes"):
        assert name in public.__all__, name


# ------------------------------------------------------------------ the ramp with an explicit length
def _ramp(weight: float, t: float) -> float:
    return weight * math.exp(-5.0 * (1.0 - t) ** 2)


@pytest.mark.parametrize(("iteration", "t"), [(0, 0.0), (25, 0.25), (50, 0.5), (99, 0.99), (100, 1.0), (250, 1.0)])
def test_consistency_weight_with_an_explicit_ramp_length_is_continuous(iteration: int, t: float) -> None:
    step = StepInfo("train", iteration, 1000)
    assert step.consistency_weight(0.1, ramp_length=100) == pytest.approx(_ramp(0.1, t), rel=1e-12, abs=1e-15)


def test_explicit_ramp_length_values_by_hand() -> None:
    # weight 0.1, L = 100, iteration 50: t = 0.5, 0.1 * exp(-5 * 0.25) = 0.1 * exp(-1.25)
    assert StepInfo("train", 50, 1000).consistency_weight(0.1, ramp_length=100) == pytest.approx(0.028650479686019)
    # no quantum: iteration 51 is t = 0.51 (the default ramp at total 1000 moves every 5 iterations)
    a = StepInfo("train", 51, 1000).consistency_weight(0.1, ramp_length=100)
    assert a == pytest.approx(0.1 * math.exp(-5 * 0.49 ** 2)) and a != pytest.approx(0.1 * math.exp(-1.25))
    # the ramp is independent of the stage length, and full from L on
    assert StepInfo("train", 50, 60).consistency_weight(0.1, ramp_length=100) == pytest.approx(0.1 * math.exp(-1.25))
    assert StepInfo("train", 100, 100_000).consistency_weight(0.1, ramp_length=100) == 0.1
    assert StepInfo("train", 3, 10).consistency_weight(0.4, ramp_length=0) == 0.4          # no ramp
    with pytest.raises(ValueError, match="ramp_length"):
        StepInfo("train", 3, 10).consistency_weight(0.4, ramp_length=-1)


def test_explicit_ramp_length_keeps_warm_up_and_force_ramps() -> None:
    assert StepInfo("train", 5, 100).consistency_weight(0.1, start_fraction=0.1, ramp_length=20) == 0.0
    assert StepInfo("train", 10, 100).consistency_weight(0.1, start_fraction=0.1, ramp_length=20) == pytest.approx(
        _ramp(0.1, 0.5))
    assert StepInfo("train", 0, 100, force_ramps=True).consistency_weight(0.1, ramp_length=20) == 0.1


@pytest.mark.parametrize(("iteration", "total"), [(0, 30000), (149, 30000), (150, 30000), (15000, 30000),
                                                  (29999, 30000), (7, 1000), (999, 1000), (42, 60)])
def test_the_default_ramp_is_the_quantised_ssl4mis_one(iteration: int, total: int) -> None:
    quantum = max(total // 200, 1)
    t = min((iteration // quantum) / 200, 1.0)
    got = StepInfo("train", iteration, total).consistency_weight(0.1)
    assert got == StepInfo("train", iteration, total).consistency_weight(0.1, ramp_length=None)
    assert got == pytest.approx(_ramp(0.1, t), rel=1e-12, abs=1e-15)


def test_progress() -> None:
    assert StepInfo("train", 25, 100).progress() == 0.25
    assert StepInfo("train", 0, 0).progress() == 0.0
    assert StepInfo("train", 0, 100, force_ramps=True).progress() == 1.0


# ------------------------------------------------------------------ EMATeacher.reset_to
def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))


def test_reset_to_copies_weights_and_buffers_and_keeps_the_teacher_frozen() -> None:
    torch.manual_seed(0)
    student = _net()
    teacher = EMATeacher(student, 0.99, buffers=True)
    params_before = [id(p) for p in teacher.module.parameters()]
    with torch.no_grad():                                # the student moves on: weights and BN statistics
        for p in student.parameters():
            p.add_(torch.randn_like(p))
        student(torch.randn(3, 1, 8, 8))
        student(torch.randn(3, 1, 8, 8))
    assert not all(torch.equal(a, b) for a, b in zip(teacher.module.parameters(), student.parameters()))
    teacher.reset_to(student)
    for (name, t), s in zip(teacher.module.state_dict().items(), student.state_dict().values()):
        assert torch.equal(t, s), name
    assert int(teacher.module[1].num_batches_tracked) == 2
    assert all(not p.requires_grad for p in teacher.module.parameters())
    assert [id(p) for p in teacher.module.parameters()] == params_before      # in place
    assert all(p.requires_grad for p in student.parameters())
    with torch.no_grad():                                # a copy, not a share
        next(student.parameters()).add_(1.0)
    assert not torch.equal(next(teacher.module.parameters()), next(student.parameters()))


def test_reset_to_on_the_shared_unet() -> None:
    torch.manual_seed(1)
    student = build_unet(1, 3, 4)
    teacher = EMATeacher(student)
    with torch.no_grad():
        for p in student.parameters():
            p.mul_(0.5)
    teacher.reset_to(student)
    assert all(torch.equal(a, b) for a, b in zip(teacher.module.parameters(), student.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(teacher.module.buffers(), student.buffers()))
    assert not any(p.requires_grad for p in teacher.parameters())
