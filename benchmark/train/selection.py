"""Model selection: the best-validated weights of the last stage (``best.pt``) and of every
``carry_best_of`` stage (``<stage>-best.pt``, the next stage starts from them), each checked before use."""
from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from sslbench.base.fields import FieldError, integer, mapping, number
from sslbench.base.run_files import RunFiles
from sslbench.method import SSLMethod


@dataclass
class Selection:
    """What was evaluated and why: the rule (``best`` or ``last``), the iteration and validation Dice
    of the evaluated weights, a note when the rule could not be followed, and per ``carry_best_of``
    stage the iteration and Dice of the weights the next stage began with."""

    selected: str
    best_iteration: int
    best_score: float
    note: str = ""
    carried: dict[str, dict[str, Any]] = field(default_factory=dict)


class BestWeights:
    def __init__(self, files: RunFiles, method: SSLMethod, rule: str, device: torch.device,
                 warn: Callable[[str], None]) -> None:
        self.files, self.method, self.rule, self.device, self.warn = files, method, rule, device, warn
        self.best_score = -math.inf
        self.best_iteration = -1
        self.carried: dict[str, dict[str, Any]] = {}

    def offer(self, stage: str, iteration: int, score: float) -> None:
        """A validation of the last stage: keep the evaluated network's weights when they are the best
        so far, tagged with their iteration (after a kill between this write and ``last.pt``'s, a
        resumed run can tell them from the ones its state names)."""
        if self.rule == "best" and score > self.best_score:
            self.best_score, self.best_iteration = score, iteration
            self.files.save_checkpoint(RunFiles.BEST, {"iteration": iteration, "stage": stage, "val_dice": score,
                                                       "weights": self.method.inference_net().state_dict()})

    def offer_carried(self, stage: str, iteration: int, score: float) -> None:
        """A validation inside a ``carry_best_of`` stage: its best weights so far go to ``<stage>-best.pt``."""
        if score > self.carried.get(stage, {}).get("val_dice", -math.inf):
            self.files.save_checkpoint(RunFiles.stage_best(stage), {
                "iteration": iteration, "stage": stage, "val_dice": score,
                "weights": self.method.inference_net().state_dict()})
            self.carried[stage] = {"iteration": iteration, "val_dice": score}

    def carry(self, stage: str, iteration: int) -> None:
        """Put ``stage``'s best-validated weights into the inference network; without a finite score,
        or when its file is missing or from another iteration, the last weights go on and the record says so."""
        rec, name = self.carried.get(stage), RunFiles.stage_best(stage)
        if rec is None:
            self.carried[stage] = {"iteration": iteration, "val_dice": None,
                                   "note": "no finite validation score: the last weights"}
            return
        if not self.files.has_checkpoint(name):
            self._carry_last(stage, iteration, f"{name} is missing: the last weights")
            return
        problem = self._load_weights(name, rec["iteration"])
        if problem:
            self._carry_last(stage, iteration, f"{name} {problem}: the last weights")

    def _load_weights(self, name: str, expected: int) -> str:
        """Load the tagged weights of checkpoint ``name`` (from iteration ``expected``) into the
        inference network; the problem in words, or "" when loaded. An unreadable file is set aside."""
        try:
            saved = self.files.load_checkpoint(name, self.device)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is set aside the same way
            aside = self.files.set_aside(name)
            return f"unreadable ({type(exc).__name__}; kept as {aside})"
        if not (isinstance(saved, dict) and "weights" in saved and "iteration" in saved):
            return "not a checkpoint of this version (no tagged weights)"
        if not isinstance(saved["iteration"], int) or saved["iteration"] != expected:  # a kill between its write and last.pt's
            return f"is from iteration {saved['iteration']!r}, not the recorded best {expected}"
        net = self.method.inference_net()
        backup = copy.deepcopy(net.state_dict())  # a failed load may leave it half written
        try:
            net.load_state_dict(saved["weights"])
        except Exception as exc:  # noqa: BLE001
            net.load_state_dict(backup)
            return f"holds weights of another network ({type(exc).__name__})"
        return ""

    def _carry_last(self, stage: str, iteration: int, note: str) -> None:
        self.carried[stage] = {"iteration": iteration, "val_dice": None, "note": note}
        self.warn(f"{self.files.ckpt / RunFiles.stage_best(stage)}: {note}; stage '{stage}' hands on its last "
                  "weights: the next stage starts from its last weights")

    def select(self, iteration: int) -> Selection:
        """Load ``best.pt`` when it holds the weights the run's state names; otherwise keep the last
        weights and say why (no finite score; a missing, unreadable or mismatched file)."""
        carried = {stage: dict(rec) for stage, rec in self.carried.items()}
        if self.rule != "best":
            return Selection("last", iteration, math.nan, carried=carried)
        if self.best_iteration < 0:  # no validation score was ever finite: nothing to select
            return Selection("last", iteration, math.nan,
                             "no finite validation score, so the last weights were evaluated", carried)
        problem = self._load_best()
        if problem:
            note = (f"ckpt/{RunFiles.BEST} {problem}: the last weights (iteration {iteration}) were evaluated "
                    "instead of the best")
            self.warn(f"{self.files.ckpt / RunFiles.BEST}: {note}")
            return Selection("last", iteration, math.nan, note, carried)
        return Selection("best", self.best_iteration, self.best_score, carried=carried)

    def _load_best(self) -> str:
        """Load the best weights into the inference network; the problem in words, or "" when loaded."""
        if not self.files.has_checkpoint(RunFiles.BEST):
            return "missing"
        return self._load_weights(RunFiles.BEST, self.best_iteration)

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "best_iteration": self.best_iteration,
                "carried": {stage: dict(rec) for stage, rec in self.carried.items()}}

    def load_state_dict(self, state: dict[str, Any], iteration: int) -> None:
        """The selection state of a checkpoint taken at ``iteration``, checked field by field."""
        self.best_iteration = integer(state.get("best_iteration"), "best_iteration", -1, iteration)
        self.best_score = number(state.get("best_score"), "best_score", finite=False)
        if (self.best_iteration < 0) != (self.best_score == -math.inf):
            raise FieldError(f"best_score {self.best_score} does not go with best_iteration {self.best_iteration}")
        self.carried = {}
        for stage, rec in mapping(state.get("carried", {}), "carried").items():
            rec = mapping(rec, f"carried[{stage!r}]")
            integer(rec.get("iteration"), f"carried[{stage!r}].iteration", 0)
            if rec.get("val_dice") is not None:
                number(rec["val_dice"], f"carried[{stage!r}].val_dice", finite=False)
            self.carried[str(stage)] = dict(rec)
