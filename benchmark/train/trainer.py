"""The one trainer: every method gets the same schedule, sampling, optimiser, selection and resume.

Per stage (most methods have one, ``train``; MONA-like methods add ``pretrain``) it runs an
iteration-based loop: sample a labeled + unlabeled batch from slices kept on the device, augment it on
the device, call ``method.training_step``, sum the ``*loss*`` terms, step SGD (poly or step decay),
call ``method.after_step`` (EMA, banks). Every ``val_every`` iterations of the last stage it scores
the validation volumes, keeps the best weights (``best.pt``) and writes a resumable checkpoint
(``last.pt``: method, optimiser, samplers, RNG states, counters); a stage the method names in
``carry_best_of`` is validated too, and the next stage starts from its best weights. Losses are
accumulated on the device and read back only at log points, where NaN/Inf is caught; nothing in the
step waits for the host. AMP (bf16) runs on CUDA only.
"""
from __future__ import annotations

import copy
import inspect
import json
import logging
import math
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from sslbench.base.atomic import atomic_path, write_json
from sslbench.base.config import TrainConfig
from sslbench.base.errors import BenchError, TrainingDiverged
from sslbench.method import Batch, ExtraOptimizer, SSLMethod, StepInfo
from sslbench.nn.augment import ssl4mis_weak
from sslbench.train.interrupt import Interrupted, stop_requested
from sslbench.train.peak_memory import peak_memory_mb, reset_peak_memory
from sslbench.train.precision import autocast
from sslbench.train.sampler import CyclicSampler


@dataclass
class TrainData:
    """Training slices on the device: images (N, C, S, S) float, labels (N, S, S) uint8, the indices
    of the labeled and unlabeled slices, each slice's relative position in its volume (N,) in
    [0, 1) (GCL's partition positives; None when unknown) and its native height / width (N,) before
    the resize to S x S (the weak rotation's aspect; None: square)."""

    images: Tensor
    labels: Tensor
    labeled: Tensor
    unlabeled: Tensor
    positions: Tensor | None = None
    aspect: Tensor | None = None


@dataclass
class FitResult:
    selected: str                   # "best" or "last"
    best_iteration: int
    best_score: float
    stage_seconds: dict[str, float] = field(default_factory=dict)
    iterations_per_second: dict[str, float] = field(default_factory=dict)
    stage_peak_mem_mb: dict[str, float] = field(default_factory=dict)  # this session's part of each stage
    resumed_from: int | None = None
    resumed_stage: str | None = None
    selection_note: str = ""        # why the rule in ``selected`` differs from the config's, if it does
    # per ``carry_best_of`` stage: the iteration and validation Dice of the weights the next stage began with
    carried: dict[str, dict[str, Any]] = field(default_factory=dict)


def stage_iterations(method: SSLMethod, cfg: TrainConfig) -> dict[str, int]:
    lengths = {"train": cfg.iterations, "pretrain": cfg.pretrain_iterations}
    out = {}
    for stage in method.stages:
        if stage not in lengths:
            raise BenchError(f"method '{method.name}' declares unknown stage '{stage}'")
        if lengths[stage] <= 0:
            raise BenchError(f"method '{method.name}' needs train.{stage}_iterations > 0")
        out[stage] = lengths[stage]
    return out


