"""`bench plot`: figures from the run records (seaborn / matplotlib, PNG and PDF, paper column width).

* ``ratio``: Dice and ASD against the label ratio, one line per method and tag, spread over seeds;
* ``classes``: per-class Dice box plots over evaluated volumes (and seeds) for one label ratio;
* ``qualitative``: a grid like the paper's Figure 3: image, ground truth and each method's
  prediction on the same slices of one case (runs made with ``--save-predictions``), with a class legend;
* ``param``: Dice against the value of one configuration key across runs (hyper-parameter curves),
  a line per method and its other settings, a panel per label ratio;
* ``curves``: logged training values (loss and validation Dice by default, any key of the log on
  request: a loss term, ``cons_weight``, ``lr``, ``step_s``) against the global step, a dashed line
  labelled with the stage's name where a later stage (training after a pre-training) begins, each
  key's unit in the caption;
* ``paired``: two methods' Dice per evaluated case and seed against each other, the diagonal drawn.

A figure never mixes datasets, profiles (schedules), tags or distance units, and a point never pools
label ratios: records of several (dataset, profile key) pairs give one figure per pair
(``<out>-<dataset>-<profile key>``), and each tagged variant is a line or box of its own. Beside each
figure, ``<figure>.txt`` states its protocol as a table's caption does (evaluation split, checkpoint,
seeds per point, schedule, units, code versions): ``caption_file(path)``.
"""
from __future__ import annotations

import difflib
import logging
import math
import re
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sslbench.base.atomic import atomic_path, write_text
from sslbench.base.errors import BenchError
from sslbench.base.fields import FieldError, integer, number
from sslbench.base.file_kinds import not_regular
from sslbench.base.records import MAX_ITERATIONS
from sslbench.base.run_files import RunFiles
from sslbench.report.frame import code_note, run_frame, tag_note, variant_name
from sslbench.report.tables import paper_order

COLUMN_WIDTH_IN = 3.5  # one column of a two-column paper
FORMATS = ("png", "pdf")
CLASS_COLORS = ["#e41a1c", "#4daf4a", "#377eb8", "#ff7f00", "#984ea3", "#a65628", "#f781bf"]
DEFAULT_KEYS = ("loss", "val_dice")  # what ``curves`` draws unless asked for other logged keys
KEY_LABELS = {"loss": "training loss", "lr": "learning rate", "step_s": "step time [s]",
              "cons_weight": "consistency weight", "val_dice": "validation DSC [%]"}
LOG_KEY = re.compile(r"[A-Za-z0-9_.:/-]{1,64}")  # a log key a figure or an error line may show

log = logging.getLogger("sslbench")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid", font_scale=0.9)
    # every label drawn is plain text: a tag or class name holding "$...$" is shown, never parsed as
    # mathtext (which fails on unbalanced or unknown commands and would end the figure)
    matplotlib.rcParams["text.parse_math"] = False
    return plt, sns


def figure_base(out: Path) -> Path:
    """Where a figure goes: ``-o`` names a file without extension; an existing folder gets the figure
    inside it (never a sibling of it)."""
    return out / "figure" if out.is_dir() else out


def caption_file(figure: Path) -> Path:
    """The caption side file of a figure (``<figure>.txt`` beside its .png and .pdf)."""
    return figure.with_suffix(".txt")


def with_captions(paths: Sequence[Path]) -> list[Path]:
    """Figure files as written, each figure's caption file after its last format: what ``bench plot``
    lists."""
    out: list[Path] = []
    for path in paths:
        out.append(path)
        if path.suffix == f".{FORMATS[-1]}":
            out.append(caption_file(path))
    return out


def _wrapped(fig, text: str, fontsize: float) -> str:
    """``text`` wrapped to the figure's width: a long schedule text would otherwise widen the saved figure."""
    return textwrap.fill(text, width=max(int(fig.get_figwidth() * 72 / (0.55 * fontsize)), 30))


def _suptitle(fig, text: str, fontsize: float = 8, **kwargs: Any) -> None:
    fig.suptitle(_wrapped(fig, text, fontsize), fontsize=fontsize, **kwargs)


def _save(fig, out: Path, caption: str) -> list[Path]:
    """The figure as PNG and PDF and its caption as ``<out>.txt``; returns the figure files."""
    written = []
    for ext in FORMATS:
        path = out.with_name(out.name + f".{ext}")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, dpi=300, bbox_inches="tight")
        written.append(path)
    write_text(out.with_name(out.name + ".txt"), caption.rstrip("\n") + "\n")
    return written


# ------------------------------------------------------------------------------------ selecting runs
def _ratio_list(ratios: Any) -> str:
    return ", ".join(f"{r:g}" for r in sorted(set(ratios))) + " %"


def _key_listing(df: pd.DataFrame) -> str:
    """Profile keys as a person reads them, the key itself where it carries a hash."""
    pairs = dict(zip(df.profile_key, df.profile_text))
    return "; ".join(k if k == t else f"{t} [{k}]" for k, t in sorted(pairs.items()))


def _variant(spec: str, bare_is_untagged: bool = False) -> tuple[str, str | None]:
    """``method@tag``: (method, tag), ``method@`` the untagged runs; ``method``: every variant (None),
    or with ``bare_is_untagged`` its untagged runs ("")."""
    method, at, tag = spec.partition("@")
    return method, (tag if at else "" if bare_is_untagged else None)


