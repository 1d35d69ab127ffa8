"""What a finished run's ``run.json`` and ``metrics.json`` must hold before any table, figure or
status line uses them: a record damaged by a full disk, a hand edit or another tool is skipped with
one line naming the file and the field, never half used (a ``null`` profile, a list as dataset)."""
from __future__ import annotations

import re
from typing import Any

from sslbench.base.code_identity import is_hash
from sslbench.base.fields import FieldError, choice, integer, mapping, name, number, strings, text

SUMMARY = ("dice", "assd", "hd95")
MAX_ITERATIONS = 10 ** 9
CROP = re.compile(r"[1-9][0-9]{0,3}x[1-9][0-9]{0,3}x[1-9][0-9]{0,3}")  # a 3-D run's crop (D x H x W)
MAX_SECONDS = 1e9  # 30 years: sums of wall times stay finite


def _summary(value: Any, field: str) -> None:
    summary = mapping(value, field)
    for key in SUMMARY:
        lo, hi = (0.0, 1.0) if key == "dice" else (0.0, None)
        number(summary.get(key), f"{field}.{key}", lo, hi)


def check_record(rec: Any) -> dict[str, Any]:
    """``rec`` when every field the views read has its type and range; else ``FieldError``."""
    rec = dict(mapping(rec, "run.json"))
    if rec.get("code") is not None:
        code = mapping(rec["code"], "code")
        for key in ("method", "core"):
            if code.get(key) is not None and not is_hash(code[key]):
                raise FieldError(f"code.{key}: expected a code hash, got {code[key]!r:.80}")
        if code.get("version") is not None:
            text(code["version"], "code.version", 64)
    for key in ("dataset", "profile", "method"):
        name(rec.get(key), key)
    text(rec.get("paper_name"), "paper_name", 200)
    text(rec.get("variant", "") or "", "variant", 200)
    number(rec.get("ratio"), "ratio", 0.0, 100.0)
    integer(rec.get("seed"), "seed", 0)
    choice(rec.get("eval_split", "test"), "eval_split", ("val", "test"))
    _summary(rec.get("summary"), "summary")
    for cls, metrics in mapping(rec.get("per_class", {}), "per_class").items():
        text(cls, "per_class", 200)  # a class name is printed and written to CSV: no control characters
        _summary(metrics, f"per_class[{cls!r}]")
    selection = mapping(rec.get("selection"), "selection")
    choice(selection.get("rule"), "selection.rule", ("best", "last"))
    integer(selection.get("iteration"), "selection.iteration", -1)
    timing = mapping(rec.get("timing"), "timing")
    number(timing.get("wall_s"), "timing.wall_s", 0.0, MAX_SECONDS)
    for key in ("train_s", "eval_s", "val_s", "checkpoint_s", "peak_mem_mb"):
        if timing.get(key) is not None:
            number(timing[key], f"timing.{key}", 0.0, MAX_SECONDS)
    for stage, rate in mapping(timing.get("iters_per_s", {}), "timing.iters_per_s").items():
        number(rate, f"timing.iters_per_s[{stage!r}]", 0.0)
    strings(rec.get("labeled_cases", []), "labeled_cases")
    if rec.get("params") is not None:
        for key, n in mapping(rec["params"], "params").items():
            integer(n, f"params.{key}", 0)
    for stage, n in mapping(rec.get("stage_iterations", {}), "stage_iterations").items():
        integer(n, f"stage_iterations[{stage!r}]", 0, MAX_ITERATIONS)
    if rec.get("last") is not None:
        last = mapping(rec["last"], "last")
        integer(last.get("iteration"), "last.iteration", 0)
        _summary(last.get("summary"), "last.summary")
        for cls, metrics in mapping(last.get("per_class", {}), "last.per_class").items():
            text(cls, "last.per_class", 200)
            _summary(metrics, f"last.per_class[{cls!r}]")
    text(rec.get("overrides_hash", "") or "", "overrides_hash", 64)
    for key in ("config_hash", "precision", "inference_net", "split"):
        if rec.get(key) is not None:
            text(rec[key], key, 200)
    if rec.get("n_eval_volumes") is not None:
        integer(rec["n_eval_volumes"], "n_eval_volumes", 0)
    if rec.get("schedule") is not None:
        schedule = mapping(rec["schedule"], "schedule")
        for key in ("image_size", "batch_size", "labeled_bs"):
            if key == "image_size" and isinstance(schedule.get(key), str):  # a 3-D crop, "80x112x112"
                if not CROP.fullmatch(schedule[key]):
                    raise FieldError(f"schedule.image_size: expected a size or a crop D x H x W, got "
                                     f"{schedule[key][:40]!r}")
            elif schedule.get(key) is not None:
                integer(schedule[key], f"schedule.{key}", 1)
        for key in ("lr_schedule", "select"):
            if schedule.get(key) is not None:
                text(schedule[key], f"schedule.{key}", 50)
    if rec.get("env") is not None and mapping(rec["env"], "env").get("device") is not None:
        text(rec["env"]["device"], "env.device", 200)
    if rec.get("metric_policy") is not None and mapping(rec["metric_policy"], "metric_policy").get("spacing") is not None:
        text(rec["metric_policy"]["spacing"], "metric_policy.spacing", 200)
    strings(rec.get("protocol_overrides", []), "protocol_overrides")
    return rec


