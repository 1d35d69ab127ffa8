#!/usr/bin/env python
"""Where the README's first command spends its time, next to a bare-PyTorch reference of its work.

    python tools/demo_benchmark.py [--repeats 3] [--rounds 3] [-o breakdown.md]

Runs ``bench run`` (no arguments: UNet-F, UNet-L, MT on the phantom) ``--repeats`` times, each in a
fresh folder with a fresh cache (the phantom is generated each time, as on a newcomer's first run),
timing the whole process; reads each run's record for the split of its time (set-up, training
steps, validation passes, checkpoint writes, final evaluation with metrics); then times each
method's step against a bare loop of the same work (``bench speed --vs-bare``) and multiplies by
the iterations: the bare reference of the demo's training. Nothing is written outside a temporary
folder unless ``-o`` names a file. A benchmark: run it on a quiet machine, one at a time.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METHODS = ("unet-f", "unet-l", "mt")


def bench(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "sslbench.cli", *args], env=env, cwd=cwd, capture_output=True, check=False,
                          text=True)
    if done.returncode != 0:
        sys.exit(f"bench {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done


def one_demo(env: dict[str, str]) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="sslbench-demo-") as tmp:
        folder = Path(tmp)
        env = {**env, "SSLBENCH_CACHE": str(folder / "cache")}
        env.pop("SSLBENCH_RESULTS", None)
        start = time.perf_counter()
        bench("run", env=env, cwd=folder)
        wall = time.perf_counter() - start
        runs = {}
        for path in (folder / "results").rglob("run.json"):
            rec = json.loads(path.read_text())
            t = rec["timing"]
            runs[rec["method"]] = {"wall_s": t["wall_s"], "train_s": t["train_s"], "val_s": t.get("val_s", 0.0),
                                   "checkpoint_s": t.get("checkpoint_s", 0.0), "eval_s": t["eval_s"],
                                   "iterations": sum(rec["stage_iterations"].values()), "dice": rec["summary"]["dice"]}
    return {"wall_s": wall, "runs": runs}


def bare_steps(env: dict[str, str], rounds: int, cwd: Path) -> dict[str, dict[str, float]]:
    out = bench("speed", "--methods", ",".join(METHODS), "--vs-bare", str(rounds), "--format", "json", env=env,
                cwd=cwd).stdout
    return {o["method"]: o for o in json.loads(out)["overhead"]}


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: at least 1")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=positive, default=3)
    parser.add_argument("--rounds", type=positive, default=3, help="alternating rounds of bench speed --vs-bare")
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()
    env = dict(os.environ)
    demos = []
    for i in range(args.repeats):
        demos.append(one_demo(env))
        print(f"demo {i + 1}/{args.repeats}: {demos[-1]['wall_s']:.1f} s", file=sys.stderr)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)
    with tempfile.TemporaryDirectory() as tmp:
        bare = bare_steps(env, args.rounds, Path(tmp))
    median = sorted(demos, key=lambda d: d["wall_s"])[len(demos) // 2]
    runs = median["runs"]
    steps = {m: r["train_s"] - r["val_s"] - r["checkpoint_s"] for m, r in runs.items()}
    rows = [("whole process (wall)", median["wall_s"]),
            ("start-up, imports, phantom generation, table", median["wall_s"] - sum(r["wall_s"] for r in runs.values())),
            ("per-run set-up (data to the device, method)", sum(r["wall_s"] - r["train_s"] - r["eval_s"] for r in runs.values())),
            ("training steps", sum(steps.values())),
            ("validation passes", sum(r["val_s"] for r in runs.values())),
            ("checkpoint writes", sum(r["checkpoint_s"] for r in runs.values())),
            ("final evaluation and metrics", sum(r["eval_s"] for r in runs.values()))]
    walls = ", ".join(f"{d['wall_s']:.1f}" for d in demos)
    lines = [f"demo wall time over {len(demos)} runs: median {median['wall_s']:.1f} s "
             f"(all: {walls}); peak RSS of a child {peak_mb:.0f} MB", "",
             "| part (median run) | seconds | share |", "| --- | --- | --- |"]
    lines += [f"| {name} | {sec:.1f} | {100 * sec / median['wall_s']:.1f} % |" for name, sec in rows]
    lines += ["", "| method | iterations | bench steps [s] | bare reference [s] | x bare | step x bare (bench speed) | test Dice |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    total_bare = 0.0
    for m in METHODS:
        r, o = runs[m], bare[m]
        ref = r["iterations"] * o["bare_step_s"]
        total_bare += ref
        lines.append(f"| {m} | {r['iterations']} | {steps[m]:.1f} | {ref:.1f} | {steps[m] / ref:.2f} | "
                     f"{o['ratio']:.3f} | {100 * r['dice']:.1f} |")
    lines += ["", f"bare-PyTorch reference of the demo's training: {total_bare:.1f} s; the whole demo is "
              f"{median['wall_s'] / total_bare:.2f}x it. Threads: {env.get('OMP_NUM_THREADS', 'torch default')}."]
    text = "\n".join(lines)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
