"""``bench speed``: what a training step costs, per method and stage, measured side by side.

For each method (UNet-L is always measured too, as the baseline of the ratios) it builds the method
and the trainer exactly as a run would, from the profile's settings and ``--set`` overrides, on
synthetic slices of the profile's size (no dataset needed), runs ``warmup`` steps and times ``steps``
more of every stage. It also times the trainer's batch preparation alone (sampling + augmentation),
reported as the share of the step spent outside the method's forward and backward, and the
evaluation path: slices per second through ``predict_volume`` and the metrics of one ACDC-size volume.
With a 3-D dataset's settings (``--dataset la``: ``train.dims = 3``) it times the 3-D track instead:
steps on synthetic volumes a little larger than the crop, and sliding-window windows per second.

Times on a CPU are this machine's; compare ratios measured in one call, not absolute numbers across
machines. On CUDA every timed section ends with a synchronisation.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from tabulate import tabulate

from sslbench.method import METHODS, build_method
from sslbench.report.evaluation import Window, inference_size, predict_volume
from sslbench.report.metrics import volume_metrics
from sslbench.run.environment import pick_device, seed_everything
from sslbench.run.overhead import compare, stage_step
from sslbench.run.specs import resolve, scope_overrides
from sslbench.train.kit_runs import NUM_CLASSES, NUM_CLASSES_3D, tiny_data, tiny_volumes
from sslbench.train.peak_memory import peak_memory_kind, peak_memory_mb, reset_peak_memory
from sslbench.train.precision import precision
from sslbench.train.trainer import TrainData, Trainer
from sslbench.train.volumes import VolumeData

BASELINE = "unet-l"


@dataclass
class SpeedRow:
    method: str
    stage: str
    step_s: float
    it_s: float
    ratio_to_unet_l: float
    outside_share: float      # batch sampling + augmentation, as a share of the step
    peak_mem_mb: float
    peak_mem_kind: str
    batch: int
    image_size: int | str  # a 3-D crop as "D x H x W"
    precision: str


def synthetic_data(n: int, size: int, device: torch.device, seed: int = 0) -> TrainData:
    """The conformance kit's smooth slices (labels follow the intensity), half labeled, on ``device``."""
    data = tiny_data(seed, n, size)
    return TrainData(*(t.to(device) for t in (data.images, data.labels, data.labeled, data.unlabeled)),
                     positions=data.positions.to(device) if data.positions is not None else None)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], n: int, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    for _ in range(n):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / n


def measure_method(name: str, profile: str, overrides: Sequence[str], device: torch.device, steps: int,
                   warmup: int, dataset: str = "synthetic-cardiac",
                   vs_bare: int = 0) -> tuple[list[dict[str, Any]], Any]:
    """Per stage: seconds per step, seconds of batch preparation per step, peak memory. ``dataset``
    names the configuration layer (``configs/datasets``): no data is read. ``vs_bare`` rounds: the
    last stage's step is also timed against a bare loop of the same work (``overhead.compare``)."""
    cls = METHODS.get(name)
    cfg = resolve(name, profile, dataset, overrides)
    seed_everything(0)
    method = build_method(cls, cfg.method, cfg.train, NUM_CLASSES_3D if cfg.train.dims == 3 else NUM_CLASSES, device)
    data: TrainData | VolumeData
    if cfg.train.dims == 3:
        data = tiny_volumes(max(2 * cfg.train.batch_size, 8), cfg.train.patch_size, device)
    else:
        data = synthetic_data(max(4 * cfg.train.batch_size, 16), cfg.train.image_size, device)
    trainer = Trainer(method, data, cfg.train, 0, progress=False, desc=name)
    out = []
    for index, stage in enumerate(trainer.stages):
        trainer.stage_index, trainer.iteration = index, 0
        trainer.optimizer, trainer.extra = trainer.make_optimizers()
        step = stage_step(trainer)
        for _ in range(warmup):
            step()
        reset_peak_memory(device)
        step_s = _timed(step, steps, device)
        batch_s = _timed(trainer.next_batch, steps, device)
        out.append({"stage": stage, "step_s": step_s, "batch_s": batch_s, "peak_mem_mb": peak_memory_mb(device)})
        trainer.log.sums, trainer.log.count = {}, 0  # the losses are never read back here
    if vs_bare:
        out[-1]["overhead"] = compare(name, trainer, lambda fn, n: _timed(fn, n, device), steps, vs_bare, warmup)
    return out, (cfg, method)


def window_speed(method: Any, window: Window, device: torch.device, amp: bool, repeats: int = 2) -> dict[str, float]:
    """Sliding-window windows per second (3-D): a volume one stride larger than the crop on every
    axis (8 windows, their softmax averaged), predicted ``repeats`` times after a warm-up."""
    rng = np.random.default_rng(0)
    d, h, w = window.patch
    volume = rng.standard_normal((d + window.stride_z, h + window.stride_xy, w + window.stride_xy)).astype(np.float32)
    method.eval()
    predict_volume(method, volume, window, device, amp=amp)  # warm-up
    per_volume = _timed(lambda: predict_volume(method, volume, window, device, amp=amp), repeats, device)
    return {"eval_windows_per_s": 8 / per_volume}


