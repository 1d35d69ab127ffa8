"""Operations that make a CUDA device wait for the host, caught on any device.

A training step on a GPU should queue work and return: anything whose result the host needs before it
can go on (a tensor turned into a Python number or bool, a shape that depends on the data) stops the
host until the device catches up, every step. CUDA's sync debug mode finds these on a GPU; this
finds the same operations on a CPU, where a plugin author usually works, by watching the ATen calls
of a step (``TorchDispatchMode``, below autograd, so the backward pass is watched too):

* a tensor read as a Python value: ``.item()``, ``float(t)``, ``int(t)``, ``bool(t)``, ``if t:``,
  ``torch.equal``, ``torch.allclose`` (ATen's ``data_dependent_output`` operations);
* an output whose size depends on the data: ``nonzero``, ``masked_select``, ``unique``,
  ``bincount``, ``repeat_interleave`` without ``output_size`` (``dynamic_output_shape``);
* indexing with a boolean mask: reading ``x[mask]``, or writing ``x[mask] = t`` with a tensor ``t``
  (a ``nonzero`` inside; ``x[mask] = 0.0`` is a ``masked_fill`` and stays on the device);
* a number written through integer indices, ``x[rows, cols] = -1.0``: CUDA copies the number to the
  device first, and the copy waits (the weak augmentation's flip did this; ``torch.where`` does not).
  A one-element tensor already on the device would not wait; on a CPU the two look alike.

Two things read back on a CPU only and are not counted: ``F.one_hot`` with ``num_classes`` (its range
check reads the labels' min and max on a CPU; on CUDA it relies on a device assert; code that
imported ``one_hot`` by name bypasses this and shows the check) and what ``torch.optim`` does inside
an optimiser's step (its step counters stay on the host unless ``capturable``). Not seen at all:
copies from the device (``.cpu()``, ``.tolist()``, ``.numpy()``) and host-to-device copies
(``torch.tensor(list, device=...)``) are no-ops or plain reads on a CPU, and a value read from a
tensor made on the host on purpose (``torch.randint(0, 4, ()).item()``, no device: free on a GPU run
too) looks like any other. The GPU tests (``tests/test_gpu.py``) see all of these.
"""
from __future__ import annotations

import os
import threading
import traceback
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

_aten = torch.ops.aten
_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_THIS_FILE = os.path.abspath(__file__)
_OPTIM_DIR = os.path.join(_TORCH_DIR, "optim") + os.sep
# read back in every overload (the .out ones carry no tag)
_READS = frozenset({
    _aten._local_scalar_dense, _aten.item, _aten.equal, _aten.allclose, _aten.nonzero, _aten.masked_select,
    _aten._unique, _aten._unique2, _aten.unique_dim, _aten.unique_consecutive, _aten.unique_dim_consecutive,
    _aten.bincount,
})
_INDEX_READ = frozenset({_aten.index})
_INDEX_WRITE = frozenset({_aten.index_put, _aten.index_put_, _aten._index_put_impl_})
_TAGS = (torch.Tag.data_dependent_output, torch.Tag.dynamic_output_shape)


def _is_mask(index: Any) -> bool:
    return torch.is_tensor(index) and index.dtype in (torch.bool, torch.uint8)


def reads_back(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether this ATen call would make a CUDA device wait for the host (module docstring)."""
    packet = func.overloadpacket
    if packet in _INDEX_READ:
        return any(_is_mask(i) for i in (args[1] if len(args) > 1 else ()))
    if packet in _INDEX_WRITE:
        indices = [i for i in (args[1] if len(args) > 1 else ()) if i is not None]
        value = args[2] if len(args) > 2 else kwargs.get("values")
        one = torch.is_tensor(value) and value.numel() == 1
        if any(_is_mask(i) for i in indices):
            return not one            # a one-element value takes the masked_fill path
        return one and bool(indices)  # a number through integer indices: copied to the device first
    if packet is _aten.repeat_interleave:  # tensor repeats: the output's length is their sum
        return func is not _aten.repeat_interleave.self_int and kwargs.get("output_size") is None
    return packet in _READS or any(tag in func.tags for tag in _TAGS)


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
    """The innermost frame outside torch and this module; None when the torch frames between it and
    the operation include an optimiser's (its host-side step counters)."""
    for frame in reversed(traceback.extract_stack()):
        path = os.path.abspath(frame.filename)
        if path == _THIS_FILE:
            continue
        if path.startswith(_TORCH_DIR):
            if path.startswith(_OPTIM_DIR):
                return None
            continue
        return HostRead(op, frame.filename, frame.lineno or 0, frame.name, (frame.line or "").strip())
    return HostRead(op, "?", 0, "?", "")


_ORIGINAL_ONE_HOT = F.one_hot
_active = threading.local()       # the modes entered on this thread, innermost last
_patch_lock = threading.Lock()
_patched = 0                      # HostReads contexts open on any thread (F.one_hot replaced while > 0)


def _one_hot(tensor: torch.Tensor, num_classes: int = -1) -> torch.Tensor:
    """``F.one_hot`` whose CPU range check is not counted when ``num_classes`` is given."""
    modes = list(getattr(_active, "modes", []))
    if num_classes < 0 or not modes:  # the class count read from the data: a read back on every device
        return _ORIGINAL_ONE_HOT(tensor, num_classes)
    for mode in modes:  # an outer context sees what an inner one passes on
        mode.quiet += 1
    try:
        return _ORIGINAL_ONE_HOT(tensor, num_classes)
    finally:
        for mode in modes:
            mode.quiet -= 1


class HostReads(TorchDispatchMode):
    """Within ``with HostReads() as reads:``, ``reads.found`` lists each operation that would make a CUDA
    device wait for the host, once per calling line."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[HostRead] = []
        self.quiet = 0

    def __enter__(self) -> HostReads:
        global _patched
        with _patch_lock:
            if _patched == 0:
                F.one_hot = _one_hot  # type: ignore[assignment]  # put back when the last context closes
            _patched += 1
        _active.modes = [*getattr(_active, "modes", []), self]
        return super().__enter__()  # type: ignore[no-any-return]

    def __exit__(self, *exc: Any) -> None:
        global _patched
        try:
            super().__exit__(*exc)
        finally:
            _active.modes = getattr(_active, "modes", [])[:-1]
            with _patch_lock:
                _patched -= 1
                if _patched == 0:
                    F.one_hot = _ORIGINAL_ONE_HOT

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        if not self.quiet and reads_back(func, args, kwargs):
            hit = _caller(str(func.overloadpacket.__name__))
            if hit is not None and hit not in self.found:
                self.found.append(hit)
        return func(*args, **kwargs)
