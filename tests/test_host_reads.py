"""No training step reads a value back from the device, checked on the CPU (``sslbench.train.host_reads``):
the GPU tests see the same with CUDA's sync debug mode, but only where a GPU is lent."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sslbench.method import METHODS
from sslbench.testing import build
from sslbench.train.host_reads import HostReads

from .test_autocast_cpu import build_3d, stages_3d

# reads that are meant: (file suffix, function, what makes them free on a GPU)
DOCUMENTED = {
    ("benchmark/nn/components.py", "converged"): "the cleaning's convergence check, once per 8 rounds on a GPU",
    ("methods/dct.py", "training_step"): "k drawn from torch's global generator on the host (a CPU tensor)",
}


def _undocumented(reads: HostReads) -> list[str]:
    return [str(hit) for hit in reads.found
            if not any(hit.file.endswith(f) and hit.function == fn for f, fn in DOCUMENTED)]


def _shipped_stages() -> list[tuple[str, int]]:
    return [(name, i) for name in METHODS.names() if METHODS.get(name).__module__.startswith("sslbench.methods.")
            for i in range(len(METHODS.get(name).stages))]


@pytest.mark.parametrize("name,stage", _shipped_stages())
def test_a_step_reads_nothing_back(name: str, stage: int) -> None:
    trainer = build(name)
    trainer.stage_index = stage
    trainer.train_step()                      # first-step work: tables built once, lazy state
    with HostReads() as reads:
        for _ in range(2):
            trainer.train_step()
    assert not _undocumented(reads), _undocumented(reads)


@pytest.mark.parametrize("name,stage", stages_3d())
def test_a_3d_step_reads_nothing_back(name: str, stage: int) -> None:
    trainer = build_3d(name, stage)
    trainer.train_step()
    with HostReads() as reads:
        trainer.train_step()
    assert not _undocumented(reads), _undocumented(reads)


def test_each_kind_of_read_back_is_seen_at_its_line() -> None:
    x = torch.arange(12.0).view(3, 4).requires_grad_()
    mask = x.detach() > 5
    with HostReads() as reads:
        float(x.detach().sum())
        bool(mask.any())
        x.detach().nonzero()
        torch.equal(x, x)
        torch.unique(mask)
        y = x * 2
        y[mask].sum().backward()              # a boolean read, and its backward (an index_put with the mask)
        z = x.detach().clone()
        z[mask] = 0.0
    ops = [hit.op for hit in reads.found]
    assert ops[:5] == ["_local_scalar_dense", "_local_scalar_dense", "nonzero", "equal", "_unique2"], ops
    assert ops.count("index") == 1 and "index_put" in ops[-1], ops
    assert all(hit.file == __file__ and hit.function == "test_each_kind_of_read_back_is_seen_at_its_line"
               for hit in reads.found), reads.found
    assert reads.found[0].code == "float(x.detach().sum())"


def test_what_stays_on_the_device_is_not_counted() -> None:
    x = torch.arange(12.0).view(3, 4).requires_grad_()
    mask = x.detach() > 5
    labels = torch.randint(0, 3, (2, 4, 4))
    opt = torch.optim.Adam([x])
    original = F.one_hot
    with HostReads() as reads:
        torch.where(mask, x, torch.zeros_like(x)).sum().backward()
        x.detach().masked_fill(mask, 0.0)
        F.one_hot(labels, 3)                  # the CPU's range check only: CUDA trusts a device assert
        x[torch.tensor([0, 2])].sum()         # integer indices
        opt.step()                            # Adam's step counter lives on the host
    assert reads.found == []
    with HostReads() as reads:
        F.one_hot(labels)                     # the class count read from the labels: on every device
    assert [hit.op for hit in reads.found] == ["_local_scalar_dense"]
    assert F.one_hot is original              # put back on exit
