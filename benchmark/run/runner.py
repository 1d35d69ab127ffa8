"""The runner: expand methods x datasets x ratios x seeds into run specs and execute them.

Each run: resolve its configuration, skip it if a complete record with the same configuration hash
exists, otherwise prepare the dataset, choose the labeled split, train (resuming from ``last.pt`` if a
previous attempt was interrupted), evaluate the selected weights on the evaluation split and write
the record. Records are the only shared state, so the in-process executor and ``--jobs N`` worker
processes give the same tables (cluster executors plug in the same way).
"""
from __future__ import annotations

import dataclasses
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sslbench import __version__
from sslbench.base.config import DataConfig, ResolvedConfig, TrainConfig, config_keys, configs_dir, resolve_config
from sslbench.base.errors import BenchError, UnsafePath
from sslbench.base.fields import FieldError, integer, mapping, name, number, strings, text
from sslbench.base.locks import FolderLock
from sslbench.base.run_files import RunFiles, run_dir
from sslbench.cache import PreparedDataset, check_dataset_name, prepare
from sslbench.io.readers import regular_input
from sslbench.method import METHODS, MethodContext, SSLMethod
from sslbench.report.evaluation import default_eval_workers, evaluate, predict_volume, validation_dice
from sslbench.report.metrics import EMPTY_POLICY
from sslbench.splits import split_labeled
from sslbench.train.interrupt import Interrupted, stop_on_signals, stop_requested
from sslbench.train.peak_memory import peak_memory_kind, peak_memory_mb, reset_peak_memory
from sslbench.train.precision import precision
from sslbench.train.trainer import TrainData, Trainer


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
        cfg = resolve_config(METHODS.get(self.method).Config, self.profile, self.dataset, self.method, self.overrides)
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
    its method's own file): what makes its protocol differ from the profile's, as sorted ``key=value``."""
    cfg = spec.resolved()
    base = resolve_config(METHODS.get(spec.method).Config, spec.profile, spec.dataset, spec.method, ())
    out = []
    for section in ("train", "data"):
        mine, theirs = dataclasses.asdict(getattr(cfg, section)), dataclasses.asdict(getattr(base, section))
        out += [f"{section}.{k}={mine[k]}" for k in sorted(mine) if mine[k] != theirs[k]]
    return out


def overrides_hash(items: Sequence[str]) -> str:
    """A short name for a set of protocol overrides ("" for none): runs of one profile with another
    schedule never share a table or a figure."""
    import hashlib

    return hashlib.sha256("\n".join(sorted(items)).encode()).hexdigest()[:6] if items else ""


def slug(text: str) -> str:
    """A folder-safe form of a tag ("w/ tailness" -> "w-tailness")."""
    out = re.sub(r"[^A-Za-z0-9._=+-]+", "-", text).strip("-")
    if not out:
        raise BenchError(f"--tag {text!r}: needs at least one letter or digit")
    if len(text) > 100:
        raise BenchError(f"--tag {text[:20]!r}...: at most 100 characters (it names the run's folder)")
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
    specs: list[RunSpec] = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 0 <= int(s) < 2**32:
            raise BenchError(f"seed must be an integer in 0..{2**32 - 1}, got {s!r}")
    for r in ratios:
        if not isinstance(r, (int, float)) or not 0 < float(r) <= 100:  # also refuses nan
            raise BenchError(f"label ratio must be a number in (0, 100], got {r!r}")
    for m in methods:
        METHODS.get(m)  # unknown names fail first, listing the known ones
    scoped = scope_overrides(methods, overrides)
    for ds in datasets:
        check_dataset_name(ds, cache)
        for m in methods:
            cls = METHODS.get(m)
            cfg = resolve_config(cls.Config, profile, ds, m, scoped[m])
            for r in ([100.0] if cls.uses_all_labels else ratios):
                for s in seeds:
                    spec = RunSpec(ds, m, float(r), int(s), profile, scoped[m], tag, cfg)
                    if spec not in specs:
                        specs.append(spec)
    return specs


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
                raise BenchError(f"--set {key}: {head} has no key '{rest}' (its keys: {', '.join(sorted(keys[head]))})")
            targets, rewritten = [head], f"method.{rest}={value}"
        else:
            name = rest if dot else key
            targets = [m for m in methods if name in keys[m]]
            if not targets:
                raise BenchError(f"--set {key}: none of this sweep's methods ({', '.join(methods)}) has a key "
                                 f"'{name}'; scope it with NAME.{name} to see a method's keys")
            rewritten = f"method.{name}={value}"
        for m in targets:
            out[m].append(rewritten)
    return {m: tuple(items) for m, items in out.items()}


def shipped_sweeps() -> list[str]:
    """The sweeps that ship with the package (``configs/sweeps/<name>.toml``)."""
    return sorted(p.stem for p in (configs_dir() / "sweeps").glob("*.toml"))


def find_sweep(name_or_path: str | Path) -> Path:
    """A sweep file: a path that exists, else the shipped sweep of that name (``table1``, ``acdc-cpu``)."""
    path = Path(name_or_path)
    if path.exists() or path.is_symlink():  # a file (or a FIFO, folder, link: refused by load_sweep, by name)
        return path
    shipped = configs_dir() / "sweeps" / f"{path.name.removesuffix('.toml')}.toml"
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    raise BenchError(f"--sweep {name_or_path}: no such file, nor a shipped sweep "
                     f"(shipped: {', '.join(shipped_sweeps())})")


def load_sweep(path: Path, profile: str | None = None, extra: Sequence[str] = (), cache: Path | None = None,
               warn: Callable[[str], None] = print) -> list[RunSpec]:
    """Run specs of a sweep file (``configs/sweeps/*.toml``): a ``[sweep]`` table with methods,
    datasets, ratios, seeds, profile and ``set`` overrides, and optional ``[[variant]]`` tables
    (``tag`` + ``set``, optionally their own ``methods``), each a tagged group of runs. Methods not
    registered are skipped with a warning, so one file can describe a whole paper table while methods are still being added.
    ``profile`` and ``extra`` (from the command line) override the file."""
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        regular_input(path)  # a FIFO would hang the read
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # TOMLDecodeError and UnicodeDecodeError are ValueErrors
        raise BenchError(f"{path}: unreadable sweep file ({type(exc).__name__}: {str(exc)[:200]})") from None
    sweep = data.get("sweep")
    allowed = {"methods", "datasets", "ratios", "seeds", "profile", "set"}
    if not isinstance(sweep, dict) or set(data) - {"sweep", "variant"} or set(sweep) - allowed:
        raise BenchError(f"{path}: expected a [sweep] table with {', '.join(sorted(allowed))} "
                         "and optional [[variant]] tables")
    try:
        def registered(names: list[str]) -> list[str]:
            return [m for m in names if m in METHODS.names() or warn(
                f"warning: {path.name}: skipping method '{m}' (not registered)")]

        variants = data.get("variant") or [{"tag": "", "set": []}]
        for variant in variants:
            if not isinstance(variant, dict) or set(variant) - {"tag", "set", "methods"}:
                raise BenchError(f"{path}: a [[variant]] takes tag, set and methods only")
        specs: list[RunSpec] = []
        datasets = _listed(sweep.get("datasets"), "datasets", str)
        ratios = [float(r) for r in _listed(sweep.get("ratios", [10]), "ratios", float)]
        seeds = _listed(sweep.get("seeds", [0]), "seeds", int)
        sweep_profile = sweep.get("profile", "quick")
        if not isinstance(sweep_profile, str):
            raise FieldError(f"profile: expected a string, got {sweep_profile!r}")
        for variant in variants:
            methods = registered(_listed(variant.get("methods", sweep.get("methods")), "methods", str))
            overrides = [*_listed(sweep.get("set", []), "set", str), *_listed(variant.get("set", []), "set", str),
                         *extra]
            tag = variant.get("tag", "")
            if not isinstance(tag, str):
                raise FieldError(f"variant tag: expected a string, got {tag!r}")
            specs += expand(methods, datasets, ratios, seeds, profile or sweep_profile, overrides, cache, tag)
    except FieldError as exc:
        raise BenchError(f"{path}: {exc}") from None
    return specs


def _listed(value: Any, key: str, kind: type) -> list[Any]:
    """A sweep file's list of ``kind`` (a string where a list belongs, or ``true`` as a seed, is refused);
    only ``set`` may be empty."""
    if not isinstance(value, list) or (not value and key != "set"):
        raise FieldError(f"{key}: expected a non-empty list, got {value!r}")
    for item in value:
        ok = isinstance(item, (int, float) if kind is float else kind) and not isinstance(item, bool)
        if not ok:
            raise FieldError(f"{key}: expected a list of {kind.__name__}s, got the item {item!r}")
    return list(value)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise BenchError(f"--device {name}: {exc}") from exc
    if device.type not in ("cpu", "cuda"):  # "meta" holds no data, others are not supported here
        raise BenchError(f"--device {name}: one of auto, cpu, cuda, cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise BenchError(f"--device {name}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise BenchError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def code_version() -> str:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "--no-optional-locks", "-C", str(here), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        dirty = subprocess.run(["git", "--no-optional-locks", "-C", str(here), "status", "--porcelain"], capture_output=True,
                               text=True, timeout=5).stdout.strip()
        if out.returncode == 0:
            return f"{__version__}+{out.stdout.strip()}{'.dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        pass
    return __version__


def environment(device: torch.device) -> dict[str, Any]:
    return {
        "sslbench": code_version(), "python": platform.python_version(), "torch": torch.__version__,
        "numpy": np.__version__, "platform": platform.platform(), "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "threads": torch.get_num_threads(),
    }


def build_train_data(ds: PreparedDataset, labeled: list[str], unlabeled: list[str], size: int,
                     device: torch.device) -> TrainData:
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


def check_folder(spec: RunSpec, opts: RunOptions) -> str:
    """State of a run's folder: "new", "resume", "done" or "replace" (with --force). A folder that
    holds another configuration is an error unless --force: nothing is overwritten by accident."""
    chash = spec.resolved().hash()
    files = spec.files(opts.results)
    files.check()  # a planted link or special file: one line, before anything is written
    if not files.has(RunFiles.CONFIG):
        return "new"
    try:
        stored = files.read(RunFiles.CONFIG)
        if not isinstance(stored, dict):
            raise BenchError(f"{files.path(RunFiles.CONFIG)}: not a run configuration (a JSON {type(stored).__name__})")
    except UnsafePath:
        raise
    except BenchError as exc:  # damaged: the folder's configuration is unknown, so only --force replaces it
        if not opts.force:
            raise BenchError(f"{exc}; use --force to replace the run or --results for another folder") from None
        return "replace"
    stored_tag = stored.get("spec", {}).get("tag", "") if isinstance(stored.get("spec"), dict) else ""
    if stored_tag != spec.tag:  # "a/b" and "a b" share the folder name "@a-b"
        if not opts.force:
            raise BenchError(f"{files.folder}: holds the run tagged {stored_tag!r}, not {spec.tag!r} (both give "
                             "this folder name); choose a tag that differs in its letters or digits, or --force")
        return "replace"  # never the other tag's finished run taken for this one
    old = stored.get("hash")
    if old != chash:
        if not opts.force:
            diff = config_diff(stored, spec.resolved().to_dict())
            raise BenchError(f"{files.folder}: holds a run with another configuration ({diff}); "
                             "use --force to replace it or --results for another folder")
        return "replace"
    return "done" if files.is_done() else "resume"


def config_diff(stored: dict[str, Any], requested: dict[str, Any], most: int = 6) -> str:
    """The keys whose stored and requested values differ, as ``section.key stored -> requested``."""
    out = []
    for section in ("train", "data", "method"):
        a, b = stored.get(section, {}), requested.get(section, {})
        a = a if isinstance(a, dict) else {}
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b or _json_value(a[key]) != _json_value(b[key]):
                out.append(f"{section}.{key} {a.get(key, '(absent)')!r} -> {b.get(key, '(absent)')!r}")
    if not out:
        return "its stored hash differs"
    return "; ".join(out[:most]) + (f"; and {len(out) - most} more" if len(out) > most else "")


def _json_value(value: Any) -> Any:
    """A value as JSON stores it (tuples are lists), for comparing a stored configuration."""
    import json

    return json.loads(json.dumps(value, default=str))


def run_one(spec: RunSpec, opts: RunOptions, log: Callable[[str], None] = print) -> RunOutcome:
    """One run, holding its folder's lock: a run another process is training is skipped ("busy"),
    never trained twice; a lock left by a killed process is taken over with a warning."""
    files = spec.files(opts.results)
    if check_folder(spec, opts) == "done":
        return _skip_done(spec, opts, files, log)  # a finished run is only read: no lock, no write access needed
    files.create()
    lock = FolderLock(files.lock_path)
    if not lock.acquire(wait=False):
        return RunOutcome(spec, "busy", str(files.folder), message=f"running elsewhere ({lock.holder})")
    try:
        if lock.stale:
            log(f"warning: {spec.label}: its last session ({lock.stale}) ended without finishing; taking over")
        files.remove_orphans()
        files.remove(RunFiles.FAILED)
        files.remove(RunFiles.ERROR_LOG)
        files.reserve()
        try:
            return _run_locked(spec, opts, files, log)
        except Interrupted:
            raise
        except Exception as exc:
            files.note_failure(exc)
            raise
        finally:
            files.release_reserve()
    finally:
        lock.release()


def _skip_done(spec: RunSpec, opts: RunOptions, files: RunFiles, log: Callable[[str], None]) -> RunOutcome:
    record = files.record() or {}
    note = "already done"
    if opts.save_predictions and not files.predictions.is_dir():
        note += f"; its predictions were not saved: bench predict {files.folder}"
        log(f"note: {spec.label}: {note}")
    return RunOutcome(spec, "skipped", str(files.folder), record.get("summary", {}), note)


def _run_locked(spec: RunSpec, opts: RunOptions, files: RunFiles, log: Callable[[str], None]) -> RunOutcome:
    """Skip, replace or (re)start the run whose lock we hold: train, evaluate, record."""
    cfg: ResolvedConfig = spec.resolved()
    state = check_folder(spec, opts)
    if state == "done":
        return _skip_done(spec, opts, files, log)
    if state == "replace":
        files.clear()
    elif files.has(RunFiles.DONE):  # marked done, but its record is unreadable or damaged
        log(f"warning: {files.path(RunFiles.RECORD)}: unreadable or damaged record; evaluating the run again "
            "from its checkpoints (or training it again without them)")
        files.remove(RunFiles.DONE)
    spec_fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec) if f.name != "config"}
    files.write(RunFiles.CONFIG, {"hash": cfg.hash(), "spec": spec_fields, "sources": cfg.sources, **cfg.to_dict()})
    t0 = time.perf_counter()
    job = _set_up(spec, opts, files, log)
    if files.has_checkpoint(RunFiles.LAST):
        log(f"resuming {spec.label} from its checkpoint")
    fit = job.trainer.fit(select=False)
    if fit.resumed_from is not None:
        log(f"resumed {spec.label} at iteration {fit.resumed_from} of stage '{fit.resumed_stage}'")
    t_eval = time.perf_counter()
    # the last weights are scored too (the checkpoint protocol in full: best on validation and last)
    last_iteration = job.trainer.iteration
    last, policy = _evaluate(job, opts, files, RunFiles.METRICS_LAST, save=False)
    fit = job.trainer.select(fit)
    if fit.selected == "last" or fit.best_iteration == last_iteration:
        metrics = last                       # the same weights: scored once
        files.write(RunFiles.METRICS, {**metrics, "policy": policy})
        if opts.save_predictions:
            _evaluate(job, opts, files, RunFiles.METRICS)
    else:
        metrics, policy = _evaluate(job, opts, files, RunFiles.METRICS)
    record = _record(job, fit, metrics, policy, {"t0": t0, "eval_s": time.perf_counter() - t_eval})
    record["last"] = {"iteration": last_iteration, "summary": last["foreground_mean"], "per_class": last["mean"]}
    files.write(RunFiles.RECORD, record)
    files.mark_done()
    files.prune_checkpoints(opts.keep_checkpoints)
    return RunOutcome(spec, "done", str(files.folder), record["summary"])


@dataclass
class _Job:
    """Everything one run needs once it is set up."""

    spec: RunSpec
    cfg: ResolvedConfig
    device: torch.device
    ds: PreparedDataset
    labeled: list[str]
    data: TrainData
    method: SSLMethod
    trainer: Trainer


def _set_up(spec: RunSpec, opts: RunOptions, files: RunFiles, log: Callable[[str], None]) -> _Job:
    """Data, split, method and trainer of a run (the evaluation split is checked before training)."""
    cls: type[SSLMethod] = METHODS.get(spec.method)
    cfg = spec.resolved()
    device = pick_device(opts.device)
    reset_peak_memory(device)
    ds = prepare(spec.dataset, cache_root=opts.cache)
    labeled, unlabeled = split_labeled(ds, spec.ratio, spec.seed, cfg.data.split)
    data = build_train_data(ds, labeled, unlabeled if cls.uses_unlabeled else [], cfg.train.image_size, device)
    seed_everything(spec.seed)
    ctx = MethodContext(in_channels=1, num_classes=ds.num_classes, image_size=cfg.train.image_size,
                        device=device, base_width=cfg.train.base_width)
    method = cls(cfg.method, ctx)
    val_ids = [c.id for c in ds.eval_cases("val")]
    ds.eval_cases(cfg.data.eval_split)  # fail before training, not after it
    trainer = Trainer(
        method, data, cfg.train, spec.seed,
        validate=lambda: validation_dice(method, ds, val_ids, cfg.train.image_size, device, cfg.train.amp),
        files=files, progress=opts.progress, desc=spec.label, warn=lambda m: log(f"warning: {m}"),
    )
    return _Job(spec, cfg, device, ds, labeled, data, method, trainer)


def _evaluate(job: _Job, opts: RunOptions, files: RunFiles, name: str,
              save: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """Metrics of the inference network's current weights on the evaluation split, written to
    ``name`` (``metrics.json`` for the selected weights, ``metrics-last.json`` for the last ones);
    predictions are saved for the selected weights only."""
    cfg, ds = job.cfg, job.ds
    eval_ids = [c.id for c in ds.eval_cases(cfg.data.eval_split)]
    saver = prediction_saver(ds, files.predictions) if opts.save_predictions and save else None
    workers = default_eval_workers(job.device) if opts.eval_workers is None else opts.eval_workers
    metrics = evaluate(job.method, ds, eval_ids, cfg.train.image_size, job.device, cfg.train.amp, saver, workers)
    policy = {**EMPTY_POLICY, "spacing": "mm from the dataset" if all(c.spacing for c in ds.cases) else "voxels",
              "connectivity": 1}
    files.write(name, {**metrics, "policy": policy})
    return metrics, policy


def _record(job: _Job, fit: Any, metrics: dict[str, Any], policy: dict[str, Any],
            clock: dict[str, float]) -> dict[str, Any]:
    """The run record (``run.json``): identity, configuration, split, selection, results, cost, environment."""
    spec, cfg, method, device = job.spec, job.cfg, job.method, job.device
    entry = METHODS.entry(spec.method)
    return {
        "id": f"{spec.dataset}/{spec.profile}/{spec.folder_method}/ratio-{spec.ratio:g}/seed-{spec.seed}",
        "dataset": spec.dataset, "profile": spec.profile, "method": spec.method,
        "paper_name": entry.obj.paper_name, "variant": spec.tag, "method_source": entry.source,
        "method_class": entry.class_path,
        "ratio": spec.ratio, "seed": spec.seed, "overrides": list(spec.overrides), "config_hash": cfg.hash(),
        "classes": list(job.ds.classes[1:]), "eval_split": cfg.data.eval_split,
        "n_eval_volumes": len(metrics["metric_per_case"]),
        "split": cfg.data.split, "labeled_cases": job.labeled, "n_labeled_slices": int(job.data.labeled.numel()),
        "n_unlabeled_slices": int(job.data.unlabeled.numel()), "inference_net": method.inference_net_name,
        "precision": precision(device, cfg.train.amp), "stage_iterations": dict(job.trainer.lengths),
        "schedule": {"image_size": cfg.train.image_size, "batch_size": cfg.train.batch_size,
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
        "timing": {"wall_s": time.perf_counter() - clock["t0"], "train_s": sum(fit.stage_seconds.values()),
                   "eval_s": clock["eval_s"], "stage_s": fit.stage_seconds, "iters_per_s": fit.iterations_per_second,
                   "peak_mem_mb": peak_memory_mb(device), "stage_peak_mem_mb": fit.stage_peak_mem_mb,
                   "peak_mem_kind": peak_memory_kind(device), "resumed_from": fit.resumed_from},
        "metric_policy": policy,
        "env": environment(device),
    }


def _init_worker(stop_signals: tuple[str, ...]) -> None:
    stop_on_signals(stop_signals)


def _worker(spec: RunSpec, opts: RunOptions) -> RunOutcome:
    if stop_requested():
        return _interrupted(spec, opts, "not started: a stop was requested")
    if opts.threads:
        torch.set_num_threads(opts.threads)
    METHODS.load_env_plugins()  # $BENCH_PLUGINS, as the parent process loaded them
    for module in opts.plugins:
        METHODS.load_plugin_module(module)
    try:
        return run_one(spec, opts, log=lambda msg: None)
    except Interrupted as exc:
        return _interrupted(spec, opts, str(exc))


def check_inputs(specs: Sequence[RunSpec], opts: RunOptions, check_device: bool = True) -> None:
    """Every input problem of a sweep, before its first run starts (or is submitted): the device, the
    datasets (prepared once here, before any worker or array task reads them), folder conflicts and
    the evaluation splits."""
    if check_device:
        pick_device(opts.device)  # a bad --device fails here, before any run folder is written
    prepared = {name: prepare(name, cache_root=opts.cache) for name in dict.fromkeys(s.dataset for s in specs)}
    for spec in specs:
        check_folder(spec, opts)
        cfg = spec.resolved()
        prepared[spec.dataset].eval_cases("val")
        prepared[spec.dataset].eval_cases(cfg.data.eval_split)


def execute(specs: Sequence[RunSpec], opts: RunOptions, jobs: int = 1,
            log: Callable[[str], None] = print) -> list[RunOutcome]:
    """Run every spec: in this process (``jobs == 1``) or in ``jobs`` spawned worker processes.

    Folder conflicts are checked for every run before any starts. A run that fails (a diverged loss,
    a bug in a plugin) is reported and the sweep goes on; its checkpoint stays for a later resume.
    """
    check_inputs(specs, opts)
    outcomes: list[RunOutcome] = []
    clock = SweepClock(len(specs), max(1, jobs))
    if jobs <= 1:
        bar = _sweep_bar(len(specs), opts.progress)
        say = (lambda message: bar.write(message, file=sys.stderr)) if bar is not None else log
        for i, spec in enumerate(specs, 1):
            try:
                if stop_requested():
                    outcome = _interrupted(spec, opts, "not started: a stop was requested")
                else:
                    outcome = run_one(spec, opts, say)
            except Interrupted as exc:
                outcome = _interrupted(spec, opts, str(exc))
            except Exception as exc:  # noqa: BLE001 - one failed run must not end the sweep
                outcome = _failed(spec, opts, exc)
            outcomes.append(outcome)
            say(_describe(i, len(specs), outcome) + clock.tick(outcome))
            if bar is not None:
                bar.set_description_str(f"sweep ({clock.eta()})" if clock.eta() else "sweep", refresh=False)
                bar.update(1)
        if bar is not None:
            bar.close()
        return outcomes
    import multiprocessing as mp

    threads = opts.threads or max(1, (os.cpu_count() or 1) // jobs)
    wopts = dataclasses.replace(opts, progress=False, threads=threads,  # the jobs already use the cores
                                eval_workers=0 if opts.eval_workers is None else opts.eval_workers)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"),
                             initializer=_init_worker, initargs=(opts.stop_signals,)) as pool:
        futures = {pool.submit(_worker, spec, wopts): spec for spec in specs}
        for i, fut in enumerate(as_completed(futures), 1):
            try:
                outcome = fut.result()
            except CancelledError:
                outcome = _interrupted(futures[fut], opts, "not started: a stop was requested")
            except Exception as exc:  # noqa: BLE001
                outcome = _failed(futures[fut], opts, exc)
            outcomes.append(outcome)
            log(_describe(i, len(specs), outcome) + clock.tick(outcome))
            if stop_requested():  # the running workers checkpoint and stop; none starts another
                for other in futures:
                    other.cancel()
    return outcomes


def _sweep_bar(total: int, progress: bool) -> Any:
    """The sweep's own bar (runs finished, the sweep's ETA) above each run's bar, for sweeps of more
    than one run with progress on; None otherwise. Log lines go through it so the bars stay whole."""
    if not progress or total < 2:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="sweep", unit="run", position=0, leave=True, dynamic_ncols=True,
                bar_format="{desc}: {n}/{total} runs |{bar}|", file=sys.stderr)


def _interrupted(spec: RunSpec, opts: RunOptions, message: str) -> RunOutcome:
    return RunOutcome(spec, "interrupted", str(spec.files(opts.results).folder), message=message)


def _failed(spec: RunSpec, opts: RunOptions, exc: BaseException) -> RunOutcome:
    files = spec.files(opts.results)
    kind = "" if isinstance(exc, BenchError) else f"{type(exc).__name__}: "
    where = f" (traceback: {files.path(RunFiles.ERROR_LOG)})" if files.has(RunFiles.ERROR_LOG) else ""
    return RunOutcome(spec, "failed", str(files.folder), message=f"{kind}{exc}{where}")


class SweepClock:
    """The sweep's ETA after each finished run: the runs left times the mean wall time of the runs
    trained so far in this sweep, divided by the worker processes."""

    def __init__(self, total: int, jobs: int) -> None:
        self.total, self.jobs, self.seen = total, jobs, 0
        self.start = time.perf_counter()
        self.trained = 0

    def tick(self, outcome: RunOutcome) -> str:
        """Count a finished run; the text for its log line ("" when nothing is left or known)."""
        self.seen += 1
        if outcome.status in ("done", "failed"):
            self.trained += 1
        eta = self.eta()
        return f"  (sweep: {self.seen}/{self.total}, {eta})" if eta else ""

    def eta(self) -> str:
        """"ETA 3 min" for the runs left, from the runs trained so far; "" when none is left or known."""
        left = self.total - self.seen
        if not left or not self.trained:
            return ""
        per_run = (time.perf_counter() - self.start) / self.trained * min(self.jobs, self.trained)
        eta = left * per_run / self.jobs
        return f"ETA {eta / 60:.0f} min" if eta >= 60 else f"ETA {eta:.0f} s"


def _describe(i: int, n: int, outcome: RunOutcome) -> str:
    if outcome.status == "failed":
        return f"[{i}/{n}] {outcome.spec.label}: FAILED: {outcome.message}"
    s = outcome.summary
    score = f"Dice {100 * s['dice']:.1f}  ASSD {s['assd']:.2f}" if s else ""
    if outcome.status == "busy":
        return f"[{i}/{n}] {outcome.spec.label}: skipped, {outcome.message}"
    if outcome.status == "interrupted":
        return f"[{i}/{n}] {outcome.spec.label}: interrupted, {outcome.message}"
    what = "already done, skipped" if outcome.status == "skipped" else "done"
    return f"[{i}/{n}] {outcome.spec.label}: {what}  {score}"


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
    stored = files.read(RunFiles.CONFIG)
    try:
        given = mapping(mapping(stored, "config.json")["spec"], "spec")
        overrides = strings(given.get("overrides", []), "spec.overrides")
        spec = RunSpec(name(given.get("dataset"), "spec.dataset"), name(given.get("method"), "spec.method"),
                       number(given.get("ratio"), "spec.ratio", 0.0, 100.0), integer(given.get("seed"), "spec.seed", 0),
                       name(given.get("profile"), "spec.profile"), tuple(overrides), text(given.get("tag", ""), "spec.tag"))
    except (KeyError, FieldError) as exc:
        raise BenchError(f"{files.path(RunFiles.CONFIG)}: not a run configuration ({exc})") from None
    cfg = spec.resolved()
    dev = pick_device(device)
    ds = prepare(spec.dataset, cache_root=cache)
    cls = METHODS.get(spec.method)
    method = cls(cfg.method, MethodContext(in_channels=1, num_classes=ds.num_classes, image_size=cfg.train.image_size,
                                           device=dev, base_width=cfg.train.base_width))
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
        saver(cid, predict_volume(method, np.asarray(image), cfg.train.image_size, dev, ds.interpolation,
                                  amp=cfg.train.amp))
        written.append(cid)
    log(f"{folder}: {len(written)} prediction(s) from {which} in {files.predictions}")
    return [files.predictions / c for c in written]