def _pick_methods(df: pd.DataFrame, methods: Sequence[str], bare_is_untagged: bool = False) -> pd.Series:
    """Rows of the runs ``methods`` name (``method`` or ``method@tag``); a name without runs here is one
    error with a did-you-mean and the methods that have runs."""
    have = sorted(set(df.method))
    keep = pd.Series(False, index=df.index)
    for spec in methods:
        method, tag = _variant(spec, bare_is_untagged)
        if method not in have:
            close = difflib.get_close_matches(method, have, n=1, cutoff=0.6)
            raise BenchError(f"--methods {method}: no finished run of it here"
                             + (f"; did you mean '{close[0]}'?" if close else "")
                             + f" (methods with runs: {', '.join(have)})")
        rows = df.method == method
        if tag is not None:
            tags = sorted(set(df.tag[rows]))
            if tag not in tags:
                known = ", ".join(method + (f"@{t}" if t else "") for t in tags)
                raise BenchError(f"--methods {spec}: no finished run of that variant (runs of {method}: {known})")
            rows &= df.tag == tag
        keep |= rows
    return keep


def select_runs(root: Path, dataset: str | None = None, profile: str | None = None,
                methods: Sequence[str] | None = None, checkpoint: str = "best",
                bare_is_untagged: bool = False) -> pd.DataFrame:
    """The finished runs under ``root`` the filters keep (``run_frame`` rows); a filter that leaves
    nothing is one error naming what there is instead (``bare_is_untagged``: see ``_variant``)."""
    df = run_frame(root, checkpoint)
    if df.empty:
        raise BenchError(f"{root}: no finished runs (run `bench run` first)")
    if dataset:
        if dataset not in set(df.dataset):
            raise BenchError(f"--dataset {dataset}: no finished runs of it (datasets with runs: "
                             f"{', '.join(sorted(set(df.dataset)))})")
        df = df[df.dataset == dataset]
    if profile:
        hit = (df.profile == profile) | (df.profile_key == profile) | (df.profile_text == profile)
        if not hit.any():
            where = f" on {dataset}" if dataset else ""
            raise BenchError(f"--profile {profile}: no finished runs of it{where} (profiles with runs: "
                             f"{_key_listing(df)})")
        df = df[hit]
    if methods:
        df = df[_pick_methods(df, methods, bare_is_untagged)]
    return df


def _at_ratio(df: pd.DataFrame, ratio: float) -> pd.DataFrame:
    """The runs at ``ratio`` % labels, with the runs on every label (UNet-F) of the same dataset and
    schedule as a reference; none at that ratio is one error naming the ratios that have runs."""
    exact = df.ratio == ratio
    if not exact.any():
        raise BenchError(f"no finished runs at {ratio:g} % labels (ratios with runs: {_ratio_list(df.ratio)})")
    places = set(zip(df.dataset[exact], df.profile_key[exact]))
    reference = df.all_labels & pd.Series([p in places for p in zip(df.dataset, df.profile_key)], index=df.index)
    return df[exact | reference]


def _groups(df: pd.DataFrame, out: Path, name_all: bool = False) -> Iterator[tuple[pd.DataFrame, Path, str]]:
    """(records, output path, title) per (dataset, profile key): one figure each, never merged. The
    path is ``out`` for a single group, else ``<out>-<dataset>-<profile key>`` (always with
    ``name_all``, the default names); the title reads the key as its overrides (profile_text)."""
    keys = sorted(df.groupby(["dataset", "profile_key"]).groups)
    for ds, key in keys:
        sub = df[(df.dataset == ds) & (df.profile_key == key)]
        units = set(sub.units)
        if len(units) > 1:
            raise BenchError(f"{ds}, {key}: runs report distances in {' and '.join(sorted(units))}; plot them apart")
        path = out if len(keys) == 1 and not name_all else out.with_name(f"{out.name}-{ds}-{key}")
        text = sub.profile_text.iloc[0] if "profile_text" in sub else key
        yield sub.assign(name=[variant_name(n, t) for n, t in zip(sub.paper_name, sub.tag)]), path, f"{ds}, {text}"


def _ratio_path(path: Path, r: float, several: bool, name_all: bool) -> Path:
    return path.with_name(f"{path.name}-{r:g}pct") if several or name_all else path


# ------------------------------------------------------------------------------------------ captions
def _one(runs: pd.DataFrame, column: str) -> str:
    values = [str(v) for v in dict.fromkeys(runs[column].dropna())] if column in runs else []
    return " / ".join(values) if values else "?"


def _protocol(runs: pd.DataFrame, evaluated: bool = True) -> list[str]:
    """Caption lines every figure of ``runs`` (one dataset and profile key) states, from their records:
    dataset, schedule (the profile key read as its overrides), training, evaluation split and
    checkpoint (``evaluated``: the figure shows test metrics), units, and the code note."""
    key, text = runs.profile_key.iloc[0], _one(runs, "profile_text")
    schedule = text if key == text else f"{text} (profile key {key}: the profile plus a hash of these values; " \
                                         "file names carry the key)"
    lines = [f"dataset: {_one(runs, 'dataset')}", f"schedule: {schedule}",
             (f"training: {_one(runs, 'stage_iterations')} iterations at {_one(runs, 'image_size')} px, batch "
             f"{_one(runs, 'batch_size')} ({_one(runs, 'labeled_bs')} labeled)")]
    if evaluated:
        split = _one(runs, "eval_split")
        on = "the same volumes it is scored on" if split == "val" else "the validation split"
        weights = (f"the weights with the best validation Dice (selected on {on})"
                   if (runs.checkpoint == "best").all() and (runs.selection_rule == "best").all()
                   else "the last weights")
        lines.append(f"evaluated on: the {split} split ({_one(runs, 'n_eval_volumes')} volumes), {weights}")
        lines.append(f"units: DSC [%], ASD = ASSD in {_one(runs, 'units')}")
    else:
        lines.append("validation Dice: on the validation split, as the runs logged it while training")
    tags = tag_note(runs)
    if tags:
        lines.append(tags)  # what each tagged line or box means: its --set items
    note = code_note(runs) if "code_core" in runs and "stale" in runs else ""
    if note:
        lines.append(f"{CODE_LINE}{note}")
    lines.append(f"runs: {len(runs)}")
    return lines


