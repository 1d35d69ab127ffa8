"""Operations that make a CUDA device wait for the host, caught on any device.

A training step on a GPU should queue work and return: anything whose result the host needs before it
can go on (a tensor turned into a Python number or bool, a shape that depends on the data) stops the
host until the device catches up, every step. CUDA's sync debug mode finds these on a GPU; this
finds the same operations on a CPU, where a plugin author usually works, by watching the ATen calls
of a step (``TorchDispatchMode``, below autograd, so the backward pass is watched too):

* a tensor read as a Python value: ``.item()``, ``float(t)``, ``int(t)``, ``bool(t)``, ``if t:``
  (``aten::_local_scalar_dense``, ``aten::is_nonzero``), ``torch.equal``;
* an output whose size depends on the data: ``nonzero``, ``argwhere``, ``masked_select``, ``unique``,
  ``bincount``, ``repeat_interleave`` without ``output_size``;
* indexing with a boolean mask, read or written (``x[mask]``, ``x[mask] = v``: a ``nonzero``
  inside): ``torch.where(mask, v, x)`` or ``masked_fill`` do the same without it.

Two things read back on a CPU only and are not counted: ``F.one_hot`` with ``num_classes`` (its range
check reads the labels' min and max on a CPU; on CUDA it relies on a device assert) and the
optimisers' step counters (``torch.optim`` keeps them on the host unless ``capturable``). Not seen
here: copies between host and device (``.cpu()``, ``.tolist()``, ``torch.tensor(list,
device=...)``) are no-ops on a CPU, and a value read from a tensor made on the host on purpose
(``torch.randint(0, 4, ()).item()`` with no device: free on a GPU run too) looks like any other; the
GPU tests (``tests/test_gpu.py``) see both.
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

_aten = torch.ops.aten
# read back whatever their arguments
SYNCING = frozenset({
    _aten._local_scalar_dense.default, _aten.is_nonzero.default, _aten.equal.default,
    _aten.nonzero.default, _aten.argwhere.default, _aten.masked_select.default,
    _aten._unique2.default, _aten.unique_dim.default, _aten.unique_consecutive.default,
    _aten.bincount.default, _aten.repeat_interleave.Tensor,
})
# read back when one of their indices is a boolean (or uint8) mask
MASK_INDEXING = frozenset({
    _aten.index.Tensor, _aten.index_put.default, _aten.index_put_.default, _aten._index_put_impl_.default,
})


def _masked(args: tuple[Any, ...]) -> bool:
    indices = args[1] if len(args) > 1 else ()
    return any(torch.is_tensor(i) and i.dtype in (torch.bool, torch.uint8) for i in indices)


@dataclass(frozen=True)
class HostRead:
    """One operation that reads back, and the innermost frame outside torch that called it."""

    op: str
    file: str
    line: int
    function: str
    code: str

    def __str__(self) -> str:
        return f"{self.op} at {self.file}:{self.line} ({self.code})"


def _caller(op: str) -> HostRead | None:
    """The innermost frame outside torch; None inside an optimiser's step (its host-side counters)."""
    stack = traceback.extract_stack()[:-2]
    if any("/torch/optim/" in frame.filename.replace("\\", "/") for frame in stack):
        return None
    for frame in reversed(stack):
        if "/torch/" not in frame.filename.replace("\\", "/"):
            return HostRead(op, frame.filename, frame.lineno or 0, frame.name, (frame.line or "").strip())
    return HostRead(op, "?", 0, "?", "")


class HostReads(TorchDispatchMode):
    """Within ``with HostReads() as reads:``, ``reads.found`` lists each operation that would make a CUDA
    device wait for the host, once per calling line."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[HostRead] = []
        self._quiet = 0
        self._one_hot: Any = None

    def __enter__(self) -> HostReads:
        self._one_hot = F.one_hot
        F.one_hot = self._unchecked_one_hot  # type: ignore[assignment]  # restored on exit
        return super().__enter__()  # type: ignore[no-any-return]

    def __exit__(self, *exc: Any) -> None:
        F.one_hot = self._one_hot
        super().__exit__(*exc)

    def _unchecked_one_hot(self, tensor: torch.Tensor, num_classes: int = -1) -> torch.Tensor:
        if num_classes < 0:  # the class count read from the data: a read back on every device
            return self._one_hot(tensor, num_classes)
        self._quiet += 1
        try:
            return self._one_hot(tensor, num_classes)
        finally:
            self._quiet -= 1

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        if not self._quiet and (func in SYNCING or (func in MASK_INDEXING and _masked(args))):
            hit = _caller(str(func.overloadpacket.__name__))
            if hit is not None and hit not in self.found:
                self.found.append(hit)
        return func(*args, **(kwargs or {}))
