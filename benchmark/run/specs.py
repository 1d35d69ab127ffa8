"""Run specs: what one run is (method, dataset, ratio, seed, profile, ``--set`` items, tag), the
options a sweep runs under, and how a sweep's command line expands into specs."""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sslbench.base.config import DataConfig, ResolvedConfig, TrainConfig, config_keys, resolve_config
from sslbench.base.errors import BenchError
from sslbench.base.names import NO_TAG
from sslbench.base.printable import CONTROL
from sslbench.base.run_files import RunFiles, run_dir
from sslbench.cache import check_dataset_name
from sslbench.method import METHODS, check_dims


def resolve(method: str, profile: str, dataset: str, overrides: Sequence[str] = ()) -> ResolvedConfig:
    """A method's configuration under a profile and dataset: the layers of ``resolve_config``, with
    the method class's own ``defaults`` among them."""
    cls = METHODS.get(method)
    return resolve_config(cls.Config, profile, dataset, method, tuple(overrides), getattr(cls, "defaults", None),
                          f"{cls.__module__}.{cls.__qualname__}.defaults")


def resolve_run(method: str, profile: str, dataset: str, overrides: Sequence[str] = ()) -> ResolvedConfig:
    """``resolve`` for a run that will train: a method on a track its release does not run (a 2-D
    method on LA's volumes) is refused here, when the sweep is expanded, before anything is written.
    (A run's configuration without its ``--set`` items, e.g. for the protocol keys, is not a run:
    ``--set train.dims=2`` may be what makes it legal.)"""
    cfg = resolve(method, profile, dataset, overrides)
    check_dims(METHODS.get(method), cfg.train)
    return cfg


@dataclass(frozen=True)
class RunSpec:
    dataset: str
    method: str
    ratio: float
    seed: int
    profile: str = "quick"
    overrides: tuple[str, ...] = ()   # the --set items that apply to this method (scoped ones rewritten)
    tag: str = ""  # a variant name (ablation, hyper-parameter value): its own folder and table row
    # resolved once when the sweep is expanded; None for a spec built by hand (resolved on first use)
    config: ResolvedConfig | None = field(default=None, compare=False, hash=False, repr=False)

    def resolved(self) -> ResolvedConfig:
        if self.config is not None:
            return self.config
        cfg = resolve_run(self.method, self.profile, self.dataset, self.overrides)
        object.__setattr__(self, "config", cfg)
        return cfg

    @property
    def label(self) -> str:
        name = f"{self.method} [{self.tag}]" if self.tag else self.method
        return f"{name} {self.dataset} {self.ratio:g}% seed {self.seed}"

    @property
    def folder_method(self) -> str:
        return f"{self.method}@{slug(self.tag)}" if self.tag else self.method

    def files(self, results: Path) -> RunFiles:
        """This run's folder under the results root."""
        return RunFiles(run_dir(results, self.dataset, self.profile, self.folder_method, self.ratio, self.seed), results)


def protocol_overrides(spec: RunSpec) -> list[str]:
    """The ``train.*`` and ``data.*`` values this run's ``--set`` items changed from its profile (and
    its method's own file): what makes its protocol differ from the profile's, as sorted ``key=value``
    (the schedule key; pre-training lengths are not part of it: ``pre_stage_keys``)."""
    cfg = spec.resolved()
    base = resolve(spec.method, spec.profile, spec.dataset, ())
    skip = pre_stage_keys(spec.method)
    out = []
    for section in ("train", "data"):
        mine, theirs = dataclasses.asdict(getattr(cfg, section)), dataclasses.asdict(getattr(base, section))
        out += [f"{section}.{k}={mine[k]}" for k in sorted(mine) if mine[k] != theirs[k] and f"{section}.{k}" not in skip]
    return out


def pre_stage_keys(method: str) -> set[str]:
    """Settings that never make a schedule of their own: the lengths of the stages before the last
    (a pre-training's iterations). A one-stage method ignores them, and a two-stage one is still
    compared with the one-stage rows trained on the same schedule, as the paper's Table 1 does; its
    iterations per stage are stated in every caption and the cost table, and two pre-training lengths
    never share a run folder without a tag."""
    cls = METHODS.get(method)
    keys = {key for stage, key in cls.stage_length_keys().items() if stage != cls.stages[-1]}
    return keys | {"train.pretrain_iterations"}


