"""No training step reads a value back from the device, checked on the CPU (``sslbench.train.host_reads``):
the GPU tests see the same with CUDA's sync debug mode, but only where a GPU is lent."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import sslbench.methods.dct as dct
import sslbench.nn.components as components
from sslbench.method import METHODS
from sslbench.testing import build
from sslbench.train.host_reads import HostReads

from .test_autocast_cpu import build_3d, stages_3d

# reads that are meant: (module file, function, the calling line) -> what makes them acceptable
DOCUMENTED = {
    (components.__file__, "converged", "return torch.equal(lab, before)"):
        "the cleaning's convergence check: once per 8 rounds on a GPU, its one documented sync",
    (dct.__file__, "training_step", "k = int(torch.randint(0, 4, ()).item())"):
        "k drawn from torch's global generator on the host (a CPU tensor in a GPU run too)",
}


def _undocumented(reads: HostReads) -> list[str]:
    return [str(hit) for hit in reads.found if (hit.file, hit.function, hit.code) not in DOCUMENTED]


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
        torch.allclose(x, x)
        torch.unique(mask)
        torch.repeat_interleave(torch.tensor([1, 2]))
        y = x * 2
        y[mask].sum().backward()              # a boolean read; its backward writes the gradient through the mask
        z = x.detach().clone()
        z[mask] = z[mask] * 2                 # a boolean read, then a write of a tensor through the mask
        z[torch.tensor([0, 1]), torch.tensor([1, 2])] = -1.0   # a number through integer indices
    ops = [hit.op for hit in reads.found]
    assert ops == ["_local_scalar_dense", "_local_scalar_dense", "nonzero", "equal", "allclose", "_unique2",
                   "repeat_interleave", "index", "index_put", "index", "index_put_", "index_put_"], ops
    assert all(hit.file == __file__ and hit.function == "test_each_kind_of_read_back_is_seen_at_its_line"
               for hit in reads.found), reads.found
    assert reads.found[0].code == "float(x.detach().sum())"
    assert reads.found[8].code.startswith("y[mask].sum().backward()")     # the backward's write, at its line


def test_what_stays_on_the_device_is_not_counted() -> None:
    x = torch.arange(12.0).view(3, 4).requires_grad_()
    mask = x.detach() > 5
    labels = torch.randint(0, 3, (2, 4, 4))
    opt = torch.optim.Adam([x])
    original = F.one_hot
    with HostReads() as reads:
        torch.where(mask, x, torch.zeros_like(x)).sum().backward()
        z = x.detach().masked_fill(mask, 0.0)
        z[mask] = 0.0                         # a number through a mask: masked_fill underneath
        z[torch.tensor([0, 2])] = torch.ones(2, 4)     # a tensor through integer indices
        F.one_hot(labels, 3)                  # the CPU's range check only: CUDA trusts a device assert
        x[torch.tensor([0, 2])].sum()         # integer indices
        torch.repeat_interleave(torch.tensor([1, 2]), output_size=3)
        opt.step()                            # Adam's step counter lives on the host
    assert reads.found == []
    with HostReads() as reads:
        F.one_hot(labels)                     # the class count read from the labels: on every device
    assert [(hit.op, hit.file) for hit in reads.found] == [("_local_scalar_dense", __file__)]
    assert F.one_hot is original              # put back on exit


def test_nested_and_repeated_contexts_put_one_hot_back() -> None:
    original = F.one_hot
    outer, inner = HostReads(), HostReads()
    with outer:
        with inner:
            F.one_hot(torch.tensor([0, 1]), 2)
            float(torch.ones(()))
        assert F.one_hot is not original      # still watched by the outer context
        bool(torch.ones(()))
    assert F.one_hot is original
    assert [hit.code for hit in inner.found] == ["float(torch.ones(()))"]
    assert [hit.code for hit in outer.found] == ["float(torch.ones(()))", "bool(torch.ones(()))"]  # it sees through
    with outer:                               # a context used again works the same
        pass
    assert F.one_hot is original


def test_a_listed_or_a_tagged_operation_counts_in_any_overload() -> None:
    """The .out overloads of nonzero, unique, bincount ... carry no tag: listed by name; an operation
    ATen tags as data-dependent counts though unlisted (a future one)."""
    from types import SimpleNamespace

    from sslbench.train.host_reads import reads_back

    untagged_out = SimpleNamespace(overloadpacket=torch.ops.aten.bincount, tags=[])
    assert reads_back(untagged_out, (), {})
    unlisted = SimpleNamespace(overloadpacket=torch.ops.aten.add, tags=[torch.Tag.dynamic_output_shape])
    assert reads_back(unlisted, (), {})
    assert not reads_back(SimpleNamespace(overloadpacket=torch.ops.aten.add, tags=[]), (), {})