CODE_LINE = "code: "  # the caption line that says what the code behind the runs was (``bench plot`` warns with it)


def _point_label(column: str, value: Any) -> str:
    return f"{value:g} %" if column == "ratio" else f"at {value:g}" if column == "value" else str(value)


def _per_point(runs: pd.DataFrame, by: Sequence[str], what: str = "seeds per point") -> str:
    """How many seeds each point (each group of ``by``) averages, and which points have fewer."""
    counts = runs.groupby(list(by)).seed.nunique()
    if counts.empty:
        return f"{what}: none"
    if counts.nunique() == 1:
        return f"{what}: {counts.iloc[0]}"
    fewer = ", ".join(" ".join(_point_label(c, v) for c, v in zip(by, idx if isinstance(idx, tuple) else (idx,)))
                      + f": {n}" for idx, n in counts.items() if n < counts.max())
    return f"{what}: {counts.min()}-{counts.max()} ({fewer})"


def _caption(head: str, lines: Sequence[str]) -> str:
    return "\n".join([head, *lines])


def key_unit(key: str) -> str:
    """The unit a curves caption states for a logged key: seconds for the step time, % for the
    validation Dice (drawn in %), none for the learning rate, loss terms, weights and thresholds; a
    key the trainer does not know (a method's own) is drawn as logged."""
    if key == "step_s":
        return "s (mean wall time of a training step between two log lines)"
    if key == "val_dice":
        return "%"
    if key == "lr" or "loss" in key or key.endswith(("weight", "ratio", "fraction", "thresh", "threshold")):
        return "unitless"
    return "as logged"


def _key_text(key: str) -> str:
    """``step_s (step time): s (...)``: a key, what it is where the figure names it, and its unit."""
    label = re.sub(r" \[.*\]$", "", KEY_LABELS.get(key, key))
    return f"{key}{f' ({label})' if label != key else ''}: {key_unit(key)}"


# ------------------------------------------------------------------------------------------- figures
def plot_ratio(root: Path, out: Path, dataset: str | None = None, profile: str | None = None,
               checkpoint: str = "best", frame: pd.DataFrame | None = None, *,
               methods: Sequence[str] | None = None, name_all: bool = False) -> list[Path]:
    """``frame``: these records instead of the ones selected under ``root`` (the HTML report)."""
    plt, sns = _pyplot()
    paths = []
    records = frame if frame is not None else select_runs(root, dataset, profile, methods, checkpoint)
    for df, path, title in _groups(records, figure_base(out), name_all):
        ratios = sorted(df.loc[~df.all_labels, "ratio"].unique()) or [100.0]
        rows = []
        for _, rec in df.iterrows():  # UNet-F (every label) is drawn across all ratios as a reference
            for r in (ratios if rec.all_labels else [rec.ratio]):
                rows.append({**rec.to_dict(), "ratio": r})
        long = pd.DataFrame(rows)
        order = sorted(long.name.unique(), key=paper_order)
        fig, axes = plt.subplots(1, 2, figsize=(2 * COLUMN_WIDTH_IN, 2.4))
        for ax, (key, label) in zip(axes, (("dsc", "DSC [%]"), ("asd", f"ASD [{df.units.iloc[0]}]"))):
            sns.lineplot(data=long, x="ratio", y=key, hue="name", hue_order=order, marker="o",
                         errorbar="sd", ax=ax, legend=ax is axes[-1])
            ax.set_xlabel("labeled volumes [%]")
            ax.set_ylabel(label)
            ax.set_xticks(ratios)
        axes[-1].legend(title=None, fontsize=6, frameon=False, bbox_to_anchor=(1.02, 1), loc="upper left")
        _suptitle(fig, f"{title}: mean ± sd over seeds")
        caption = _caption("figure: DSC and ASD against the label ratio, a line per method and tag; each point "
                           "mean ± sd over seeds (runs on every label, UNet-F, drawn flat across the ratios)",
                           [_per_point(df, ["name", "ratio"]), *_protocol(df)])
        paths += _save(fig, path, caption)
        plt.close(fig)
    return paths


