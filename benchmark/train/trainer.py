"""The one trainer: every method gets the same schedule, sampling, optimiser, selection and resume.

``Trainer.fit`` reads as an SSL4MIS training script does: for each stage of the method (most have one,
``train``; MONA-like methods add ``pretrain``), for each iteration: sample a labeled + unlabeled batch
from slices kept on the device, augment it on the device, call ``method.training_step``, sum the
``*loss*`` terms, step SGD, call ``method.after_step``; every ``val_every`` iterations validate and
checkpoint. Its chores live with small collaborators:

* ``batches.BatchSource``: the labeled and unlabeled samplers and the weak augmentation (in 3-D
  ``volumes.VolumeBatchSource``: crops of whole volumes, UA-MT's reflections);
* ``schedule``: stage lengths, SGD, the learning rate, extra optimisers;
* ``logbook.LossLog``: losses summed on the device and read back only at log lines (NaN/Inf caught
  there; nothing in the step waits for the host), the training log and ``progress.json``;
* ``selection.BestWeights``: ``best.pt`` for the last stage, ``<stage>-best.pt`` for a stage the
  method names in ``carry_best_of`` (the next stage starts from its best weights), the final choice;
* ``RunFiles``: every file of the run folder (``NoRunFiles`` without one: checkpoints in memory).

The checkpoint (``last.pt``) holds the method, optimisers, samplers, RNG states and counters, so a
resumed run continues as if it had never stopped. AMP (bf16) runs on CUDA only.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from sslbench.base.printable import run_bar
from sslbench.base.config import TrainConfig
from sslbench.base.errors import BenchError
from sslbench.base.fields import integer, mapping, number
from sslbench.base.no_run_files import NoRunFiles
from sslbench.base.run_files import RunFiles
from sslbench.method import Batch, SSLMethod, StepInfo
from sslbench.train.interrupt import Interrupted, stop_requested
from sslbench.train.logbook import LossLog
from sslbench.train.peak_memory import peak_memory_mb, reset_peak_memory
from sslbench.train.precision import autocast
from sslbench.train.batches import BatchSource, TrainData
from sslbench.train.volumes import VolumeBatchSource, VolumeData
from sslbench.train.schedule import learning_rate, make_extra_optimizer, make_optimizer, stage_iterations
from sslbench.train.selection import BestWeights

__all__ = ["FitResult", "TrainData", "Trainer"]


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
    # of the stage seconds: validation passes and checkpoint writes (summed over resumed sessions)
    validation_s: float = 0.0
    checkpoint_s: float = 0.0


class Trainer:
    def __init__(self, method: SSLMethod, data: TrainData | VolumeData, cfg: TrainConfig, seed: int,
                 validate: Callable[[], float] | None = None, files: RunFiles | None = None,
                 progress: bool = True, desc: str = "", warn: Callable[[str], None] | None = None) -> None:
        self.method, self.data, self.cfg, self.validate = method, data, cfg, validate
        self.files = files if files is not None else NoRunFiles()
        self.progress, self.desc = progress, desc
        self.warn = warn or (lambda message: logging.getLogger("sslbench").warning(message))
        self.device = data.images.device
        self.lengths = stage_iterations(method, cfg)
        self.stages = list(self.lengths)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self.batches = (VolumeBatchSource(data, cfg, self.generator, method) if isinstance(data, VolumeData)
                        else BatchSource(data, cfg, self.generator, method))
        self.stage_index = 0
        self.iteration = 0
        self.force_ramps = False
        self.early_backward = False  # this step backpropagated a part early (StepInfo.backward_now)
        self.elapsed: dict[str, float] = {}  # seconds per stage, summed over resumed sessions
        self.spent = {"validation": 0.0, "checkpoint": 0.0}  # the part of them in each chore
        self.log = LossLog(self.files, desc)
        self.best = BestWeights(self.files, method, cfg.select, self.device, lambda message: self.warn(message))
        self.optimizer, self.extra = self.make_optimizers()

    @property
    def stage(self) -> str:
        return self.stages[self.stage_index]

    def make_optimizers(self) -> tuple[torch.optim.Optimizer, dict[str, torch.optim.Optimizer]]:
        """A fresh main optimiser and the method's extra ones (each stage starts with new ones)."""
        extra = {name: make_extra_optimizer(spec) for name, spec in self.method.extra_optimizers().items()}
        return make_optimizer(self.method.optim_parameters(), self.cfg), extra

    def lr_at(self, iteration: int) -> float:
        return learning_rate(self.cfg, iteration, self.lengths[self.stage])

    # ------------------------------------------------------------------ the spine
    def fit(self, select: bool = True) -> FitResult:
        """Train every stage (resuming where a checkpoint left off), then, with ``select``, put the
        selected weights into the inference network (``select=False`` leaves the last ones there:
        evaluate them, then call ``select``)."""
        resumed = self.resume()
        result = FitResult(self.cfg.select, -1, math.nan, resumed_from=resumed,
                           resumed_stage=self.stage if resumed is not None else None)
        while True:
            self.run_stage(result)
            if self.stage_index == len(self.stages) - 1:
                break
            self.next_stage()
        self.log.close()
        for stage, seconds in self.elapsed.items():  # every stage, summed over resumed sessions
            result.stage_seconds[stage] = seconds
            result.iterations_per_second[stage] = self.lengths[stage] / seconds if seconds > 0 else 0.0
        result.validation_s, result.checkpoint_s = self.spent["validation"], self.spent["checkpoint"]
        return self.select(result) if select else result

    def select(self, result: FitResult) -> FitResult:
        """Load the selected weights (``train.select``: the best-validated or the last) and say which."""
        chosen = self.best.select(self.iteration)
        result.selected, result.best_iteration, result.best_score = chosen.selected, chosen.best_iteration, chosen.best_score
        result.selection_note, result.carried = chosen.note, chosen.carried
        return result

    def run_stage(self, result: FitResult) -> None:
        """The steps of the current stage from the current iteration: train, log, validate, checkpoint."""
        stage, total = self.stage, self.lengths[self.stage]
        self.method.current_stage = stage
        bar = run_bar(total, f"{self.desc} [{stage}]" if len(self.stages) > 1 else self.desc, self.progress,
                      initial=self.iteration)
        clock = time.perf_counter()
        self.log.new_stage(self.stage_index, self.iteration)
        reset_peak_memory(self.device)
        while self.iteration < total:
            self.train_step()
            bar.update(1)
            at_val = self.iteration % self.cfg.val_every == 0 or self.iteration == total
            if self.iteration % self.cfg.log_every == 0 or at_val:
                means = self.log.flush(stage, self.iteration, self.lr_at(self.iteration - 1))
                if means is not None:
                    self.log.progress(self.stage_index, stage, self.iteration, self.lengths)
                    bar.set_postfix(loss=f"{means['loss']:.4f}", refresh=False)
            if at_val:
                score = self.validate_now()
                if score is not None and math.isfinite(score):
                    bar.set_postfix(val_dice=f"{100 * score:.1f}%", refresh=False)
                clock = self.add_time(stage, clock)
                self.checkpoint()
            if stop_requested():  # a cluster's warning before a time limit or preemption
                self.add_time(stage, clock)
                self.checkpoint(timed=False)
                bar.close()
                self.log.close()
                raise Interrupted(f"{self.desc}: stopped at iteration {self.iteration} of stage '{stage}' "
                                  f"({stop_requested()}); checkpoint written")
        bar.close()
        self.add_time(stage, clock)
        result.stage_peak_mem_mb[stage] = peak_memory_mb(self.device)

    def next_stage(self) -> None:
        """From one stage to the next: its best weights if it carries them, the method's hook, fresh
        optimisers, a checkpoint (which then holds those weights: the stage's best file goes)."""
        stage = self.stage
        if stage in self.method.carry_best_of:
            self.best.carry(stage, self.iteration)
        self.stage_index += 1
        self.iteration = 0
        self.log.start = 0
        self.method.start_stage(self.stage)
        self.optimizer, self.extra = self.make_optimizers()
        self.checkpoint(timed=False)  # between stages: outside every stage's seconds, so not in their split
        self.files.remove_checkpoint(RunFiles.stage_best(stage))

    def add_time(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.elapsed[stage] = self.elapsed.get(stage, 0.0) + now - since
        return now

    # ------------------------------------------------------------------ one step
    def step_info(self) -> StepInfo:
        return StepInfo(self.stage, self.iteration, self.lengths[self.stage], self.force_ramps, self.generator)

    def next_batch(self) -> Batch:
        return self.batches.next(self.stage)

    def train_step(self) -> dict[str, Tensor | float]:
        """One iteration; returns the detached named losses (tensors still on the device)."""
        info = self.step_info()
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.iteration)
        batch = self.next_batch()
        self.method.train()
        out, total = self.method_step(batch, info, self.optimizer)
        for name, optimizer in self.extra.items():
            with autocast(self.device, self.cfg.amp):
                extra_out = self.method.extra_step(name, batch, info)
            self.optimise(extra_out, optimizer, f" for optimiser '{name}'")
            out.update({(f"_{name}/{k[1:]}" if k.startswith("_") else f"{name}/{k}"): v for k, v in extra_out.items()})
        self.method.after_step(info, out)
        self.iteration += 1
        logged: dict[str, Tensor | float] = {
            k: (v.detach().float() if torch.is_tensor(v) else float(v)) for k, v in out.items() if not k.startswith("_")}
        logged["loss"] = total
        self.log.add(logged)
        return logged

    def method_step(self, batch: Batch, info: StepInfo,
                    optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor | float], Tensor]:
        """The method's ``training_step`` with the early-backward hook (``StepInfo.backward_now``), the
        rest of its loss backpropagated, one step of ``optimizer``: the step's arithmetic, which
        ``bench speed --vs-bare``'s bare loop runs too. Returns the step's terms and detached total."""
        optimizer.zero_grad(set_to_none=True)   # before the step: a part may backpropagate early
        self.early_backward = False
        with autocast(self.device, self.cfg.amp):
            out = self.method.training_step(batch, dataclasses.replace(info, backward=self.backward))
        return out, self.optimise(out, optimizer, "", zero=False, early=self.early_backward)

    def optimise(self, out: dict[str, Tensor | float], optimizer: torch.optim.Optimizer, what: str,
                 zero: bool = True, early: bool = False) -> Tensor:
        """Sum the ``*loss*`` terms, backpropagate, step; returns the (detached) total. ``zero``:
        clear the gradients first (False where the caller cleared them before the step); ``early``:
        a part was backpropagated already (``StepInfo.backward_now``), so the rest may hold no
        gradient at all."""
        terms = [v for k, v in out.items() if "loss" in k and not k.startswith("_")]
        if not terms or not all(torch.is_tensor(t) for t in terms):
            raise BenchError(f"method '{self.method.name}' returned no '*loss*' tensor term{what}")
        total = torch.stack([t.float() for t in terms]).sum()  # type: ignore[union-attr]
        if zero:
            optimizer.zero_grad(set_to_none=True)
        if total.requires_grad:
            total.backward()
        elif not early:
            raise BenchError(f"method '{self.method.name}': no '*loss*' term{what} carries a gradient (all "
                             "detached or computed under no_grad), so the step would train nothing")
        optimizer.step()
        return total.detach()

    def backward(self, loss: Tensor) -> None:
        """``StepInfo.backward_now``'s hook: a part of the step's loss backpropagated at once (outside
        autocast, as the step's final backward)."""
        with torch.autocast(self.device.type, enabled=False):
            loss.backward()
        self.early_backward = True

    def evaluation_progress(self, weights: str, done: int, cases: int, started: float) -> None:
        """``progress.json`` during the test-set evaluation after training; first this session's own
        training progress where it wrote none (resumed at the end of its schedule, or a finished run
        evaluated again), so no earlier session's host or pace is shown."""
        if not self.log.has_progress:
            self.log.progress(self.stage_index, self.stage, self.iteration, self.lengths)
        self.log.evaluation_progress(weights, done, cases, started)

    # ------------------------------------------------------------------ validation
    def validate_now(self) -> float | None:
        """Score the inference network where the method wants it: every stage's last validation
        selects the evaluated weights, a ``carry_best_of`` stage's the next stage's start. None when
        this stage is not validated."""
        is_last = self.stage_index == len(self.stages) - 1
        if self.validate is None or (not is_last and self.stage not in self.method.carry_best_of):
            return None  # no validation split (LA selects the last weights): no NaN score logged or shown
        start = time.perf_counter()
        score = self.validate()
        offered = time.perf_counter()
        self.spent["validation"] += offered - start
        # a non-finite score (no volume scored) is logged as null: NaN is no JSON, and it selects nothing
        logged = round(score, 6) if math.isfinite(score) else None
        self.log.write({"stage": self.stage, "iteration": self.iteration, "val_dice": logged})
        if is_last:
            self.best.offer(self.stage, self.iteration, score)
        else:
            self.best.offer_carried(self.stage, self.iteration, score)
        self.spent["checkpoint"] += time.perf_counter() - offered  # a better score writes its best weights
        return score

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "stage_index": self.stage_index, "iteration": self.iteration, **self.best.state_dict(),
            "elapsed": dict(self.elapsed), "spent": dict(self.spent), "method": self.method.state_dict(), "optimizer": self.optimizer.state_dict(),
            "extra_optimizers": {name: opt.state_dict() for name, opt in self.extra.items()},
            **self.batches.state_dict(),
            "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            **self.log.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Every field is checked against this run (``FieldError`` names the first bad one)."""
        state = mapping(state, "checkpoint")
        self.stage_index = integer(state.get("stage_index"), "stage_index", 0, len(self.stages) - 1)
        self.iteration = integer(state.get("iteration"), "iteration", 0, self.lengths[self.stage])
        self.best.load_state_dict(state, self.iteration)
        self.elapsed = {stage: number(v, f"elapsed[{stage!r}]", 0) for stage, v in
                        mapping(state.get("elapsed", {}), "elapsed").items() if stage in self.lengths}
        spent = mapping(state.get("spent", {}), "spent")  # absent in checkpoints of older versions
        self.spent = {k: number(spent.get(k, 0.0), f"spent[{k!r}]", 0) for k in ("validation", "checkpoint")}
        self.method.load_state_dict(state["method"])
        self.optimizer, self.extra = self.make_optimizers()
        self.optimizer.load_state_dict(state["optimizer"])
        for name, opt_state in state.get("extra_optimizers", {}).items():
            self.extra[name].load_state_dict(opt_state)
        self.batches.load_state_dict(state)
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.log.load_state_dict(state, self.iteration)

    def checkpoint(self, timed: bool = True) -> None:
        """Write ``last.pt``; ``timed``: its seconds go to ``spent["checkpoint"]`` (within the stage's)."""
        start = time.perf_counter()
        self.files.save_checkpoint(RunFiles.LAST, self.state_dict())  # (which holds the writes before it)
        self.log.mark_checkpoint(self.stage, self.iteration)
        if timed:
            self.spent["checkpoint"] += time.perf_counter() - start

    def resume(self) -> int | None:
        """Resume from ``last.pt``. One that cannot be read or does not fit this run (truncated by a
        full disk, written by an older version) is moved aside, never deleted, and the run restarts.
        Log lines written after the checkpoint are dropped (they will be written again)."""
        if not self.files.has_checkpoint(RunFiles.LAST):
            self.trim_log()  # a session killed before its first checkpoint may have logged already
            return None
        fresh = copy.deepcopy(self.state_dict())  # a copy: a failed load may have written into the live tensors
        try:
            self.load_state_dict(self.files.load_checkpoint(RunFiles.LAST, self.device))
        except Exception as exc:  # noqa: BLE001 - any unusable checkpoint is handled the same way
            aside = self.files.set_aside(RunFiles.LAST)
            self.load_state_dict(fresh)
            self.trim_log()
            self.warn(f"{self.files.ckpt / RunFiles.LAST}: unusable checkpoint ({type(exc).__name__}: "
                      f"{str(exc)[:200]}); kept as {aside}, training this run from the start")
            return None
        self.trim_log()
        self.log.mark_checkpoint(self.stage, self.iteration)
        return self.iteration

    def trim_log(self) -> None:
        def before_checkpoint(rec: dict[str, Any]) -> bool:
            index = self.stages.index(rec["stage"])
            return index < self.stage_index or (index == self.stage_index and rec["iteration"] <= self.iteration)

        self.files.trim_log(before_checkpoint)
