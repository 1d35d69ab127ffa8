#!/usr/bin/env python
"""The arithmetic the README's first command needs, and the time it takes at a given peak rate.

    python tools/demo_flops.py [--steps 10] [--peak-gflops 64]

For each method of the demo (UNet-F, UNet-L, MT on the phantom, profile quick) it builds the method
and trainer as ``bench speed`` does, counts the floating-point operations of one training step
(``torch.utils.flop_counter``: convolutions and matrix products, forward and backward, the
optimizer's element-wise updates not counted), times ``--steps`` steps on this machine's threads,
and prints GFLOP per step, the achieved GFLOP/s, the demo's total (steps x the profile's
iterations) and, with ``--peak-gflops`` (the machine's fp32 peak, all cores), the shortest time that
arithmetic could take there: a floor no trainer change can beat with the same work. Nothing is
written. A benchmark: run it on a quiet machine, alone.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from sslbench.method import METHODS, build_method
from sslbench.run.environment import seed_everything
from sslbench.run.overhead import stage_step
from sslbench.run.specs import resolve
from sslbench.run.speed import synthetic_data
from sslbench.train.kit_runs import NUM_CLASSES
from sslbench.train.trainer import Trainer

DEMO = ("unet-f", "unet-l", "mt")  # `bench run` with no arguments


def measure(name: str, steps: int) -> tuple[float, float, int]:
    """(GFLOP of one step, seconds a step, the profile's iterations) of ``name``'s only stage."""
    cfg = resolve(name, "quick", "synthetic-cardiac", [])
    seed_everything(0)
    method = build_method(METHODS.get(name), cfg.method, cfg.train, NUM_CLASSES, torch.device("cpu"))
    trainer = Trainer(method, synthetic_data(max(4 * cfg.train.batch_size, 16), cfg.train.image_size,
                                             torch.device("cpu")), cfg.train, 0, progress=False, desc=name)
    trainer.optimizer, trainer.extra = trainer.make_optimizers()
    step = stage_step(trainer)
    step()  # warm-up
    with FlopCounterMode(display=False) as counter:
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - start) / steps
    return counter.get_total_flops() / 1e9, seconds, trainer.lengths[trainer.stages[-1]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per method (default 10)")
    parser.add_argument("--peak-gflops", type=float, default=None,
                        help="the machine's fp32 peak in GFLOP/s, all cores: prints the demo's floor there")
    args = parser.parse_args()
    total, seconds_total = 0.0, 0.0
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print("| method | GFLOP / step | ms / step | GFLOP/s | iterations | demo TFLOP |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in DEMO:
        gflop, seconds, iterations = measure(name, args.steps)
        total += gflop * iterations
        seconds_total += seconds * iterations
        print(f"| {name} | {gflop:.2f} | {1000 * seconds:.1f} | {gflop / seconds:.1f} | {iterations} | "
              f"{gflop * iterations / 1000:.2f} |")
    print(f"demo: {total / 1000:.2f} TFLOP; at the rates measured here its steps take {seconds_total:.0f} s")
    if args.peak_gflops:
        print(f"floor at {args.peak_gflops:g} GFLOP/s: {total / args.peak_gflops:.0f} s of arithmetic alone")


if __name__ == "__main__":
    main()
