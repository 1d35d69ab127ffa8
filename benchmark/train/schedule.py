"""The schedule every method shares: stage lengths, SGD and its learning rate (poly, step or constant),
and the extra optimisers a method may ask for."""
from __future__ import annotations

import difflib
from collections.abc import Iterable

import torch
from torch import nn

from sslbench.base.config import TrainConfig
from sslbench.base.errors import BenchError
from sslbench.method import ExtraOptimizer, SSLMethod


def stage_iterations(method: SSLMethod, cfg: TrainConfig) -> dict[str, int]:
    """Iterations of each of the method's stages, in order, from the setting each one names
    (``SSLMethod.stage_length_keys``: ``train.iterations`` for the last, ``train.pretrain_iterations``
    for an earlier one unless the method names another ``train.*`` or ``method.*`` key)."""
    out = {}
    for stage, key in type(method).stage_length_keys().items():
        section, _, name = key.partition(".")
        owner = {"train": cfg, "method": method.cfg}.get(section)
        value = getattr(owner, name, None) if owner is not None else None
        if isinstance(value, bool) or not isinstance(value, int):
            known = [f"{s}.{f}" for s, o in (("train", cfg), ("method", method.cfg))
                     for f, v in vars(o).items() if isinstance(v, int) and not isinstance(v, bool)]
            close = difflib.get_close_matches(key, known, n=1)
            raise BenchError(f"method '{method.name}': stage '{stage}' takes its length from '{key}' (stage_lengths), "
                             "which is no integer train.* or method.* setting"
                             + (f"; did you mean '{close[0]}'?" if close else ""))
        if value <= 0:
            raise BenchError(f"method '{method.name}' needs {key} > 0 (the length of its stage '{stage}')")
        out[stage] = value
    return out


def learning_rate(cfg: TrainConfig, iteration: int, total: int) -> float:
    """SSL4MIS's poly decay, the MONA paper's step decay or BCP's constant rate at ``iteration`` of ``total``."""
    if cfg.lr_schedule == "poly":
        return cfg.lr * (1.0 - iteration / total) ** cfg.poly_power
    if cfg.lr_schedule == "constant":
        return cfg.lr
    return cfg.lr * cfg.lr_gamma ** (iteration // cfg.lr_step)


def make_optimizer(params: Iterable[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """The main optimiser: SGD with momentum and weight decay, as every reference code base."""
    return torch.optim.SGD(list(params), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def make_extra_optimizer(spec: ExtraOptimizer) -> torch.optim.Optimizer:
    """A further optimiser a method declares (DAN's discriminator)."""
    if spec.kind == "adam":
        return torch.optim.Adam(spec.params, lr=spec.lr, betas=spec.betas, weight_decay=spec.weight_decay)
    if spec.kind == "sgd":
        return torch.optim.SGD(spec.params, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
    raise BenchError(f"unknown optimiser kind '{spec.kind}' (known: adam, sgd)")
