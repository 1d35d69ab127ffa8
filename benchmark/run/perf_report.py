"""The performance half of the GPU check: ``bench speed`` for every method at the ``ssl4mis`` and
``paper`` settings in fp32 and bf16, and the aggregate throughput of 1, 2 and 4 concurrent runs on
one device, written as one markdown report (``tools/gpu_check.sh`` calls it after the GPU tests).

    python -m sslbench.run.perf_report --out docs/perf            # on a CUDA machine
    python -m sslbench.run.perf_report --out /tmp/p --cpu-smoke   # tiny sizes on the CPU (CI)

Concurrent runs are separate processes timing MT's training step at the ``ssl4mis`` setting; the
aggregate is the sum of their it/s, against one process alone.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

TINY = ("train.image_size=32", "train.batch_size=4", "train.labeled_bs=2", "train.base_width=4",
        "train.pretrain_iterations=4")


def _speed(methods: list[str], profile: str, sets: list[str], device: str, steps: int, warmup: int) -> dict:
    from sslbench.run.speed import speed

    return speed(methods, profile, sets, device, steps, warmup, log=lambda m: None)


def _concurrent(k: int, device: str, sets: list[str], steps: int) -> float:
    """Aggregate it/s of ``k`` processes timing MT's step at the same time."""
    args = [sys.executable, "-m", "sslbench.cli", "speed", "--methods", "mt", "--profile", "ssl4mis", "--device",
            device, "--steps", str(steps), "--warmup", "2", "--format", "json"]
    for item in sets:
        args += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // k))}
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
             for _ in range(k)]
    total = 0.0
    for p in procs:
        out, _ = p.communicate(timeout=900)
        if p.returncode != 0:
            raise RuntimeError(f"a concurrent bench speed failed (exit {p.returncode})")
        total += next(r["it_s"] for r in json.loads(out)["rows"] if r["method"] == "mt")
    return total


def report(out: Path, cpu_smoke: bool = False, steps: int = 20) -> Path:
    from sslbench.method import METHODS

    device = "cpu" if cpu_smoke else "cuda"
    if not cpu_smoke and not torch.cuda.is_available():
        raise SystemExit("perf_report: no CUDA device (use --cpu-smoke for the CPU path)")
    sets = list(TINY) if cpu_smoke else []
    steps = 2 if cpu_smoke else steps
    methods = ["unet-l", "mt", "mona"] if cpu_smoke else sorted(METHODS.names())
    name = "cpu" if cpu_smoke else torch.cuda.get_device_name(0)
    lines = [f"# Performance report: {name}", "",
             f"date {time.strftime('%Y-%m-%d %H:%M:%S')}, torch {torch.__version__}, CUDA {torch.version.cuda}", ""]
    for profile in ("ssl4mis", "paper"):
        for amp in ("false", "true"):
            result = _speed(methods, profile, [*sets, f"train.amp={amp}"], device, steps, 2 if not cpu_smoke else 1)
            lines += [f"## {profile}, {'bf16 autocast' if amp == 'true' else 'fp32'}", "",
                      "| method | stage | step [ms] | it/s | x UNet-L | batch prep | peak MB |", "| --- " * 7 + "|"]
            lines += [f"| {r['method']} | {r['stage']} | {1000 * r['step_s']:.1f} | {r['it_s']:.2f} | "
                      f"{r['ratio_to_unet_l']:.2f} | {100 * r['outside_share']:.0f}% | {r['peak_mem_mb']:.0f} |"
                      for r in result["rows"]]
            ev = result["evaluation"]
            lines += ["", f"evaluation: {ev['eval_slices_per_s']:.0f} slices/s; metrics "
                      f"{1000 * ev['metrics_s_per_volume']:.0f} ms per ACDC-size volume", ""]
    lines += ["## Concurrent MT runs on one device (ssl4mis setting)", "", "| processes | aggregate it/s | x one |",
              "| --- | --- | --- |"]
    single = None
    for k in (1, 2, 4):
        total = _concurrent(k, device, sets, steps)
        single = single or total
        lines.append(f"| {k} | {total:.2f} | {total / single:.2f} |")
    out.mkdir(parents=True, exist_ok=True)
    path = out / (f"perf-{'cpu-smoke' if cpu_smoke else name.replace(' ', '-')}.md")
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/perf"))
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU (CI's path)")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    print(report(args.out, args.cpu_smoke, args.steps))


if __name__ == "__main__":
    main()
