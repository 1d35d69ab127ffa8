"""Volume evaluation: slice-wise inference at the training size, prediction resized back to native
size with SSL4MIS's ``zoom(order=0)`` mapping (``sslbench.io.resize``), metrics on the reassembled 3-D
volume (mm when spacing is known)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from sslbench.data import PreparedDataset
from sslbench.io.resize import resize_slices
from sslbench.method import SSLMethod
from sslbench.report.metrics import DISTANCE_KEYS, dice, volume_metrics
from sslbench.train.precision import autocast

SUMMARY_KEYS = ("dice",) + DISTANCE_KEYS


@torch.no_grad()
def predict_volume(method: SSLMethod, image: np.ndarray, size: int, device: torch.device,
                   interpolation: str = "nearest", batch: int = 32, amp: bool = True) -> np.ndarray:
    """Label map (D, H, W) uint8 for one volume."""
    depth, h, w = image.shape
    x = resize_slices(torch.from_numpy(np.array(image, dtype=np.float32)).to(device), size,
                      interpolation)
    labels = []
    with autocast(device, amp):
        for i in range(0, depth, batch):
            labels.append(method.predict(x[i:i + batch, None]).argmax(1).to(torch.uint8))
    pred = resize_slices(torch.cat(labels), (h, w), "nearest")
    return pred.cpu().numpy()


def validation_dice(method: SSLMethod, ds: PreparedDataset, case_ids: Sequence[str], size: int,
                    device: torch.device, amp: bool = True) -> float:
    """Mean foreground Dice over volumes (the model-selection score; no distances, it runs often)."""
    scores = []
    for cid in case_ids:
        image, label = ds.volume(cid)
        pred = predict_volume(method, np.asarray(image), size, device, ds.interpolation, amp=amp)
        label = np.asarray(label)
        scores.append(float(np.mean([dice(pred == c, label == c) for c in range(1, ds.num_classes)])))
    return float(np.mean(scores))


def evaluate(method: SSLMethod, ds: PreparedDataset, case_ids: Sequence[str], size: int,
             device: torch.device, amp: bool = True,
             on_prediction: Callable[[str, np.ndarray], None] | None = None) -> dict[str, Any]:
    """Every metric per case and class, plus the case-averaged per-class and foreground means.
    ``on_prediction(case, labels)`` receives each predicted label volume (to save it)."""
    per_case = []
    spacings = {c.id: c.spacing for c in ds.cases}
    for cid in case_ids:
        image, label = ds.volume(cid)
        pred = predict_volume(method, np.asarray(image), size, device, ds.interpolation, amp=amp)
        if on_prediction is not None:
            on_prediction(cid, pred)
        per_case.append({"case": cid, "spacing": spacings[cid],
                         "metrics": volume_metrics(pred, np.asarray(label), ds.classes, spacings[cid])})
    return {"metric_per_case": per_case, **summarise(per_case, ds.classes[1:])}


def summarise(per_case: list[dict[str, Any]], class_names: Sequence[str]) -> dict[str, Any]:
    mean = {name: {k: float(np.mean([c["metrics"][name][k] for c in per_case])) for k in SUMMARY_KEYS}
            for name in class_names}
    foreground = {k: float(np.mean([mean[name][k] for name in class_names])) for k in SUMMARY_KEYS}
    return {"mean": mean, "foreground_mean": foreground}