def evaluation_speed(method: Any, size: int, device: torch.device, amp: bool, repeats: int = 2) -> dict[str, float]:
    """Slices per second through prediction (resize in and out included) and seconds per volume of
    the metrics of an ACDC-size volume (10 x 256 x 216, three classes)."""
    rng = np.random.default_rng(0)
    volume = rng.random((16, size, size)).astype(np.float32)
    method.eval()
    predict_volume(method, volume, size, device, amp=amp)  # warm-up
    per_volume = _timed(lambda: predict_volume(method, volume, size, device, amp=amp), repeats, device)
    ref = np.zeros((10, 256, 216), np.uint8)
    ref[2:8, 60:180, 50:170] = 1
    ref[3:7, 90:150, 80:140] = 2
    ref[4:6, 110:130, 100:120] = 3
    pred = np.roll(ref, (0, 3, -2), axis=(0, 1, 2))
    start = time.perf_counter()
    volume_metrics(pred, ref, ["background", "RV", "Myo", "LV"], (10.0, 1.5, 1.5))
    return {"eval_slices_per_s": volume.shape[0] / per_volume, "metrics_s_per_volume": time.perf_counter() - start}


def speed(methods: Sequence[str], profile: str = "quick", overrides: Sequence[str] = (), device_name: str = "auto",
          steps: int = 20, warmup: int = 3, log: Callable[[str], None] = print,
          dataset: str = "synthetic-cardiac", vs_bare: int = 0) -> dict[str, Any]:
    """Rows (one per method and stage) and the evaluation figures of UNet-L; with ``vs_bare`` rounds,
    ``overhead``: each method's last-stage step against a bare loop of the same work."""
    device = pick_device(device_name)
    names = list(dict.fromkeys([BASELINE, *methods]))
    scoped = scope_overrides(names, overrides)
    measured: dict[str, tuple[list[dict[str, Any]], Any]] = {}
    for name in names:
        log(f"timing {name} ({steps} steps after {warmup} warm-up, each stage)")
        measured[name] = measure_method(name, profile, scoped[name], device, steps, warmup, dataset, vs_bare)
    base_step = measured[BASELINE][0][-1]["step_s"]
    rows = []
    for name in names:
        if name == BASELINE and BASELINE not in methods:
            continue
        stages, (cfg, _) = measured[name]
        for m in stages:
            rows.append(SpeedRow(
                name, m["stage"], m["step_s"], 1.0 / m["step_s"], m["step_s"] / base_step,
                min(1.0, m["batch_s"] / m["step_s"]), m["peak_mem_mb"], peak_memory_kind(device),
                cfg.train.batch_size, _size(cfg.train), precision(device, cfg.train.amp)))
    cfg, method = measured[BASELINE][1]
    size = inference_size(cfg.train)
    evaluation = window_speed(method, size, device, cfg.train.amp) if isinstance(size, Window) else \
        evaluation_speed(method, size, device, cfg.train.amp)
    return {"device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
            else "cpu", "threads": torch.get_num_threads(), "torch": torch.__version__, "profile": profile,
            "dataset": dataset,
            "baseline": {"method": BASELINE, "step_s": base_step}, "rows": [asdict(r) for r in rows],
            "evaluation": evaluation,
            "overhead": [m["overhead"] for name in names for m in measured[name][0] if "overhead" in m]}


def _size(train: Any) -> int | str:
    return train.image_size if train.dims == 2 else "x".join(str(p) for p in train.patch_size)


def render(report: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report, indent=2)
    table = [(r["method"], r["stage"], f"{1000 * r['step_s']:.1f}", f"{r['it_s']:.2f}", f"{r['ratio_to_unet_l']:.2f}",
              f"{100 * r['outside_share']:.0f}%", f"{r['peak_mem_mb']:.0f}", r["precision"]) for r in report["rows"]]
    head = ["method", "stage", "step [ms]", "it/s", "x UNet-L", "batch prep", "peak MB", "precision"]
    ev = report["evaluation"]
    size = report["rows"][0]["image_size"] if report["rows"] else ""
    if "eval_windows_per_s" in ev:
        tail = f"\n\nevaluation (UNet-L, sliding window of {size} voxels): {ev['eval_windows_per_s']:.2f} windows/s"
    else:
        tail = (f"\n\nevaluation (UNet-L): {ev['eval_slices_per_s']:.1f} slices/s; metrics of a 10 x 256 x 216 "
                f"volume: {1000 * ev['metrics_s_per_volume']:.0f} ms")
    overhead = ""
    if report.get("overhead"):
        rows = [(o["method"], o["stage"], f"{1000 * o['bench_step_s']:.1f}", f"{1000 * o['bare_step_s']:.1f}",
                 f"{o['ratio']:.3f}", o["bare"]) for o in report["overhead"]]
        o = report["overhead"][0]
        overhead = (f"\n\n**the trainer's overhead: bench's step (batch sampled and augmented on the device, "
                    f"schedule, log) against a bare loop of the same work (one batch made beforehand, plain SGD); "
                    f"medians of {o['rounds']} alternating rounds of {o['steps']} steps**\n\n"
                    + tabulate(rows, headers=["method", "stage", "bench [ms]", "bare [ms]", "x bare", "bare loop"],
                               tablefmt="github"))
    return (f"**bench speed: profile {report['profile']} on {report.get('dataset', 'synthetic-cardiac')}'s settings "
            f"({size} {'voxels' if isinstance(size, str) else 'px'}, batch "
            f"{report['rows'][0]['batch'] if report['rows'] else ''}), {report['device']} ({report['device_name']}), "
            f"{report['threads']} threads, torch {report['torch']}; UNet-L step {1000 * report['baseline']['step_s']:.1f}"
            f" ms; peak memory: {report['rows'][0]['peak_mem_kind'] if report['rows'] else ''}**\n\n"
            + tabulate(table, headers=head, tablefmt="github") + tail + overhead)
