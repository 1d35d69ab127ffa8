"""One run from set-up to record: ``RunJob``.

``RunJob.set_up`` builds what a run needs (dataset, labeled split, device tensors, method, trainer);
``RunJob.run`` trains it (resuming from ``last.pt``), scores the last weights, selects (best
validation Dice or last), scores the selected weights when they differ, and writes the record. The
method itself is built by ``sslbench.method.build_method``, the one factory that runs, ``bench
predict``, ``bench speed`` and the conformance kit share.

The dataset is read through a ``DatasetUse`` (its shared lock is held by the caller for the run's
whole life): its fingerprint is checked before each validation and before and after evaluation, and
recorded (``run.json`` ``data``). ``timing.wall_s`` counts this session from set-up to record plus
the seconds earlier sessions trained (what their checkpoint counted, as ``train_s`` does), so a
resumed run's ``wall_s`` is never below its ``train_s``.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sslbench.base.code_identity import code_identity
from sslbench.base.config import ResolvedConfig
from sslbench.base.printable import run_bar
from sslbench.base.run_files import RunFiles
from sslbench.cache import DatasetUse, PreparedDataset, prepare
from sslbench.method import METHODS, SSLMethod, build_method
from sslbench.report.evaluation import default_eval_workers, evaluate, inference_size, validation_dice
from sslbench.report.metrics import EMPTY_POLICY
from sslbench.run.environment import pick_device, seed_everything
from sslbench.run.record import make_record
from sslbench.run.specs import RunOptions, RunSpec
from sslbench.splits import split_labeled
from sslbench.train.peak_memory import reset_peak_memory
from sslbench.train.trainer import TrainData, Trainer
from sslbench.train.volumes import VolumeData, volume_data


class SessionTrainer(Trainer):
    """The trainer of a run, which also remembers the seconds earlier sessions trained (restored from
    ``last.pt`` when it resumes): the record's wall time counts them, as ``train_s`` does."""

    earlier_s: float = 0.0

    def resume(self) -> int | None:
        at = super().resume()
        self.earlier_s = sum(self.elapsed.values()) if at is not None else 0.0
        return at


def build_train_data(ds: PreparedDataset, labeled: list[str], unlabeled: list[str], size: int,
                     device: torch.device) -> TrainData:
    """The training slices on the device, with their labeled / unlabeled indices, each slice's
    relative position in its volume and its native aspect ratio."""
    images, labels, owner = ds.train_slices(size)
    train_ids = [c.id for c in ds.split_cases("train")]
    lab_set = {train_ids.index(c) for c in labeled}
    unl_set = {train_ids.index(c) for c in unlabeled}
    owner = np.asarray(owner)
    lab_idx = np.flatnonzero(np.isin(owner, sorted(lab_set)))
    unl_idx = np.flatnonzero(np.isin(owner, sorted(unl_set)))
    first = np.searchsorted(owner, owner)  # slices of a case are contiguous and in order
    depth = np.bincount(owner)[owner]
    positions = (np.arange(len(owner)) - first + 0.5) / depth
    native = np.array([c.shape[1:3] for c in ds.split_cases("train")], dtype=np.float64).reshape(-1, 2)
    aspect = (native[:, 0] / native[:, 1])[owner]  # each slice's native height / width
    return TrainData(
        positions=torch.from_numpy(positions.astype(np.float32)).to(device),
        aspect=torch.from_numpy(aspect.astype(np.float32)).to(device),
        images=torch.from_numpy(np.array(images, dtype=np.float32))[:, None].to(device),
        labels=torch.from_numpy(np.array(labels)).to(device),
        labeled=torch.from_numpy(lab_idx).long().to(device),
        unlabeled=torch.from_numpy(unl_idx).long().to(device),
    )


def build_volume_data(ds: PreparedDataset, labeled: list[str], unlabeled: list[str], patch: tuple[int, ...],
                      device: torch.device) -> VolumeData:
    """The 3-D track's training volumes on the device (whole, padded by UA-MT's crop rule)."""
    ids = labeled + unlabeled
    volumes = [ds.volume(cid) for cid in ids]
    return volume_data(volumes, range(len(labeled)), range(len(labeled), len(ids)), patch, device)


def validation_ids(ds: PreparedDataset, cfg: ResolvedConfig) -> list[str]:
    """The validation volumes; none for a dataset without them (UA-MT's LA split) when the last
    weights are selected. Selecting the best without them is the dataset's error naming why."""
    if cfg.train.select == "last" and not ds.split_cases("val"):
        return []
    return [c.id for c in ds.eval_cases("val")]


def prediction_saver(ds: PreparedDataset, out: Path) -> Callable[[str, np.ndarray], None]:
    """Write each predicted label volume: NIfTI in the source geometry when the dataset came from
    NIfTI (opens over the original image in 3D Slicer / ITK-SNAP), else a (D, H, W) .npy."""
    from sslbench.base.atomic import atomic_path

    cases = {c.id: c for c in ds.cases}

    def save(cid: str, pred: np.ndarray) -> None:
        geometry = cases[cid].geometry
        if geometry is not None:
            from sslbench.io.nifti import geometry_from_json, save_volume

            save_volume(pred, geometry_from_json(geometry), out / f"{cid}.nii.gz")
        else:
            with atomic_path(out / f"{cid}.npy") as tmp, tmp.open("wb") as fh:
                np.save(fh, pred)

    return save