def plot_classes(root: Path, out: Path, dataset: str | None = None, profile: str | None = None,
                 ratio: float | None = None, checkpoint: str = "best", frame: pd.DataFrame | None = None, *,
                 methods: Sequence[str] | None = None, name_all: bool = False) -> list[Path]:
    """Per-class Dice box plots, one figure per dataset, profile key and label ratio (every ratio
    when ``ratio`` is None)."""
    plt, sns = _pyplot()
    metrics_file = RunFiles.METRICS if checkpoint == "best" else RunFiles.METRICS_LAST
    paths = []
    records = frame if frame is not None else select_runs(root, dataset, profile, methods, checkpoint)
    if ratio is not None:
        records = _at_ratio(records, ratio)
    for df, path, title in _groups(records, figure_base(out), name_all):
        ratios = [ratio] if ratio is not None else sorted(df.loc[~df.all_labels, "ratio"].unique()) or [100.0]
        for r in ratios:
            sub = df[(df.ratio == r) | df.all_labels]
            rows = []
            for _, rec in sub.iterrows():
                try:
                    metrics = RunFiles(Path(rec.dir)).read_metrics(metrics_file)
                except BenchError as exc:  # one lost file must not hide the other runs
                    log.warning(f"skipping {exc}")
                    continue
                for case in metrics["metric_per_case"]:
                    for cls, m in case["metrics"].items():
                        rows.append({"name": rec["name"], "class": cls, "dsc": 100 * m["dice"], "seed": rec.seed,
                                     "case": case["case"]})
            if not rows:
                raise BenchError(f"{title}: no run at {r:g} % labels has a readable {metrics_file}")
            long = pd.DataFrame(rows)
            order = sorted(long.name.unique(), key=paper_order)
            fig, ax = plt.subplots(figsize=(2 * COLUMN_WIDTH_IN, 2.6))
            sns.boxplot(data=long, x="class", y="dsc", hue="name", hue_order=order, ax=ax, fliersize=1, linewidth=0.6)
            ax.set_ylabel("DSC [%] per volume")
            ax.set_xlabel(None)
            ax.legend(fontsize=6, frameon=False, bbox_to_anchor=(1.02, 1), loc="upper left")
            ax.set_title(_wrapped(fig, f"{title}, {r:g} % labeled", 8), fontsize=8)
            boxes = long.groupby("name").agg(cases=("case", "nunique"), seeds=("seed", "nunique"))
            per_box = ", ".join(f"{n}: {b.cases} x {b.seeds}" for n, b in boxes.iterrows())
            caption = _caption(f"figure: Dice per class at {r:g} % labels, a box per method and tag over the "
                               "evaluated volumes of every seed",
                               [f"volumes x seeds per box: {per_box}", *_protocol(sub)])
            paths += _save(fig, _ratio_path(path, r, len(ratios) > 1, name_all), caption)
            plt.close(fig)
    return paths


def _load_prediction(folder: Path, case: str) -> np.ndarray | None:
    """A saved prediction (regular files only: a FIFO would hang the read); a damaged one is a
    ``BenchError`` naming it."""
    predictions = RunFiles(folder).predictions
    npy, nii = predictions / f"{case}.npy", predictions / f"{case}.nii.gz"
    for path in (npy, nii):
        problem = not_regular(path)
        if problem == "missing":
            continue
        if problem:
            raise BenchError(f"{path}: is {problem}; refusing to read it")
        try:
            if path == npy:
                array = np.load(path, allow_pickle=False)
            else:
                from sslbench.io.nifti import load_volume

                array = load_volume(path, dtype=np.uint8)[0]
        except (OSError, ValueError, EOFError) as exc:
            raise BenchError(f"{path}: unreadable prediction ({type(exc).__name__}: {str(exc)[:200]})") from None
        if array.ndim != 3 or not np.issubdtype(array.dtype, np.integer):
            raise BenchError(f"{path}: not a label volume (shape {array.shape}, {array.dtype})")
        return array
    return None


def saved_prediction(folder: Path, case: str, shape: tuple[int, ...], who: str) -> np.ndarray:
    """The prediction of ``case`` the run in ``folder`` saved, read as ``_load_prediction`` reads it,
    checked against the case's prepared ``shape``; a ``BenchError`` naming it (``who``: the run as a
    reader knows it) when it is gone or of another shape. ``bench plot qualitative`` and the report's
    worst-case gallery read predictions through it."""
    pred = _load_prediction(folder, case)
    where = RunFiles(folder).predictions
    if pred is None:
        raise BenchError(f"{where}: {who}'s prediction of {case} is gone")
    if pred.shape != tuple(shape):
        raise BenchError(f"{where}: {who}'s prediction of {case} has shape {pred.shape}, the case {tuple(shape)}")
    return pred


def _saved_cases(folder: Path) -> set[str]:
    return {p.name.split(".")[0] for p in RunFiles(folder).predictions.iterdir()}


def _few(names: Sequence[str], most: int = 8) -> str:
    names = sorted(names)
    return ", ".join(names[:most]) + (" ..." if len(names) > most else "") if names else "none"