class Trainer:
    def __init__(self, method: SSLMethod, data: TrainData, cfg: TrainConfig, seed: int,
                 validate: Callable[[], float] | None = None, run_dir: Path | None = None,
                 progress: bool = True, desc: str = "", warn: Callable[[str], None] | None = None) -> None:
        self.method = method
        self.warn = warn or (lambda message: logging.getLogger("sslbench").warning(message))
        self.data = data
        self.cfg = cfg
        self.device = data.images.device
        self.validate = validate
        self.run_dir = run_dir
        self.progress = progress
        self.desc = desc
        self.lengths = stage_iterations(method, cfg)
        self._hook_takes_outputs = len(inspect.signature(method.after_step).parameters) >= 2
        self.stages = list(self.lengths)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self.lab_sampler = CyclicSampler(data.labeled, self.generator)
        self.unl_sampler = CyclicSampler(data.unlabeled, self.generator) if method.uses_unlabeled else None
        if method.uses_unlabeled and data.unlabeled.numel() == 0:
            raise BenchError(f"method '{method.name}' needs unlabeled data but the split has none")
        self.stage_index = 0
        self.iteration = 0
        self.best_score = -math.inf
        self.best_iteration = -1
        self.carried: dict[str, dict[str, Any]] = {}  # a carry_best_of stage's best (iteration, val_dice)
        self.optimizer = self._make_optimizer()
        self.force_ramps = False
        self.elapsed: dict[str, float] = {}  # seconds per stage, summed over resumed sessions
        self._acc: dict[str, Tensor | float] = {}
        self._acc_n = 0
        self._log_start = 0
        self._rate_mark = (time.time(), 0, 0)  # (when, stage index, iteration) of the last progress write

    # ------------------------------------------------------------------ pieces
    @property
    def stage(self) -> str:
        return self.stages[self.stage_index]

    def _make_optimizer(self) -> torch.optim.Optimizer:
        self.extra = {name: self._make_extra(spec) for name, spec in self.method.extra_optimizers().items()}
        return torch.optim.SGD(list(self.method.optim_parameters()), lr=self.cfg.lr,
                               momentum=self.cfg.momentum, weight_decay=self.cfg.weight_decay)

    @staticmethod
    def _make_extra(spec: ExtraOptimizer) -> torch.optim.Optimizer:
        if spec.kind == "adam":
            return torch.optim.Adam(spec.params, lr=spec.lr, betas=spec.betas, weight_decay=spec.weight_decay)
        if spec.kind == "sgd":
            return torch.optim.SGD(spec.params, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
        raise BenchError(f"unknown optimiser kind '{spec.kind}' (known: adam, sgd)")

    def _optimise(self, out: dict[str, Tensor | float], optimizer: torch.optim.Optimizer, what: str) -> Tensor:
        """Sum the ``*loss*`` terms, backpropagate, step; returns the (detached) total."""
        terms = [v for k, v in out.items() if "loss" in k and not k.startswith("_")]
        if not terms or not all(torch.is_tensor(t) for t in terms):
            raise BenchError(f"method '{self.method.name}' returned no '*loss*' tensor term{what}")
        total = torch.stack([t.float() for t in terms]).sum()  # type: ignore[union-attr]
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        return total.detach()

    def lr_at(self, iteration: int) -> float:
        total = self.lengths[self.stage]
        if self.cfg.lr_schedule == "poly":
            return self.cfg.lr * (1.0 - iteration / total) ** self.cfg.poly_power
        if self.cfg.lr_schedule == "constant":
            return self.cfg.lr
        return self.cfg.lr * self.cfg.lr_gamma ** (iteration // self.cfg.lr_step)

    def step_info(self) -> StepInfo:
        return StepInfo(self.stage, self.iteration, self.lengths[self.stage], self.force_ramps, self.generator)

    def next_batch(self) -> Batch:
        cfg, d = self.cfg, self.data
        n_lab = cfg.labeled_bs if self.unl_sampler is not None else cfg.batch_size
        idx_l = self.lab_sampler.next(n_lab)
        x_l, y_l = d.images[idx_l], d.labels[idx_l].long()
        x_u, idx_u = None, None
        if self.unl_sampler is not None:
            idx_u = self.unl_sampler.next(cfg.batch_size - cfg.labeled_bs)
            x_u = d.images[idx_u]
        if cfg.augment == "ssl4mis":
            aspect = d.aspect
            x_l, y_l = ssl4mis_weak(x_l, y_l, self.generator, None if aspect is None else aspect[idx_l])
            if x_u is not None:
                x_u, _ = ssl4mis_weak(x_u, None, self.generator, None if aspect is None else aspect[idx_u])
        pos = None
        if d.positions is not None:
            pos = d.positions[idx_l] if idx_u is None else torch.cat([d.positions[idx_l], d.positions[idx_u]])
        return Batch(x_l, y_l, x_u, pos)  # type: ignore[arg-type]

    def train_step(self) -> dict[str, Tensor | float]:
        """One iteration; returns the detached named losses (tensors still on the device)."""
        info = self.step_info()
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.iteration)
        batch = self.next_batch()
        self.method.train()
        with autocast(self.device, self.cfg.amp):
            out = self.method.training_step(batch, info)
        total = self._optimise(out, self.optimizer, "")
        for name, optimizer in self.extra.items():
            with autocast(self.device, self.cfg.amp):
                extra_out = self.method.extra_step(name, batch, info)
            self._optimise(extra_out, optimizer, f" for optimiser '{name}'")
            out.update({(f"_{name}/{k[1:]}" if k.startswith("_") else f"{name}/{k}"): v for k, v in extra_out.items()})
        if self._hook_takes_outputs:
            self.method.after_step(info, out)
        else:
            self.method.after_step(info)  # a plugin written before hooks saw the outputs
        self.iteration += 1
        logged: dict[str, Tensor | float] = {
            k: (v.detach().float() if torch.is_tensor(v) else float(v)) for k, v in out.items() if not k.startswith("_")}
        logged["loss"] = total
        for k, v in logged.items():  # device tensors stay on the device; plain floats stay on the host
            self._acc[k] = self._acc[k] + v if k in self._acc else (v.clone() if torch.is_tensor(v) else v)
        self._acc_n += 1
        return logged  # type: ignore[return-value]

    # ------------------------------------------------------------------ logging
    def _flush_log(self, bar: Any = None) -> dict[str, float]:
        """Read the accumulated losses back (the only sync besides validation) and check them."""
        if not self._acc_n:
            return {}
        means = {k: float(v) / self._acc_n for k, v in self._acc.items()}
        bad = [k for k, v in means.items() if not math.isfinite(v)]
        start, self._log_start = self._log_start, self.iteration
        self._acc, self._acc_n = {}, 0
        if bad:
            raise TrainingDiverged(
                f"{self.desc}: {', '.join(bad)} became NaN/Inf between iterations {start} and "
                f"{self.iteration} of stage '{self.stage}'; the last checkpoint is kept"
            )
        record = {"stage": self.stage, "iteration": self.iteration, "lr": self.lr_at(self.iteration - 1),
                  **{k: round(v, 6) for k, v in means.items()}}
        self._write_log(record)
        self._write_progress()
        if bar is not None:
            bar.set_postfix(loss=f"{means['loss']:.4f}", refresh=False)
        return means

    def _write_progress(self) -> None:
        """``progress.json``: where this run is and how fast it goes, for ``bench status``."""
        if self.run_dir is None:
            return
        now = time.time()
        mark_t, mark_stage, mark_it = self._rate_mark
        rate = ((self.iteration - mark_it) / (now - mark_t)
                if mark_stage == self.stage_index and now > mark_t and self.iteration > mark_it else None)
        self._rate_mark = (now, self.stage_index, self.iteration)
        write_json(self.run_dir / "progress.json", {
            "stage": self.stage, "iteration": self.iteration, "stages": dict(self.lengths),
            "it_s": None if rate is None else round(rate, 4), "updated": round(now, 3),
            "host": socket.gethostname(), "pid": os.getpid()})

    def _write_log(self, record: dict[str, Any]) -> None:
        if self.run_dir is not None:
            with (self.run_dir / "train_log.jsonl").open("a") as fh:
                fh.write(json.dumps(record) + "\n")

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "stage_index": self.stage_index, "iteration": self.iteration,
            "best_score": self.best_score, "best_iteration": self.best_iteration,
            "carried": {stage: dict(rec) for stage, rec in self.carried.items()},
            "elapsed": dict(self.elapsed), "method": self.method.state_dict(), "optimizer": self.optimizer.state_dict(),
            "extra_optimizers": {name: opt.state_dict() for name, opt in self.extra.items()},
            "lab_sampler": self.lab_sampler.state_dict(),
            "unl_sampler": self.unl_sampler.state_dict() if self.unl_sampler else None,
            "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            # the losses summed since the last log line: a checkpoint between two log lines (a stop
            # request) resumes into the same next line as an uninterrupted run
            "log_acc": dict(self._acc), "log_acc_n": self._acc_n, "log_start": self._log_start,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stage_index = state["stage_index"]
        self.iteration = state["iteration"]
        self.best_score, self.best_iteration = state["best_score"], state["best_iteration"]
        self.carried = {stage: dict(rec) for stage, rec in state.get("carried", {}).items()}
        self.elapsed = dict(state.get("elapsed", {}))
        self.method.load_state_dict(state["method"])
        self.optimizer = self._make_optimizer()
        self.optimizer.load_state_dict(state["optimizer"])
        for name, opt_state in state.get("extra_optimizers", {}).items():
            self.extra[name].load_state_dict(opt_state)
        self.lab_sampler.load_state_dict(state["lab_sampler"])
        if self.unl_sampler is not None and state["unl_sampler"] is not None:
            self.unl_sampler.load_state_dict(state["unl_sampler"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self._acc = dict(state.get("log_acc", {}))
        self._acc_n = int(state.get("log_acc_n", 0))
        self._log_start = int(state.get("log_start", self.iteration))

    def _save(self, name: str, obj: Any) -> None:
        if self.run_dir is None:
            return
        with atomic_path(self.run_dir / "ckpt" / name) as tmp:
            torch.save(obj, tmp)

    def checkpoint(self) -> None:
        self._save("last.pt", self.state_dict())

    def try_resume(self) -> int | None:
        """Resume from ``last.pt``. One that cannot be read or does not fit this run (truncated by a
        full disk, written by an older version) is moved aside, never deleted, and the run restarts."""
        path = None if self.run_dir is None else self.run_dir / "ckpt" / "last.pt"
        if path is None or not path.exists():
            self._trim_log()  # a session killed before its first checkpoint may have logged already
            return None
        fresh = copy.deepcopy(self.state_dict())  # a copy: a failed load may have written into the live tensors
        try:
            # weights_only: a checkpoint is data; a crafted pickle must never run code here
            state = torch.load(path, map_location=self.device, weights_only=True)
            self.load_state_dict(state)
        except Exception as exc:  # noqa: BLE001 - any unusable checkpoint is handled the same way
            aside = path.with_name(f"last.pt.unusable-{time.strftime('%Y%m%d-%H%M%S')}")
            path.replace(aside)
            self.load_state_dict(fresh)
            self._trim_log()
            self.warn(f"{path}: unusable checkpoint ({type(exc).__name__}: {str(exc)[:200]}); kept as "
                      f"{aside.name}, training this run from the start")
            return None
        self._trim_log()
        return self.iteration

    def _trim_log(self) -> None:
        """Drop log lines written after the checkpoint we resume from (they will be written again)."""
        log = None if self.run_dir is None else self.run_dir / "train_log.jsonl"
        if log is None or not log.exists():
            return
        keep = []
        for line in log.read_text().splitlines():
            try:
                rec = json.loads(line)
                index = self.stages.index(rec["stage"])
            except (ValueError, KeyError):
                continue  # a torn last line from the interrupted process
            if index < self.stage_index or (index == self.stage_index and rec["iteration"] <= self.iteration):
                keep.append(line)
        with atomic_path(log) as tmp:
            tmp.write_text("".join(f"{line}\n" for line in keep))

    # ------------------------------------------------------------------ loop
    def _score(self) -> float:
        """The validation Dice of the inference network now (NaN without a validation), logged."""
        score = self.validate() if self.validate is not None else float("nan")
        self._write_log({"stage": self.stage, "iteration": self.iteration, "val_dice": round(score, 6)})
        return score

    def _validate(self) -> float:
        score = self._score()
        if self.cfg.select == "best" and score > self.best_score:
            self.best_score, self.best_iteration = score, self.iteration
            # the evaluated network's weights only (no teacher copies, banks or queues), tagged with its
            # iteration: after a kill between this write and last.pt's, the resumed run can tell
            # best.pt's weights from the ones its record names
            self._save("best.pt", {"iteration": self.iteration, "stage": self.stage, "val_dice": score,
                                   "inference_only": True, "weights": self.method.inference_net().state_dict()})
        return score

    def _validate_carried(self) -> float:
        """Validation inside a ``carry_best_of`` stage: logged, and the best inference weights so far
        kept in ``ckpt/<stage>-best.pt`` for the next stage to start from."""
        score = self._score()
        best = self.carried.get(self.stage, {}).get("val_dice", -math.inf)
        if score > best:
            self._save(f"{self.stage}-best.pt", {"iteration": self.iteration, "stage": self.stage, "val_dice": score,
                                                 "weights": self.method.inference_net().state_dict()})
            self.carried[self.stage] = {"iteration": self.iteration, "val_dice": score}
        return score

    def _carry_best(self, stage: str) -> None:
        """Put ``stage``'s best-validated weights into the inference network; without a finite score or
        its file (no validation, no run folder) the last weights go on, and the record says so."""
        rec = self.carried.get(stage)
        path = None if self.run_dir is None else self.run_dir / "ckpt" / f"{stage}-best.pt"
        if rec is None or path is None or not path.exists():
            why = ("no finite validation score" if rec is None else
                   "no run folder to keep the best weights in" if path is None else f"{path.name} is missing")
            self.carried[stage] = {"iteration": self.iteration, "val_dice": None, "note": f"{why}: the last weights"}
            if rec is not None:
                self.warn(f"stage '{stage}': {why}; the next stage starts from its last weights")
            return
        saved = torch.load(path, map_location=self.device, weights_only=True)
        if saved.get("iteration") != rec["iteration"]:  # a file from a kill between its write and last.pt's
            self.carried[stage] = {"iteration": self.iteration, "val_dice": None,
                                   "note": f"{path.name} is from iteration {saved.get('iteration')}, not the "
                                           f"recorded best {rec['iteration']}: the last weights"}
            self.warn(f"{path}: {self.carried[stage]['note']}")
            return
        self.method.inference_net().load_state_dict(saved["weights"])

    def fit(self) -> FitResult:
        resumed = self.try_resume()
        result = FitResult(self.cfg.select, -1, float("nan"), resumed_from=resumed,
                           resumed_stage=self.stage if resumed is not None else None)
        while self.stage_index < len(self.stages):
            stage, total = self.stage, self.lengths[self.stage]
            self.method.current_stage = stage
            is_last = self.stage_index == len(self.stages) - 1
            bar = tqdm(total=total, initial=self.iteration, disable=not self.progress, dynamic_ncols=True,
                       desc=f"{self.desc} [{stage}]" if len(self.stages) > 1 else self.desc, leave=False,
                       mininterval=0.2 if sys.stderr.isatty() else 30.0)
            start = time.perf_counter()
            self._rate_mark = (time.time(), self.stage_index, self.iteration)
            reset_peak_memory(self.device)
            while self.iteration < total:
                self.train_step()
                bar.update(1)
                at_val = self.iteration % self.cfg.val_every == 0 or self.iteration == total
                if self.iteration % self.cfg.log_every == 0 or at_val:
                    self._flush_log(bar)
                if at_val:
                    if is_last:
                        score = self._validate()
                        bar.set_postfix(val_dice=f"{score:.4f}", best=f"{max(self.best_score, score):.4f}")
                    elif stage in self.method.carry_best_of:
                        bar.set_postfix(val_dice=f"{self._validate_carried():.4f}")
                    self.elapsed[stage] = self.elapsed.get(stage, 0.0) + time.perf_counter() - start
                    start = time.perf_counter()
                    self.checkpoint()
                if stop_requested():  # a cluster's warning before a time limit or preemption
                    self.elapsed[stage] = self.elapsed.get(stage, 0.0) + time.perf_counter() - start
                    self.checkpoint()
                    bar.close()
                    raise Interrupted(f"{self.desc}: stopped at iteration {self.iteration} of stage '{stage}' "
                                      f"({stop_requested()}); checkpoint written")
            bar.close()
            self.elapsed[stage] = self.elapsed.get(stage, 0.0) + time.perf_counter() - start
            result.stage_peak_mem_mb[stage] = peak_memory_mb(self.device)
            if not is_last:
                if stage in self.method.carry_best_of:
                    self._carry_best(stage)
                self.stage_index += 1
                self.iteration = 0
                self._log_start = 0
                self.method.start_stage(self.stage)
                self.optimizer = self._make_optimizer()
                self.checkpoint()
                if self.run_dir is not None:  # its weights are in last.pt now
                    (self.run_dir / "ckpt" / f"{stage}-best.pt").unlink(missing_ok=True)
            else:
                break
        result.carried = {stage: dict(rec) for stage, rec in self.carried.items()}
        for stage, seconds in self.elapsed.items():  # every stage, summed over resumed sessions
            result.stage_seconds[stage] = seconds
            result.iterations_per_second[stage] = self.lengths[stage] / seconds if seconds > 0 else 0.0
        if self.cfg.select == "best" and self.run_dir is not None:
            self._select_best(result)
        else:
            result.selected = "last"
            result.best_iteration = self.iteration
        return result

    def _select_best(self, result: FitResult) -> None:
        """Load ``best.pt`` when it holds the weights the run's state names; otherwise keep the last
        weights and say why in the result (a missing, unreadable or mismatched file)."""
        assert self.run_dir is not None
        best = self.run_dir / "ckpt" / "best.pt"
        problem = ""
        if self.best_iteration < 0:  # no validation score was ever finite: nothing to select
            result.selected, result.best_iteration = "last", self.iteration
            result.selection_note = "no finite validation score, so the last weights were evaluated"
            return
        if not best.exists():
            problem = "missing"
        else:
            try:
                saved = torch.load(best, map_location=self.device, weights_only=True)
            except Exception as exc:  # noqa: BLE001
                aside = best.with_name(f"best.pt.unusable-{time.strftime('%Y%m%d-%H%M%S')}")
                best.replace(aside)
                problem = f"unreadable ({type(exc).__name__}; kept as {aside.name})"
            else:
                tagged = isinstance(saved, dict) and "weights" in saved and "iteration" in saved
                if tagged and saved["iteration"] != self.best_iteration:
                    problem = (f"from iteration {saved['iteration']}, not the best iteration "
                               f"{self.best_iteration} this run recorded")
                else:
                    # the evaluated network, or the whole method for a best.pt of an older version
                    target = self.method.inference_net() if tagged and saved.get("inference_only") else self.method
                    backup = copy.deepcopy(target.state_dict())  # a failed load may leave it half written
                    try:
                        target.load_state_dict(saved["weights"] if tagged else saved)
                    except Exception as exc:  # noqa: BLE001
                        target.load_state_dict(backup)
                        problem = f"not this method's weights ({type(exc).__name__})"
        if problem:
            result.selected = "last"
            result.best_iteration = self.iteration
            result.selection_note = (f"ckpt/best.pt {problem}: the last weights (iteration {self.iteration}) "
                                     "were evaluated instead of the best")
            self.warn(f"{best}: {result.selection_note}")
        else:
            result.best_iteration, result.best_score = self.best_iteration, self.best_score