@dataclass
class RunJob:
    """Everything one run needs once it is set up, and the steps from there to its record."""

    spec: RunSpec
    cfg: ResolvedConfig
    opts: RunOptions
    files: RunFiles
    device: torch.device
    ds: PreparedDataset
    labeled: list[str]
    data: TrainData | VolumeData
    method: SSLMethod
    trainer: SessionTrainer
    code: dict[str, Any]  # the code identity its record states
    use: DatasetUse       # the dataset as the run opened it: its fingerprint, checked and recorded

    @classmethod
    def set_up(cls, spec: RunSpec, opts: RunOptions, files: RunFiles, log: Callable[[str], None],
               code: dict[str, Any] | None = None, use: DatasetUse | None = None) -> RunJob:
        """Data, split, method and trainer of a run (the evaluation split is checked before training).
        ``use``: the dataset opened under its shared lock, held by the caller until the run ends;
        without it the dataset is opened unlocked (its fingerprint is still checked)."""
        method_cls: type[SSLMethod] = METHODS.get(spec.method)
        cfg = spec.resolved()
        device = pick_device(opts.device)
        reset_peak_memory(device)
        if use is None:
            use = DatasetUse(prepare(spec.dataset, cache_root=opts.cache).folder, spec.label, log, lock=False).open()
        ds = use.dataset
        assert ds is not None
        labeled, unlabeled = split_labeled(ds, spec.ratio, spec.seed, cfg.data.split)
        used = unlabeled if method_cls.uses_unlabeled else []
        seed_everything(spec.seed)
        method = build_method(method_cls, cfg.method, cfg.train, ds.num_classes, device)  # a 2-D-only method fails here
        data = build_train_data(ds, labeled, used, cfg.train.image_size, device) if cfg.train.dims == 2 else \
            build_volume_data(ds, labeled, used, cfg.train.patch_size, device)
        val_ids = validation_ids(ds, cfg)
        ds.eval_cases(cfg.data.eval_split)  # fail before training, not after it
        size = inference_size(cfg.train)

        def validate() -> float:
            use.check("during training")  # never a validation score of other data than the training's
            return validation_dice(method, ds, val_ids, size, device, cfg.train.amp)

        trainer = SessionTrainer(method, data, cfg.train, spec.seed, validate=validate if val_ids else None, files=files,
                                 progress=opts.progress, desc=spec.label, warn=lambda m: log(f"warning: {m}"))
        return cls(spec, cfg, opts, files, device, ds, labeled, data, method, trainer,
                   code if code is not None else code_identity(method_cls), use)

    def evaluate(self, name: str, save: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
        """Metrics of the inference network's current weights on the evaluation split, written to
        ``name`` (``metrics.json`` for the selected weights, ``metrics-last.json`` for the last ones);
        predictions are saved for the selected weights only."""
        cfg, ds, opts = self.cfg, self.ds, self.opts
        eval_ids = [c.id for c in ds.eval_cases(cfg.data.eval_split)]
        saver = prediction_saver(ds, self.files.predictions) if opts.save_predictions and save else None
        workers = default_eval_workers(self.device) if opts.eval_workers is None else opts.eval_workers
        weights = "last" if name == RunFiles.METRICS_LAST else "selected"
        started = time.time()
        bar = run_bar(len(eval_ids), f"{self.spec.label} [evaluate {weights} weights]", opts.progress, unit="vol")

        def on_case(done: int, total: int) -> None:
            bar.update(1)
            self.trainer.evaluation_progress(weights, done, total, started)

        self.trainer.evaluation_progress(weights, 0, len(eval_ids), started)  # before its first volume
        try:
            metrics = evaluate(self.method, ds, eval_ids, inference_size(cfg.train), self.device, cfg.train.amp,
                               saver, workers, on_case)
        finally:
            bar.close()
        policy = {**EMPTY_POLICY, "spacing": "mm from the dataset" if all(c.spacing for c in ds.cases) else "voxels",
                  "connectivity": 1}
        self.files.write(name, {**metrics, "policy": policy})
        return metrics, policy

    def run(self, t0: float, log: Callable[[str], None]) -> dict[str, Any]:
        """Train, score the last weights, select, score the selected ones (once when they are the
        last), write the record and mark the run done; returns the record."""
        spec, files, trainer = self.spec, self.files, self.trainer
        if files.has_checkpoint(RunFiles.LAST):
            log(f"resuming {spec.label} from its checkpoint")
        fit = trainer.fit(select=False)
        if fit.resumed_from is not None:
            log(f"resumed {spec.label} at iteration {fit.resumed_from} of stage '{fit.resumed_stage}'")
        t_eval = time.perf_counter()
        self.use.check("before evaluation")
        last_iteration = trainer.iteration  # the checkpoint protocol in full: best on validation and last
        last, policy = self.evaluate(RunFiles.METRICS_LAST, save=False)
        fit = trainer.select(fit)
        if fit.selected == "last" or fit.best_iteration == last_iteration:
            metrics = last                       # the same weights: scored once
            files.write(RunFiles.METRICS, {**metrics, "policy": policy})
            if self.opts.save_predictions:
                self.evaluate(RunFiles.METRICS)
        else:
            metrics, policy = self.evaluate(RunFiles.METRICS)
        self.use.check("during evaluation")  # the record states one dataset, or there is none
        now = time.perf_counter()
        record = make_record(self, fit, metrics, policy, wall_s=now - t0 + trainer.earlier_s, eval_s=now - t_eval)
        record["last"] = {"iteration": last_iteration, "summary": last["foreground_mean"], "per_class": last["mean"]}
        files.write(RunFiles.RECORD, record)
        files.mark_done()
        files.prune_checkpoints(self.opts.keep_checkpoints)
        return record