def plot_qualitative(root: Path, out: Path, dataset: str, profile: str | None = None, ratio: float | None = None,
                     seed: int = 0, n_slices: int = 3, cache: Path | None = None, case: str | None = None,
                     slices: Sequence[int] | None = None, *, methods: Sequence[str] | None = None,
                     name_all: bool = False) -> list[Path]:
    """Image, ground truth and each method's prediction on the same slices of one case (Figure 3
    style), with a legend of the classes; ``case`` and ``slices`` pick them (default: the first case
    every shown run saved, its slices with the most foreground). A column is a run (one method and
    tag at one ratio); its label names the ratio whenever the columns' ratios differ."""
    plt, _ = _pyplot()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from sslbench.cache import prepare

    df = select_runs(root, dataset, profile, methods)
    if seed not in set(df.seed):
        raise BenchError(f"--seed {seed}: no finished runs of {dataset} with it (seeds with runs: "
                         f"{', '.join(str(s) for s in sorted(set(df.seed)))})")
    df = df[df.seed == seed]
    if ratio is not None:
        df = _at_ratio(df, ratio)
    keys = sorted(set(df.profile_key))
    if len(keys) > 1:
        raise BenchError(f"{dataset}: runs of {len(keys)} profiles or schedules ({_key_listing(df)}); "
                         "pick one with --profile")
    df = df.assign(name=[variant_name(n, t) for n, t in zip(df.paper_name, df.tag)])
    df = df.iloc[sorted(range(len(df)), key=lambda i: (paper_order(df.name.iloc[i]), df.ratio.iloc[i]))]
    has = [RunFiles(Path(d)).predictions.is_dir() for d in df.dir]
    shown, lacking = df[has], df[[not h for h in has]]
    if shown.empty:
        raise BenchError(f"{root}: no saved predictions for {dataset}; run `bench run --save-predictions` first")
    several = shown.ratio.nunique() > 1
    labels = [n + (f" {r:g} %" if several else "") for n, r in zip(shown.name, shown.ratio)]
    if not lacking.empty:
        log.warning("not shown, no saved predictions (`bench predict RUN_DIR` writes them): "
                    + ", ".join(f"{n} {r:g} %" for n, r in zip(lacking.name, lacking.ratio)))
    saved = {label: _saved_cases(Path(d)) for label, d in zip(labels, shown.dir)}
    common = set.intersection(*saved.values())
    if case is None:
        if not common:
            raise BenchError("the runs' saved predictions share no case ("
                             + "; ".join(f"{k}: {_few(list(v), 3)}" for k, v in saved.items())
                             + "); narrow the runs with --methods or --ratio")
        case = min(common)
    elif case not in common:
        missing = [k for k, v in saved.items() if case not in v]
        if len(missing) == len(saved):
            raise BenchError(f"--case {case}: no saved prediction of it (saved: {_few(list(set.union(*saved.values())))})")
        raise BenchError(f"--case {case}: not among the saved predictions of {', '.join(missing)} (saved by every "
                         f"run shown: {_few(list(common))}); narrow the runs with --methods or --ratio")
    ds = prepare(dataset, cache_root=cache)
    image, label = (np.asarray(a) for a in ds.volume(case))
    if slices is None:
        fg = (label > 0).reshape(label.shape[0], -1).sum(1)
        slices = sorted(np.argsort(fg)[::-1][:n_slices].tolist())
    bad = [z for z in slices if not 0 <= z < image.shape[0]]
    if bad:
        raise BenchError(f"--slices {bad[0]}: {case} has slices 0..{image.shape[0] - 1}")
    columns: list[tuple[str, np.ndarray | None]] = [("Image", None), ("Ground truth", label)]
    for name, folder in zip(labels, shown.dir):
        columns.append((name, saved_prediction(Path(folder), case, label.shape, name)))
    colors = ListedColormap(["none", *CLASS_COLORS])
    fig, axes = plt.subplots(len(slices), len(columns), squeeze=False,
                             figsize=(0.9 * len(columns) + 0.2, 0.9 * len(slices) + 0.6))
    for i, z in enumerate(slices):
        for j, (title, lab) in enumerate(columns):
            ax = axes[i][j]
            ax.imshow(image[z], cmap="gray")
            if lab is not None:
                ax.imshow(np.ma.masked_equal(lab[z], 0), cmap=colors, vmin=0, vmax=7, alpha=0.6,
                          interpolation="nearest")
            ax.set_axis_off()
            if i == 0:
                ax.set_title(title, fontsize=6)
    legend = [Patch(color=CLASS_COLORS[(k - 1) % len(CLASS_COLORS)], label=name) for k, name in enumerate(ds.classes) if k]
    fig.legend(handles=legend, loc="lower center", ncol=min(len(legend), 7), fontsize=6, frameon=False)
    schedule = shown.profile_text.iloc[0]
    at = "" if several else f", {shown.ratio.iloc[0]:g} % labeled"
    _suptitle(fig, f"{dataset} {case}, slices {', '.join(map(str, slices))} ({schedule}, seed {seed}{at})", 7)
    base = figure_base(out)
    if name_all:
        base = base.with_name(f"{base.name}-{dataset}-{keys[0]}-{case}-seed{seed}"
                              + (f"-{ratio:g}pct" if ratio is not None else ""))
    caption = _caption(f"figure: case {case}, slices {', '.join(map(str, slices))}: the image, its ground truth and "
                       f"each run's saved prediction (seed {seed}; one run per column)",
                       [*(f"column {k}: {d}" for k, d in zip(labels, shown.dir)), *_protocol(shown)])
    paths = _save(fig, base, caption)
    plt.close(fig)
    return paths


def _param_lines(runs: pd.DataFrame, key: str) -> list[str]:
    """A line per method and its other ``--set`` values: runs that differ only in ``key`` (a sweep,
    whatever its tags) share a line; where one point would still join runs of different tags, those
    lines split by tag, so a point only ever averages seeds."""
    def others(overrides: str) -> str:
        items = [o for o in str(overrides).split("; ") if o and o.split("=", 1)[0].strip() != key
                 and not o.startswith(("train.", "data."))]   # the schedule's values: the profile key's
        return "; ".join(items)

    rest = [others(o) for o in runs.overrides] if "overrides" in runs else [""] * len(runs)
    base = [f"{n} ({o})" if o else n for n, o in zip(runs.paper_name, rest)]
    probe = runs.assign(line=base)
    mixed = {line for (line, _, _), n in probe.groupby(["line", "ratio", "value"]).tag.nunique().items() if n > 1}
    return [(variant_name(n, t) + (f" ({o})" if o else "")) if line in mixed else line
            for line, n, t, o in zip(base, runs.paper_name, runs.tag, rest)]