def overrides_hash(items: Sequence[str]) -> str:
    """A short name for a set of protocol overrides ("" for none): runs of one profile with another
    schedule never share a table or a figure."""
    return hashlib.sha256("\n".join(sorted(items)).encode()).hexdigest()[:6] if items else ""


def slug(text: str) -> str:
    """A folder-safe form of a tag, one per tag: a tag of folder-safe characters is its own slug; any
    other gets the safe form plus ``~`` and a hash of the tag ("w/ tailness" -> "w-tailness~3f2a1c"),
    so "w/0.3" and "w 0.3" never share a folder (``~`` is never in a plain slug)."""
    if not isinstance(text, str):
        raise BenchError(f"--tag: expected text, got {_short(text)}")
    if CONTROL.search(text):  # a record refuses them, so such a run could never be shown: refuse it here
        raise BenchError(f"--tag {text!r}: control characters are not allowed in a tag")
    out = re.sub(r"[^A-Za-z0-9._=+-]+", "-", text).strip("-")
    if out != text:  # "ééé" or "w/0.3": the safe form, or "tag" where nothing is left, plus the tag's hash
        out = (out or "tag") + "~" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:6]
    if text.strip() == NO_TAG:
        raise BenchError(f"--tag {NO_TAG}: reserved (the export's tag of an untagged run); choose another")
    if len(text) > 100:
        raise BenchError(f"--tag {text[:20]!r}...: at most 100 characters (it names the run's folder)")
    if not text.strip():
        raise BenchError(f"--tag {text!r}: needs a visible character")
    return out


@dataclass
class RunOptions:
    results: Path
    cache: Path | None = None
    device: str = "auto"
    force: bool = False
    progress: bool = True
    plugins: tuple[str, ...] = ()
    threads: int | None = None
    save_predictions: bool = False
    keep_checkpoints: str = "all"  # after a run is done: "all", "last", "best" or "none"
    eval_workers: int | None = None  # metric processes during evaluation (None: cores - 1)
    # signals that ask a run to checkpoint at the next step and stop (a cluster's warning before a
    # time limit or preemption, e.g. ("USR2",)); set in worker processes too
    stop_signals: tuple[str, ...] = ()
    # retrain finished runs whose code changed: "" (refuse them, naming each), "method" (those whose
    # method's code changed) or "core" (also those trained by another version of the core code)
    rerun_stale: str = ""


@dataclass
class RunOutcome:
    spec: RunSpec
    status: str  # "done", "skipped", "busy" (another process holds it), "failed" or "interrupted" (asked to stop)
    folder: str
    summary: dict[str, float] = field(default_factory=dict)
    message: str = ""


def expand(methods: Sequence[str], datasets: Sequence[str], ratios: Sequence[float], seeds: Sequence[int],
           profile: str, overrides: Sequence[str] = (), cache: Path | None = None, tag: str = "") -> list[RunSpec]:
    """The sweep, validated up front (unknown names and keys fail before any run starts).
    Methods that use every label (UNet-F) run once per seed, recorded as ratio 100."""
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 0 <= int(s) < 2**32:
            raise BenchError(f"seed must be an integer in 0..{2**32 - 1}, got {_short(s)}")
    for r in ratios:
        check_ratio(r)
    for m in methods:
        METHODS.get(m)  # unknown names fail first, listing the known ones
    if tag:
        slug(tag)
    size = len(set(datasets)) * len(set(methods)) * len({float(r) for r in ratios}) * len({int(s) for s in seeds})
    if size > MAX_RUNS:
        raise BenchError(f"a sweep of {size} runs: at most {MAX_RUNS} in one command (split it, e.g. by seeds)")
    scoped = scope_overrides(methods, overrides)
    specs: dict[RunSpec, None] = {}  # insertion-ordered and de-duplicated in linear time
    for ds in datasets:
        check_dataset_name(ds, cache)
        for m in methods:
            cls = METHODS.get(m)
            cfg = resolve_run(m, profile, ds, scoped[m])
            for r in ([100.0] if cls.uses_all_labels else ratios):
                for s in seeds:
                    specs.setdefault(RunSpec(ds, m, float(r), int(s), profile, scoped[m], tag, cfg))
    return list(specs)