def check_metrics(metrics: Any) -> dict[str, Any]:
    """A ``metrics.json``: per case its id and the same non-empty set of classes, each with its
    metrics (the box plots, the paired tests and the tidy export read these)."""
    metrics = dict(mapping(metrics, "metrics.json"))
    cases = metrics.get("metric_per_case")
    if not isinstance(cases, list) or not cases:
        raise FieldError("metric_per_case: expected a non-empty list of cases")
    classes: set[str] | None = None
    for i, case in enumerate(cases):
        case = mapping(case, f"metric_per_case[{i}]")
        text(case.get("case"), f"metric_per_case[{i}].case", 200)
        per_class = mapping(case.get("metrics"), f"metric_per_case[{i}].metrics")
        if not per_class or (classes is not None and set(per_class) != classes):
            raise FieldError(f"metric_per_case[{i}].metrics: classes {sorted(per_class)} are not every case's")
        classes = set(per_class)
        for cls, m in per_class.items():
            text(cls, f"metric_per_case[{i}].metrics", 200)
            _summary(m, f"metric_per_case[{i}].metrics[{cls!r}]")
            for key in ("asd", "asd_legacy", "hd95_legacy"):
                if m.get(key) is not None:
                    number(m[key], f"metric_per_case[{i}].metrics[{cls!r}].{key}", 0.0)
    return metrics


def check_progress(progress: Any) -> dict[str, Any]:
    """A ``progress.json``: stage and iteration within that stage's length, a positive rate or none."""
    progress = dict(mapping(progress, "progress.json"))
    stages = {text(k, "stages", 100): integer(v, f"stages[{k!r}]", 0, MAX_ITERATIONS)
              for k, v in mapping(progress.get("stages"), "stages").items()}
    stage = choice(progress.get("stage"), "stage", tuple(stages))
    integer(progress.get("iteration"), "iteration", 0, stages[stage])
    if progress.get("it_s") is not None:
        number(progress["it_s"], "it_s", 0.0, 1e9)
    if progress.get("host") is not None:
        text(progress["host"], "host", 300)
    if progress.get("updated") is not None:
        number(progress["updated"], "updated", 0.0)
    if progress.get("checkpoint") is not None:
        mark = mapping(progress["checkpoint"], "checkpoint")
        at = choice(mark.get("stage"), "checkpoint.stage", tuple(stages))
        integer(mark.get("iteration"), "checkpoint.iteration", 0, stages[at])
    if progress.get("evaluation") is not None:
        ev = mapping(progress["evaluation"], "evaluation")
        choice(ev.get("weights"), "evaluation.weights", ("last", "selected"))
        cases = integer(ev.get("cases"), "evaluation.cases", 1, 10**7)
        integer(ev.get("done"), "evaluation.done", 0, cases)
        number(ev.get("started"), "evaluation.started", 0.0)
    return {**progress, "stages": stages}