def plot_param(root: Path, out: Path, key: str, dataset: str | None = None, profile: str | None = None,
               methods: Sequence[str] | None = None, *, ratio: float | None = None, checkpoint: str = "best",
               name_all: bool = False) -> list[Path]:
    """Dice against the value of ``key`` (``section.name`` of the resolved config) across runs, one
    figure per dataset and profile key, a panel per label ratio, a line per method and its other
    settings; a point is the mean ± sd over seeds of one configuration. A (dataset, profile key) whose
    runs do not vary ``key`` is skipped with a warning; none varying it is an error."""
    plt, sns = _pyplot()
    if "." not in key:
        raise BenchError(f"--param {key}: give section.key, e.g. method.consistency")
    section, name = key.split(".", 1)
    records = select_runs(root, dataset, profile, methods, checkpoint)
    if ratio is not None:
        records = _at_ratio(records, ratio)
    paths = []
    for df, path, title in _groups(records, figure_base(out), name_all):
        values = []
        for _, rec in df.iterrows():
            cfg = RunFiles(Path(rec.dir)).read_if_any(RunFiles.CONFIG)  # None when missing or damaged
            table = cfg.get(section) if isinstance(cfg, dict) else None
            value = table.get(name) if isinstance(table, dict) else None
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            values.append(float(value) if ok else None)
        df = df.assign(value=values).dropna(subset=["value"])
        if df.empty or df.value.nunique() < 2:
            log.warning(f"--param {key}: skipping {title}: its runs do not vary it")
            continue
        df = df.assign(line=_param_lines(df, key))
        ratios = sorted(df.ratio.unique())
        order = sorted(df.line.unique(), key=paper_order)
        palette = dict(zip(order, sns.color_palette(n_colors=len(order))))
        fig, axes = plt.subplots(1, len(ratios), squeeze=False, sharex=True, sharey=True,
                                 figsize=(max(COLUMN_WIDTH_IN, 0.6 + 2.3 * len(ratios)), 2.4))
        for ax, r in zip(axes[0], ratios):
            sns.lineplot(data=df[df.ratio == r], x="value", y="dsc", hue="line", hue_order=order, palette=palette,
                         marker="o", errorbar="sd", ax=ax, legend=ax is axes[0][-1])
            ax.set_xlabel(key)
            ax.set_ylabel("DSC [%]")
            ax.set_title(f"{r:g} % labeled", fontsize=7)
        if axes[0][-1].get_legend() is not None:
            axes[0][-1].legend(title=None, fontsize=6, frameon=False, bbox_to_anchor=(1.02, 1), loc="upper left")
        _suptitle(fig, f"{title}: mean ± sd over seeds", y=1.04)
        tags = ", ".join(sorted({t for t in df.tag if t})) or "none"
        caption = _caption(f"figure: DSC against {key}, a panel per label ratio, a line per method and its other "
                           f"--set values (runs that differ only in {key} share a line, whatever their tags: {tags}); "
                           "each point one configuration at one ratio, mean ± sd over its seeds",
                           [_per_point(df, ["line", "ratio", "value"]), *_protocol(df)])
        paths += _save(fig, path, caption)
        plt.close(fig)
    if not paths:
        where = ", ".join(f"{d}, {t}" for d, t in sorted(set(zip(records.dataset, records.profile_text))))
        raise BenchError(f"--param {key}: the runs do not vary it in any dataset and schedule ({where}); sweep it "
                         f"with --set {key}=... --tag NAME")
    return paths


def _stage_lengths(folder: Path) -> dict[str, int]:
    """The run's stages and their lengths in order, from its record (``stage_iterations``); {} when
    the record does not say or says something that is not a length."""
    record = RunFiles(folder).read_if_any(RunFiles.RECORD)
    stages = record.get("stage_iterations") if isinstance(record, dict) else None
    if not isinstance(stages, dict):
        return {}
    try:
        return {str(k): integer(v, "stage_iterations", 0, MAX_ITERATIONS) for k, v in stages.items()}
    except FieldError:
        return {}


def curve_frame(df: pd.DataFrame, keys: Sequence[str] | None = DEFAULT_KEYS) -> pd.DataFrame:
    """Training logs of the runs in ``df``, long: name, seed, stage, stage_start (the global step the
    stage began at), step (the global step: iterations restart with each stage, so a later stage's are
    offset by the lengths of the stages before it, as the run's record states them, else by where the
    earlier stages' logs ended), what (the logged key) and value (val_dice in %). ``keys``: the logged
    keys to keep; None keeps every numeric one."""
    rows = []
    for _, rec in df.iterrows():
        folder = Path(rec.dir)
        items = []
        for item in RunFiles(folder).read_log():
            try:  # a foreign line: an iteration of 10^400 would overflow the float axis
                it = integer(item.get("iteration"), "iteration", 0, MAX_ITERATIONS)
            except FieldError:
                continue
            if isinstance(item.get("stage"), str):
                items.append((item["stage"], it, item))
        lengths = _stage_lengths(folder)
        offset: dict[str, int] = {}
        if lengths and {stage for stage, _, _ in items} <= set(lengths):
            total = 0
            for stage, length in lengths.items():
                offset[stage], total = total, total + length
        stage_end = 0
        for stage, it, item in items:
            if stage not in offset:
                offset[stage] = stage_end
            stage_end = max(stage_end, offset[stage] + it)
            step = offset[stage] + it
            wanted = keys if keys is not None else [k for k in item if k not in ("stage", "iteration")
                                                    and isinstance(k, str) and LOG_KEY.fullmatch(k)]
            for key in wanted:
                try:  # a foreign line's value: a string, a bool, an integer beyond any float
                    value = number(item.get(key), key, finite=False, nan=True)
                except FieldError:
                    continue
                rows.append({"name": rec["name"], "seed": rec.seed, "stage": stage, "stage_start": offset[stage],
                             "step": step, "what": key, "value": (100.0 if key == "val_dice" else 1.0) * value})
    return pd.DataFrame(rows, columns=["name", "seed", "stage", "stage_start", "step", "what", "value"])


