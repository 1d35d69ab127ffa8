"""Every registered method passes the conformance kit (ANCHORS.md 1.6.4), and the kit can fail."""
from __future__ import annotations

import pytest
import torch

from sslbench.nn.losses import ce_dice_loss, softmax_mse
from sslbench.method import METHODS, Batch, Losses, StepInfo
from sslbench.methods.mean_teacher import MeanTeacher
from sslbench.testing import CHECKS, check_gradients

NAMES = METHODS.names()


@pytest.mark.parametrize("check", [c for c in CHECKS if c != "autocast"])
@pytest.mark.parametrize("name", NAMES)
def test_conformance(name: str, check: str) -> None:
    CHECKS[check](name)


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