MAX_RUNS = 100_000  # runs one command expands (docs/reliability.md): more is a typo or a job for several


def _short(value: object) -> str:
    """A value in an error line, cut to a readable length (a 400-digit number, a huge list)."""
    text = repr(value) if not isinstance(value, int) or value.bit_length() < 200 else f"an integer of {len(str(value))} digits"
    return text if len(text) <= 60 else text[:57] + "..."


def check_ratio(r: object) -> float:
    """A label ratio in (0, 100] that names its run folder exactly: ``ratio-<r:g>`` must read back as
    the same number, so two different ratios (3.75 and 3.7499999, which label different numbers of
    patients) never share a folder and every view shows the ratio that ran."""
    try:
        value = float(r)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        value = float("nan")
    if isinstance(r, bool) or not isinstance(r, (int, float, np.integer, np.floating)) or not 0 < value <= 100:
        raise BenchError(f"label ratio must be a number in (0, 100], got {_short(r)}")  # also nan and huge ints
    if float(f"{value:g}") != value:
        raise BenchError(f"label ratio {value!r}: at most 6 significant digits ({value:g} would name its folder "
                         "and another ratio's)")
    return value


def scope_overrides(methods: Sequence[str], overrides: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The ``--set`` items that apply to each method of a sweep.

    ``train.*`` and ``data.*`` apply to every run. ``method.KEY`` (or a bare ``KEY`` that is no train or
    data key) applies to the methods whose config has KEY, and is an error when none has it, so
    ``--set method.ema_decay=0.999`` on a sweep of UNet-L and MT changes MT only. ``NAME.KEY`` (e.g.
    ``mt.ema_decay``) applies to method NAME only, which must be in the sweep and have KEY."""
    general = {"train": config_keys(TrainConfig), "data": config_keys(DataConfig)}
    keys = {m: config_keys(METHODS.get(m).Config) for m in methods}
    out: dict[str, list[str]] = {m: [] for m in methods}
    for item in overrides:
        if "=" not in item:
            raise BenchError(f"--set {item!r}: expected key=value")
        key, value = (x.strip() for x in item.split("=", 1))
        head, dot, rest = key.partition(".")
        if dot and head in general:
            targets, rewritten = list(out), item
        elif not dot and any(key in ks for ks in general.values()):
            targets, rewritten = list(out), item  # a bare train/data key (resolve_config checks ambiguity)
        elif dot and head != "method":
            if head not in METHODS.names():
                raise BenchError(f"--set {key}: '{head}' is neither train, data, method nor a method name")
            if head not in out:
                raise BenchError(f"--set {key}: method '{head}' is not in this sweep ({', '.join(methods)})")
            if rest not in keys[head]:
                raise BenchError(f"--set {key}: {head} has no key '{rest}'{_did_you_mean(rest, keys[head])}"
                                 f" (its keys: {', '.join(sorted(keys[head]))})")
            targets, rewritten = [head], f"method.{rest}={value}"
        else:
            name = rest if dot else key
            targets = [m for m in methods if name in keys[m]]
            if not targets:
                known = set().union(*keys.values(), *(f"{s}.{k}" for s, ks in general.items() for k in ks))
                raise BenchError(f"--set {key}: none of this sweep's methods ({', '.join(methods)}) has a key "
                                 f"'{name}'{_did_you_mean(name, known)}; `bench methods NAME` lists a method's keys")
            rewritten = f"method.{name}={value}"
        for m in targets:
            out[m].append(rewritten)
    return {m: tuple(items) for m, items in out.items()}


def _did_you_mean(word: str, known: set[str] | list[str]) -> str:
    """`` (did you mean X?)`` for the closest known name, or ""."""
    close = difflib.get_close_matches(word, sorted(known), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""