def stage_starts(long: pd.DataFrame) -> dict[str, list[tuple[int, str]]]:
    """Per name, the global steps where a later stage begins, with that stage's name: the boundaries
    a curves figure marks."""
    later = long[long.stage_start > 0]
    starts: dict[str, set[tuple[int, str]]] = {}
    for name, step, stage in zip(later.name, later.stage_start, later.stage):
        starts.setdefault(name, set()).add((int(step), str(stage)))
    return {name: sorted(s) for name, s in starts.items()}


def plot_curves(root: Path, out: Path, dataset: str | None = None, profile: str | None = None,
                methods: Sequence[str] | None = None, ratio: float | None = None,
                frame: pd.DataFrame | None = None, *, keys: Sequence[str] | None = None,
                name_all: bool = False) -> list[Path]:
    """Logged training values against the global step, per method and tag (mean ± sd over seeds),
    one figure per dataset, profile key and ratio, a panel per key (``keys``; default training loss
    and validation Dice, a key not in the logs is an error listing the logged ones), dashed lines where
    a later stage begins, labelled with its name; each key's unit in the caption; from
    ``train_log.jsonl`` (TensorBoard not needed)."""
    plt, sns = _pyplot()
    wanted = list(dict.fromkeys(keys)) if keys else list(DEFAULT_KEYS)
    records = frame if frame is not None else select_runs(root, dataset, profile, methods)
    if ratio is not None:
        records = _at_ratio(records, ratio)
    panels, missing, logged = [], [], set()
    for df, path, title in _groups(records, figure_base(out), name_all):
        ratios = [ratio] if ratio is not None else sorted(df.loc[~df.all_labels, "ratio"].unique()) or [100.0]
        for r in ratios:
            runs = df[(df.ratio == r) | df.all_labels]
            long = curve_frame(runs, None)
            if long.empty:
                missing.append(f"{title}: the runs at {r:g} % labels have no training log")
                continue
            logged |= set(long.what)
            panels.append((long, runs, _ratio_path(path, r, len(ratios) > 1, name_all), title, r))
    if not panels:
        raise BenchError("; ".join(missing))
    for text in missing:
        log.warning(f"skipping {text}")
    unknown = [k for k in wanted if k not in logged] if keys else []
    if unknown:
        raise BenchError(f"--keys {unknown[0]}: not in the training logs of these runs (logged: "
                         f"{', '.join(sorted(logged))})")
    paths = []
    for long, runs, target, title, r in panels:
        order = sorted(long.name.unique(), key=paper_order)
        palette = dict(zip(order, sns.color_palette(n_colors=len(order))))
        boundaries = stage_starts(long)
        ncols = min(len(wanted), 3)
        nrows = math.ceil(len(wanted) / ncols)
        fig, axes = plt.subplots(nrows, ncols, squeeze=False, gridspec_kw={"wspace": 0.45, "hspace": 0.5},
                                 figsize=(COLUMN_WIDTH_IN * max(ncols, 1.3), 2.4 * nrows))
        flat = list(axes.ravel())
        with_data = [k for k in wanted if (long.what == k).any()]
        for i, (ax, key) in enumerate(zip(flat, wanted)):
            part = long[long.what == key]
            if part.empty:
                ax.text(0.5, 0.5, "not logged by these runs", transform=ax.transAxes, ha="center", fontsize=6)
            else:
                sns.lineplot(data=part, x="step", y="value", hue="name", hue_order=order, palette=palette,
                             errorbar="sd", ax=ax, legend=key == with_data[-1],
                             marker="o" if key.startswith("val") else None, markersize=3)
            for name, starts in boundaries.items():
                for step, stage in starts:
                    ax.axvline(step, color=palette[name], linestyle="--", linewidth=0.7, alpha=0.8)
                    if i == 0:
                        ax.text(step, 0.98, f" {stage}", transform=ax.get_xaxis_transform(), rotation=90,
                                va="top", fontsize=5, color=palette[name])
            ax.set_xlabel("global step (stages in order)")
            ax.set_ylabel(KEY_LABELS.get(key, key))
        for ax in flat[len(wanted):]:
            ax.set_visible(False)
        legend_ax = flat[wanted.index(with_data[-1])] if with_data else None
        if legend_ax is not None and legend_ax.get_legend() is not None:
            legend_ax.legend(title=None, fontsize=6, frameon=False, bbox_to_anchor=(1.02, 1), loc="upper left")
        _suptitle(fig, f"{title}, {r:g} % labeled: mean ± sd over seeds")
        marks = "; ".join(f"{n}: " + ", ".join(f"{s} from iteration {x}" for x, s in b) for n, b in boundaries.items())
        caption = _caption(f"figure: {', '.join(wanted)} against the global step at {r:g} % labels, a line per "
                           "method and tag, mean ± sd over seeds at each logged iteration; a later stage's "
                           "iterations follow the earlier stage's",
                           ["units: " + "; ".join(_key_text(k) for k in wanted),
                            f"stage boundaries (dashed): {marks or 'none (single-stage runs)'}",
                            _per_point(runs, ["name"], "seeds per line"),
                            *_protocol(runs, evaluated=False)])
        paths += _save(fig, target, caption)
        plt.close(fig)
    return paths


