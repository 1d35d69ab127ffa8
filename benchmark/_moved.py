"""Old import paths (before the layered layout) keep working for one release, with a warning.

``import sslbench.losses`` returns the module now at ``sslbench.nn.losses``: the same object, so
monkeypatching and ``isinstance`` behave as before. A module that was split (``sslbench.heads``)
becomes a small module that looks each name up where it went. Installed once, from
``sslbench/__init__.py``.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from typing import Any

MOVED: dict[str, str] = {
    "config": "base.config", "registry": "base.registry", "errors": "base.errors", "atomic": "base.atomic",
    "results": "base.results", "names": "base.names", "locks": "base.locks",
    "unet": "nn.unet", "ema": "nn.ema", "ramps": "nn.ramps", "losses": "nn.losses", "multihead": "nn.multihead",
    "augment": "nn.augment", "transforms": "nn.augment", "perturb": "nn.augment",
    "trainer": "train.trainer", "memory": "train.peak_memory",
    "evaluation": "report.evaluation", "metrics": "report.metrics", "tables": "report.tables",
    "paper": "report.paper", "significance": "report.significance", "plots": "report.plots",
    "runner": "run.runner", "resize": "io.resize", "datasets.readers": "io.readers",
    "anatomy": "methods.mona.anatomy", "discriminator": "methods.dan", "uncertainty": "methods.uamt",
    "mixing": "methods.ict",
}
SPLIT: dict[str, tuple[str, ...]] = {  # old module -> the modules its names went to
    "heads": ("nn.heads", "methods.mona.heads"),
    "banks": ("nn.banks", "methods.mona.banks"),
    "sampling": ("train.sampler", "nn.mask_sampling"),
    "datasets.nifti": ("io.nifti", "datasets.nifti_cases"),
}


def _new(old: str) -> str:
    short = old.removeprefix("sslbench.")
    return "sslbench." + (MOVED[short] if short in MOVED else " + sslbench.".join(SPLIT[short]))


class _Loader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        short = spec.name.removeprefix("sslbench.")
        warnings.warn(f"{spec.name} moved to {_new(spec.name)}; the old path goes away in the next release",
                      DeprecationWarning, stacklevel=2)
        if short in MOVED:
            return importlib.import_module("sslbench." + MOVED[short])
        targets = [importlib.import_module("sslbench." + t) for t in SPLIT[short]]
        module = types.ModuleType(spec.name, f"Names of the former {spec.name}; see {_new(spec.name)}.")

        def lookup(name: str) -> Any:
            for target in targets:
                if hasattr(target, name):
                    return getattr(target, name)
            raise AttributeError(f"module {spec.name!r} has no attribute {name!r}")

        module.__getattr__ = lookup  # type: ignore[method-assign]
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        short = fullname.removeprefix("sslbench.")
        if fullname.startswith("sslbench.") and (short in MOVED or short in SPLIT):
            return importlib.machinery.ModuleSpec(fullname, _Loader())
        return None


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
