"""The run record (``run.json``): what one finished run was and what it scored, in one place.

Identity (dataset, profile, method, tag, ratio, seed), the prepared data it read (``data``: name and
fingerprint, checked unchanged from set-up to record), the code that made it (``code``: the method's
and the core's hashes, the version), configuration and split, selection, results of the selected
weights (``summary`` / ``per_class``; the last weights' under ``last``), cost and environment.
``sslbench.base.records.check_record`` is its reader's side.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sslbench.method import METHODS
from sslbench.run.environment import environment
from sslbench.run.specs import overrides_hash, protocol_overrides
from sslbench.train.peak_memory import peak_memory_kind, peak_memory_mb
from sslbench.train.precision import precision

if TYPE_CHECKING:
    from sslbench.run.job import RunJob


def make_record(job: RunJob, fit: Any, metrics: dict[str, Any], policy: dict[str, Any], wall_s: float,
                eval_s: float) -> dict[str, Any]:
    """The record of ``job`` once its selected weights scored ``metrics``. ``wall_s``: the run's time
    over all its sessions (this one from set-up, earlier ones' training), so never below ``train_s``."""
    spec, cfg, method, device = job.spec, job.cfg, job.method, job.device
    entry = METHODS.entry(spec.method)
    return {
        "id": f"{spec.dataset}/{spec.profile}/{spec.folder_method}/ratio-{spec.ratio:g}/seed-{spec.seed}",
        "dataset": spec.dataset, "data": job.use.identity, "profile": spec.profile, "method": spec.method,
        "paper_name": entry.obj.paper_name, "variant": spec.tag, "method_source": entry.source,
        "method_class": entry.class_path, "code": job.code,
        "ratio": spec.ratio, "seed": spec.seed, "overrides": list(spec.overrides), "config_hash": cfg.hash(),
        "classes": list(job.ds.classes[1:]), "eval_split": cfg.data.eval_split,
        "n_eval_volumes": len(metrics["metric_per_case"]),
        "split": cfg.data.split, "labeled_cases": job.labeled, "n_labeled_slices": int(job.data.labeled.numel()),
        "n_unlabeled_slices": int(job.data.unlabeled.numel()), "inference_net": method.inference_net_name,
        "precision": precision(device, cfg.train.amp), "stage_iterations": dict(job.trainer.lengths),
        "schedule": {"image_size": cfg.train.image_size if cfg.train.dims == 2 else
                     "x".join(str(p) for p in cfg.train.patch_size), "batch_size": cfg.train.batch_size,
                     "labeled_bs": cfg.train.labeled_bs, "lr_schedule": cfg.train.lr_schedule,
                     "select": cfg.train.select},
        "protocol_overrides": (protocol := protocol_overrides(spec)), "overrides_hash": overrides_hash(protocol),
        "params": {"trained": sum(p.numel() for p in method.optim_parameters())
                   + sum(p.numel() for extra in method.extra_optimizers().values() for p in extra.params),
                   "inference": sum(p.numel() for p in method.inference_net().parameters())},
        "selection": {"rule": fit.selected, "iteration": fit.best_iteration,
                      "val_dice": None if fit.best_score != fit.best_score else fit.best_score,
                      **({"note": fit.selection_note} if fit.selection_note else {}),
                      **({"carried": fit.carried} if fit.carried else {})},
        "summary": metrics["foreground_mean"], "per_class": metrics["mean"],
        "timing": {"wall_s": wall_s, "train_s": sum(fit.stage_seconds.values()),
                   "eval_s": eval_s, "val_s": fit.validation_s, "checkpoint_s": fit.checkpoint_s,
                   "stage_s": fit.stage_seconds, "iters_per_s": fit.iterations_per_second,
                   "peak_mem_mb": peak_memory_mb(device), "stage_peak_mem_mb": fit.stage_peak_mem_mb,
                   "peak_mem_kind": peak_memory_kind(device), "resumed_from": fit.resumed_from},
        "metric_policy": policy,
        "env": environment(device),
    }
