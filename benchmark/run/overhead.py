"""The trainer's overhead: ``bench``'s training step against a bare PyTorch loop of the same work.

The bench side is ``Trainer.train_step`` as a run calls it: the learning rate set, a batch sampled and
augmented on the device, the method's step, the loss terms summed, SGD, ``after_step`` (EMA teachers,
queues), the losses kept on the device for the log. The bare side keeps only the arithmetic: one
batch made beforehand and reused, the run's SGD (``make_optimizer``) at a fixed rate, no log, no
schedule. For UNet-L it is a loop a newcomer would write: the same UNet, ``0.5 (CE + Dice)``, SGD; for
any other method it calls the method's own ``training_step`` and ``after_step`` (its math is the
work; what a trainer adds around it is the overhead).

The two are timed in alternating rounds and compared by their medians, so a neighbour's load on a
shared machine falls on both sides alike.
"""
from __future__ import annotations

import copy
import statistics
from collections.abc import Callable
from typing import Any

from sslbench.method import Batch, SSLMethod, StepInfo
from sslbench.nn import ce_dice_loss
from sslbench.train.precision import autocast
from sslbench.train.schedule import make_extra_optimizer, make_optimizer
from sslbench.train.trainer import Trainer

BARE_UNET = "unet-l"


def stage_step(trainer: Trainer) -> Callable[[], Any]:
    """``trainer.train_step`` that starts the stage over at its end, so timing any number of steps
    never runs the schedule past its length (the poly rate of an iteration beyond it is complex)."""
    def step() -> Any:
        if trainer.iteration >= trainer.lengths[trainer.stage]:
            trainer.iteration = 0
        return trainer.train_step()

    return step


def bare_unet_step(trainer: Trainer, batch: Batch) -> Callable[[], None]:
    """UNet-L's step as plain PyTorch: a copy of the same network (UNet; VNet in 3-D), the batch's
    labeled images."""
    net = copy.deepcopy(trainer.method.inference_net())
    opt = make_optimizer(net.parameters(), trainer.cfg)
    x, y = batch.x_l, batch.y_l
    device, amp = trainer.device, trainer.cfg.amp

    def step() -> None:
        with autocast(device, amp):  # the precision the bench step runs in (bf16 on CUDA with amp)
            loss = ce_dice_loss(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step.net = net  # type: ignore[attr-defined]  # what it trains, for a test to look at
    return step


def bare_method_step(trainer: Trainer, batch: Batch) -> Callable[[], None]:
    """The method's own step on a batch made beforehand, with a plain SGD (and the method's extra
    optimisers' steps, as DAN's discriminator) and nothing around it."""
    method: SSLMethod = trainer.method
    opt = make_optimizer(method.optim_parameters(), trainer.cfg)
    extra = {name: make_extra_optimizer(spec) for name, spec in method.extra_optimizers().items()}
    stage, total = trainer.stage, trainer.lengths[trainer.stage]
    device, amp = trainer.device, trainer.cfg.amp
    counter = [trainer.iteration]

    def step() -> None:
        info = StepInfo(stage, counter[0], total, False, trainer.generator)
        method.train()
        out, _ = trainer.method_step(batch, info, opt)  # the step's own arithmetic, early-backward hook included
        for name, optimizer in extra.items():
            with autocast(device, amp):
                extra_out = method.extra_step(name, batch, info)
            trainer.optimise(extra_out, optimizer, f" for optimiser '{name}'")
        method.after_step(info, out)
        counter[0] = min(counter[0] + 1, total - 1)

    return step


def compare(name: str, trainer: Trainer, timed: Callable[[Callable[[], Any], int], float], steps: int,
            rounds: int, warmup: int) -> dict[str, Any]:
    """Median seconds per step of the bench step and of its bare loop over ``rounds`` alternating
    rounds of ``steps`` steps each, in the trainer's current stage."""
    batch = trainer.next_batch()
    bare = bare_unet_step(trainer, batch) if name == BARE_UNET else bare_method_step(trainer, batch)
    bench = stage_step(trainer)
    for _ in range(warmup):
        bare()
        bench()
    bench_s, bare_s = [], []
    for _ in range(rounds):
        bench_s.append(timed(bench, steps))
        bare_s.append(timed(bare, steps))
    trainer.log.sums, trainer.log.count = {}, 0  # the losses are never read back here
    b, r = statistics.median(bench_s), statistics.median(bare_s)
    return {"method": name, "stage": trainer.stage, "bench_step_s": b, "bare_step_s": r, "ratio": b / r,
            "rounds": rounds, "steps": steps,
            "bare": "UNet, 0.5 (CE + Dice), SGD" if name == BARE_UNET else "the method's step, SGD"}
