"""``bench predict``: a finished run's predictions from its stored weights, without training.

The run is rebuilt from what its folder stored (``config.json``'s configuration, the record's
evaluated network), never from today's TOML files, so a profile edited since does not change the
network that loads the weights.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sslbench.base.code_identity import method_code
from sslbench.base.config import stored_config
from sslbench.base.errors import BenchError, ConfigError
from sslbench.base.fields import FieldError, integer, mapping, name, number, strings, text
from sslbench.base.run_files import RunFiles
from sslbench.cache import DatasetUse, PreparedDataset, prepare
from sslbench.method import METHODS, build_method
from sslbench.report.evaluation import inference_size, predict_volume
from sslbench.run.environment import pick_device
from sslbench.run.job import prediction_saver
from sslbench.run.specs import RunSpec


def stored_spec(files: RunFiles) -> RunSpec:
    """The run spec and configuration a run folder's ``config.json`` holds (checked field by field)."""
    stored = files.read(RunFiles.CONFIG)
    where = str(files.path(RunFiles.CONFIG))
    try:
        given = mapping(mapping(stored, "config.json")["spec"], "spec")
        overrides = strings(given.get("overrides", []), "spec.overrides")
        spec = RunSpec(name(given.get("dataset"), "spec.dataset"), name(given.get("method"), "spec.method"),
                       number(given.get("ratio"), "spec.ratio", 0.0, 100.0), integer(given.get("seed"), "spec.seed", 0),
                       name(given.get("profile"), "spec.profile"), tuple(overrides), text(given.get("tag", ""), "spec.tag"))
        cfg = stored_config(METHODS.get(spec.method).Config, stored, where)
    except (KeyError, FieldError, ConfigError) as exc:
        raise BenchError(f"{where}: not a run configuration this code can load ({exc})") from None
    object.__setattr__(spec, "config", cfg)
    return spec


def predict_run(folder: Path, cache: Path | None = None, device: str = "auto",
                cases: Sequence[str] | None = None, log: Callable[[str], None] = print) -> list[Path]:
    """Predictions of a finished run from its stored weights, without training: the network its
    record evaluated (``ckpt/best.pt``, else the resumable ``last.pt``) on ``cases`` (default: its
    evaluation split), written under ``<run>/predictions`` as ``--save-predictions`` writes them."""
    files = RunFiles(folder)
    files.check()  # predictions/ is written: never through a planted link
    record = files.record() if files.path(RunFiles.DONE).is_file() else None
    if record is None:
        raise BenchError(f"{folder}: not a finished run (no DONE, or its run.json is missing or damaged)")
    spec = stored_spec(files)
    stored = (record.get("code") or {}).get("method")
    now = method_code(METHODS.get(spec.method))
    if stored and now and stored != now:
        log(f"warning: {folder}: its method's code changed since it ran ({stored} -> {now}): these predictions "
            "come from today's code with the old weights (bench run --rerun-stale retrains the run)")
    dev = pick_device(device)
    prepared = prepare(spec.dataset, cache_root=cache)
    with DatasetUse(prepared.folder, f"bench predict {folder}", log) as use:  # never re-prepared under it
        ran_on = record["data"].get("fingerprint") if isinstance(record.get("data"), dict) else None
        if isinstance(ran_on, str) and ran_on != use.fingerprint:
            log(f"warning: {folder}: {spec.dataset} was prepared again since this run was evaluated (fingerprint "
                f"{ran_on[:16]} -> {use.fingerprint}); these predictions are of today's data")
        assert use.dataset is not None
        return _predict(files, spec, record, use.dataset, dev, cases, log)


def _predict(files: RunFiles, spec: RunSpec, record: dict[str, Any], ds: PreparedDataset, dev: torch.device,
             cases: Sequence[str] | None, log: Callable[[str], None]) -> list[Path]:
    """``predict_run``'s work once the dataset is held: load the weights, predict, save."""
    folder = files.folder
    cfg = spec.resolved()
    cls = METHODS.get(spec.method)
    method = build_method(cls, cfg.method, cfg.train, ds.num_classes, dev)
    if record.get("inference_net") in getattr(cls, "eval_nets", ()):  # the network the run evaluated
        method.inference_net_name = record["inference_net"]
    name_ = RunFiles.BEST if files.has_checkpoint(RunFiles.BEST) and record["selection"]["rule"] == "best" \
        else RunFiles.LAST if files.has_checkpoint(RunFiles.LAST) else None
    if name_ is None:
        raise BenchError(f"{folder}: no stored weights (ckpt/best.pt or ckpt/last.pt; --keep-checkpoints none?)")
    try:
        saved = files.load_checkpoint(name_, dev)
        if name_ == RunFiles.BEST:
            method.inference_net().load_state_dict(saved["weights"])
            which = f"best.pt (iteration {saved.get('iteration')})"
        else:
            method.load_state_dict(saved["method"])
            which = "last.pt"
    except BenchError:
        raise
    except Exception as exc:  # noqa: BLE001 - truncated, foreign or another network's: one line naming it
        raise BenchError(f"{files.ckpt / name_}: not usable weights of this run ({type(exc).__name__}: "
                         f"{str(exc)[:200]})") from None
    wanted = list(cases) if cases else [c.id for c in ds.eval_cases(cfg.data.eval_split)]
    known = {c.id for c in ds.cases}
    unknown = [c for c in wanted if c not in known]
    if unknown:
        raise BenchError(f"--cases {unknown[0]}: not a case of {spec.dataset}")
    saver = prediction_saver(ds, files.predictions)
    written = []
    for cid in wanted:
        image, _ = ds.volume(cid)
        saver(cid, predict_volume(method, np.asarray(image), inference_size(cfg.train), dev, ds.interpolation,
                                  amp=cfg.train.amp))
        written.append(cid)
    log(f"{folder}: {len(written)} prediction(s) from {which} in {files.predictions}")
    return [files.predictions / c for c in written]
