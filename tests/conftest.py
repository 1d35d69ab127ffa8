"""Shared fixtures: a session-wide prepared-data cache, GPU-marker handling, CLI helpers."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

TINY_RUN = (
    "--set", "train.iterations=12", "--set", "train.image_size=32", "--set", "train.batch_size=4",
    "--set", "train.labeled_bs=2", "--set", "train.val_every=6", "--set", "train.log_every=3",
    "--set", "train.base_width=4",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _deselect_demo_unless_asked(config, items)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def _deselect_demo_unless_asked(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The README's first command end to end (``demo``, 3 to 13 minutes alone) runs only when a ``-m``
    expression names it (``.ci/run`` runs ``pytest -m demo`` after the suite), so the default suite
    stays within its time on two cores. Naming its file on the command line runs it too."""
    if "demo" in (config.getoption("markexpr", "") or ""):
        return
    named = {(config.invocation_params.dir / arg.split("::")[0]).resolve() for arg in config.args}
    demo = [item for item in items
            if item.get_closest_marker("demo") is not None and item.path.resolve() not in named]
    if demo:
        config.hook.pytest_deselected(items=demo)
        items[:] = [item for item in items if item not in demo]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One prepared-data cache for the whole session (the phantom is generated once)."""
    path = tmp_path_factory.mktemp("cache")
    os.environ["SSLBENCH_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def cardiac(cache_dir: Path):  # noqa: ANN201
    from sslbench.cache import prepare

    return prepare("synthetic-cardiac", cache_root=cache_dir)


def tiny_method(name: str, num_classes: int, **cfg: object):  # noqa: ANN201
    """A registered method built as the value tests need it: seed 0, 32 x 32 slices, base width 4, on
    the CPU, every dropout off (so a loss is a function of the weights and the batch alone)."""
    import dataclasses

    from torch import nn

    from sslbench.method import METHODS, MethodContext

    cls = METHODS.get(name)
    torch.manual_seed(0)
    ctx = MethodContext(in_channels=1, num_classes=num_classes, image_size=32, device=torch.device("cpu"),
                        base_width=4)
    method = cls(dataclasses.replace(cls.Config(), **cfg), ctx)
    for m in method.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.p = 0.0
    return method
