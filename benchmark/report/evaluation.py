"""Volume evaluation: slice-wise inference at the training size, prediction resized back to native
size with SSL4MIS's ``zoom(order=0)`` mapping (``sslbench.io.resize``), metrics on the reassembled 3-D
volume (mm when spacing is known). In 3-D (``train.dims = 3``) the volume is predicted whole by UA-MT's
sliding window (``sslbench.nn.sliding_window``: its patch and strides, overlapping softmax averaged)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sslbench.base.config import TrainConfig
from sslbench.cache import PreparedDataset
from sslbench.io.resize import resize_slices
from sslbench.method import SSLMethod
from sslbench.report.metrics import DISTANCE_KEYS, dice, volume_metrics
from sslbench.train.precision import autocast

SUMMARY_KEYS = ("dice",) + DISTANCE_KEYS


@dataclass(frozen=True)
class Window:
    """3-D inference: the sliding window's patch (D, H, W) and its strides (in-plane, through-plane)."""

    patch: tuple[int, int, int]
    stride_xy: int
    stride_z: int


def inference_size(train: TrainConfig) -> int | Window:
    """What inference needs of the schedule: the slice size in 2-D, the sliding window in 3-D."""
    if train.dims == 3:
        return Window(tuple(train.patch_size), train.stride_xy, train.stride_z)  # type: ignore[arg-type]
    return train.image_size


@torch.no_grad()
def predict_window(method: SSLMethod, image: np.ndarray, window: Window, device: torch.device,
                   amp: bool = True, batch: int = 2) -> np.ndarray:
    """Label map (D, H, W) uint8 of a whole volume by UA-MT's sliding window. The window module works
    in the release's axis order (in-plane first, through-plane last): the volume goes in as (H, W, D)
    and each window is handed to the network as (D, H, W)."""
    from sslbench.nn.sliding_window import sliding_window_predict

    pd, ph, pw = window.patch

    def net(x: torch.Tensor) -> torch.Tensor:
        with autocast(device, amp):
            return method.predict(x.permute(0, 1, 4, 2, 3)).float().permute(0, 1, 3, 4, 2)

    labels, _ = sliding_window_predict(net, np.ascontiguousarray(np.asarray(image, np.float32).transpose(1, 2, 0)),
                                       method.ctx.num_classes, (ph, pw, pd), window.stride_xy, window.stride_z,
                                       device, batch)
    return np.ascontiguousarray(labels.transpose(2, 0, 1))


@torch.no_grad()
def predict_volume(method: SSLMethod, image: np.ndarray, size: int | Window, device: torch.device,
                   interpolation: str = "nearest", batch: int = 32, amp: bool = True) -> np.ndarray:
    """Label map (D, H, W) uint8 for one volume: slice by slice at ``size``, or by the 3-D window."""
    if isinstance(size, Window):
        return predict_window(method, image, size, device, amp)
    depth, h, w = image.shape
    x = resize_slices(torch.from_numpy(np.array(image, dtype=np.float32)).to(device), size,
                      interpolation)
    labels = []
    with autocast(device, amp):
        for i in range(0, depth, batch):
            labels.append(method.predict(x[i:i + batch, None]).argmax(1).to(torch.uint8))
    pred = resize_slices(torch.cat(labels), (h, w), "nearest")
    return pred.cpu().numpy()


def validation_dice(method: SSLMethod, ds: PreparedDataset, case_ids: Sequence[str], size: int | Window,
                    device: torch.device, amp: bool = True) -> float:
    """Mean foreground Dice over volumes (the model-selection score; no distances, it runs often)."""
    scores = []
    for cid in case_ids:
        image, label = ds.volume(cid)
        pred = predict_volume(method, np.asarray(image), size, device, ds.interpolation, amp=amp)
        label = np.asarray(label)
        scores.append(float(np.mean([dice(pred == c, label == c) for c in range(1, ds.num_classes)])))
    return float(np.mean(scores))


def evaluate(method: SSLMethod, ds: PreparedDataset, case_ids: Sequence[str], size: int | Window,
             device: torch.device, amp: bool = True,
             on_prediction: Callable[[str, np.ndarray], None] | None = None, workers: int = 0,
             on_case: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Every metric per case and class, plus the case-averaged per-class and foreground means.
    ``on_prediction(case, labels)`` receives each predicted label volume (to save it);
    ``on_case(done, total)`` is told after each volume is predicted (progress: a 3-D test set at its
    release's windows takes tens of minutes on a CPU).

    With ``workers > 0`` the metrics of each volume are computed in that many worker processes while
    the next volume is predicted here (the surface distances are CPU work that the prediction does
    not need to wait for); results are the same and in the same order."""
    spacings = {c.id: c.spacing for c in ds.cases}
    pool = None
    if workers > 0 and len(case_ids) > 1:
        pool = metric_pool(workers)
    try:
        pending = []
        for cid in case_ids:
            image, label = ds.volume(cid)
            pred = predict_volume(method, np.asarray(image), size, device, ds.interpolation, amp=amp)
            if on_prediction is not None:
                on_prediction(cid, pred)
            args = (pred, np.asarray(label), ds.classes, spacings[cid])
            pending.append((cid, pool.submit(volume_metrics, *args) if pool is not None else volume_metrics(*args)))
            if on_case is not None:
                on_case(len(pending), len(case_ids))
        per_case = [{"case": cid, "spacing": spacings[cid], "metrics": m.result() if pool is not None else m}
                    for cid, m in pending]
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return {"metric_per_case": per_case, **summarise(per_case, ds.classes[1:])}


def metric_pool(workers: int) -> Any:
    """A pool of ``workers`` metric processes that die with this process: a ``kill -9`` of a run must
    not leave them (and the fork server they hold open) waiting forever on a queue nobody writes."""
    import os
    from concurrent.futures import ProcessPoolExecutor

    from sslbench.base.lifetime import die_with

    return ProcessPoolExecutor(max_workers=workers, mp_context=_metric_context(), initializer=die_with,
                               initargs=(os.getpid(),))


def _metric_context() -> Any:
    """Workers that start fast and never inherit the trainer's threads or device: forked from a
    server process that has imported the metrics (and the watch that ends them with their owner) once
    (Linux), else spawned."""
    import multiprocessing as mp

    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["sslbench.report.metrics", "sslbench.base.lifetime"])
        return ctx
    return mp.get_context("spawn")


def default_eval_workers(device: torch.device) -> int:
    """With prediction on a GPU, all cores but one compute metrics. With prediction on the CPU it
    already uses every core and dominates (ACDC val at 128 px on 2 cores: predict 2.2 s, metrics
    0.24 s), so a pool's start-up would cost more than it saves: none."""
    import os

    return max((os.cpu_count() or 1) - 1, 0) if device.type == "cuda" else 0


def summarise(per_case: list[dict[str, Any]], class_names: Sequence[str]) -> dict[str, Any]:
    mean = {name: {k: float(np.mean([c["metrics"][name][k] for c in per_case])) for k in SUMMARY_KEYS}
            for name in class_names}
    foreground = {k: float(np.mean([mean[name][k] for name in class_names])) for k in SUMMARY_KEYS}
    return {"mean": mean, "foreground_mean": foreground}