def _case_dice(folder: Path, metrics_file: str) -> dict[str, float]:
    """case -> Dice [%] averaged over the foreground classes; {} (with a warning naming the file) when
    the file is missing or damaged."""
    try:
        data = RunFiles(folder).read_metrics(metrics_file)
    except BenchError as exc:
        log.warning(f"skipping {exc}")
        return {}
    return {c["case"]: 100.0 * float(np.mean([m["dice"] for m in c["metrics"].values()]))
            for c in data["metric_per_case"]}


def plot_paired(root: Path, out: Path, methods: Sequence[str], dataset: str | None = None,
                profile: str | None = None, ratio: float | None = None, checkpoint: str = "best", *,
                name_all: bool = False) -> list[Path]:
    """Two methods' Dice per evaluated case against each other (x: the first, y: the second), a point
    per case and seed, runs paired by seed and case, the diagonal drawn; one figure per dataset,
    profile key and ratio. ``methods``: two names, ``method`` its untagged runs, ``method@tag`` a
    tagged variant; ``checkpoint`` "last" reads metrics-last.json."""
    from sslbench.report.significance import wilcoxon_p

    plt, sns = _pyplot()
    specs = [(m, t or "") for m, t in (_variant(spec, bare_is_untagged=True) for spec in methods)]
    if len(specs) != 2 or specs[0] == specs[1]:
        raise BenchError("--methods: paired takes two different methods, e.g. --methods unet-l,mt "
                         "(method@tag for a tagged variant)")
    records = select_runs(root, dataset, profile, methods, checkpoint, bare_is_untagged=True)
    names = [variant_name(records[records.method == m].paper_name.iloc[0], t) for m, t in specs]
    side = np.where((records.method == specs[0][0]) & (records.tag == specs[0][1]), 0, 1)
    records = records.assign(side=side)
    if ratio is not None:
        records = _at_ratio(records, ratio)
    metrics_file = RunFiles.METRICS if checkpoint == "best" else RunFiles.METRICS_LAST
    paths, skipped = [], []
    for df, path, title in _groups(records, figure_base(out), name_all):
        a, b = df[df.side == 0], df[df.side == 1]
        if a.empty or b.empty:
            skipped.append(f"{title}: no runs of {names[0] if a.empty else names[1]}")
            continue
        ratios = [ratio] if ratio is not None else sorted(df.loc[~df.all_labels, "ratio"].unique()) or [100.0]
        for r in ratios:
            ra = a if a.all_labels.all() else a[a.ratio == r]
            rb = b if b.all_labels.all() else b[b.ratio == r]
            if ra.empty or rb.empty:
                skipped.append(f"{title}: no runs of {names[0] if ra.empty else names[1]} at {r:g} %")
                continue
            seeds_a, seeds_b = dict(zip(ra.seed, ra.dir)), dict(zip(rb.seed, rb.dir))
            rows = []
            for seed in sorted(set(seeds_a) & set(seeds_b)):
                da, db = _case_dice(Path(seeds_a[seed]), metrics_file), _case_dice(Path(seeds_b[seed]), metrics_file)
                rows += [{"seed": str(seed), "case": c, "a": da[c], "b": db[c]} for c in sorted(set(da) & set(db))]
            pairs = pd.DataFrame(rows, columns=["seed", "case", "a", "b"]).dropna()
            if pairs.empty:
                skipped.append(f"{title}: no seed and case evaluated by both at {r:g} % (seeds: {names[0]} "
                               f"{sorted(seeds_a)}, {names[1]} {sorted(seeds_b)})")
                continue
            fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, COLUMN_WIDTH_IN * 0.9))
            sns.scatterplot(data=pairs, x="a", y="b", hue="seed", ax=ax, s=14, linewidth=0)
            lo, hi = float(pairs[["a", "b"]].min().min()), float(pairs[["a", "b"]].max().max())
            pad = max(1.0, 0.05 * (hi - lo))
            ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], linestyle="--", color="gray", linewidth=0.8)
            ax.set_xlim(lo - pad, hi + pad)
            ax.set_ylim(lo - pad, hi + pad)
            ax.set_aspect("equal")
            ax.set_xlabel(f"{names[0]}: DSC [%] per case")
            ax.set_ylabel(f"{names[1]}: DSC [%] per case")
            ax.legend(title="seed", fontsize=6, title_fontsize=6, frameon=False)
            ax.set_title(_wrapped(fig, f"{title}, {r:g} % labeled", 8), fontsize=8)
            diff = pairs.b - pairs.a
            unpaired = sorted(set(seeds_a) ^ set(seeds_b))
            caption = _caption(
                f"figure: {names[1]} (y) against {names[0]} (x), DSC per evaluated case (class mean), a point per "
                f"case and seed, runs paired by seed and case, at {r:g} % labels; above the diagonal {names[1]} "
                "is better",
                [f"pairs: {len(pairs)} ({pairs.case.nunique()} cases x seeds {', '.join(sorted(set(pairs.seed)))})"
                 + (f"; seeds without a partner, left out: {', '.join(map(str, unpaired))}" if unpaired else ""),
                 (f"{names[1]} better on {int((diff > 0).sum())} of {len(pairs)} pairs, mean difference "
                 f"{diff.mean():+.2f} points; paired Wilcoxon signed-rank p = "
                 f"{wilcoxon_p(pairs.b.to_numpy(), pairs.a.to_numpy()):.3g} (two-sided; 1 with under 5 pairs)"),
                 *_protocol(pd.concat([ra, rb]))])
            target = _ratio_path(path, r, len(ratios) > 1, name_all)
            paths += _save(fig, target, caption)
            plt.close(fig)
    if not paths:
        raise BenchError("nothing to pair: " + "; ".join(skipped))
    for text in skipped:
        log.warning(f"skipping {text}")
    return paths
