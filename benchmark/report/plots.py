"""`bench plot`: figures from the run records (seaborn / matplotlib, PNG and PDF, paper column width).

* ``ratio``: Dice and ASD against the label ratio, one line per method and tag, spread over seeds;
* ``classes``: per-class Dice box plots over evaluated volumes (and seeds) for one label ratio;
* ``qualitative``: a grid like the paper's Figure 3: image, ground truth and each method's
  prediction on the same slices of one case (runs made with ``--save-predictions``), with a class legend;
* ``param``: Dice against the value of one configuration key across runs (hyper-parameter curves);
* ``curves``: training loss and validation Dice against iterations, from each run's training log.

A figure never mixes datasets, profiles (schedules), tags or distance units: records of several
(dataset, profile key) pairs give one figure per pair (``<out>-<dataset>-<profile key>``), and each
tagged variant is a line or box of its own.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sslbench.base.atomic import atomic_path
from sslbench.base.errors import BenchError
from sslbench.base.fields import FieldError, integer, number
from sslbench.base.file_kinds import not_regular
from sslbench.base.records import MAX_ITERATIONS
from sslbench.base.run_files import RunFiles
from sslbench.report.frame import variant_name
from sslbench.report.tables import paper_order, select_records

COLUMN_WIDTH_IN = 3.5  # one column of a two-column paper
FORMATS = ("png", "pdf")
CLASS_COLORS = ["#e41a1c", "#4daf4a", "#377eb8", "#ff7f00", "#984ea3", "#a65628", "#f781bf"]


def _pyplot():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid", font_scale=0.9)
    return plt, sns


def figure_base(out: Path) -> Path:
    """Where a figure goes: ``-o`` names a file without extension; an existing folder gets the figure
    inside it (never a sibling of it)."""
    return out / "figure" if out.is_dir() else out


def _save(fig, out: Path) -> list[Path]:  # noqa: ANN001
    written = []
    for ext in FORMATS:
        path = out.with_name(out.name + f".{ext}")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, dpi=300, bbox_inches="tight")
        written.append(path)
    return written


def _groups(df: pd.DataFrame, out: Path) -> Iterator[tuple[pd.DataFrame, Path, str]]:
    """(records, output path, title) per (dataset, profile key): one figure each, never merged."""
    keys = sorted(df.groupby(["dataset", "profile_key"]).groups)
    for ds, key in keys:
        sub = df[(df.dataset == ds) & (df.profile_key == key)]
        units = set(sub.units)
        if len(units) > 1:
            raise BenchError(f"{ds}, {key}: runs report distances in {' and '.join(sorted(units))}; plot them apart")
        path = out if len(keys) == 1 else out.with_name(f"{out.name}-{ds}-{key}")
        yield sub.assign(name=[variant_name(n, t) for n, t in zip(sub.paper_name, sub.tag)]), path, f"{ds}, {key}"


def plot_ratio(root: Path, out: Path, dataset: str | None = None, profile: str | None = None,
               checkpoint: str = "best", frame: pd.DataFrame | None = None) -> list[Path]:
    """``frame``: these records instead of the ones selected under ``root`` (the HTML report)."""
    plt, sns = _pyplot()
    paths = []
    records = frame if frame is not None else select_records(root, dataset, profile, checkpoint=checkpoint)
    for df, path, title in _groups(records, figure_base(out)):
        ratios = sorted(df.loc[~df.all_labels, "ratio"].unique())
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
        fig.suptitle(f"{title}: mean ± sd over seeds", fontsize=8)
        paths += _save(fig, path)
        plt.close(fig)
    return paths


def plot_classes(root: Path, out: Path, dataset: str | None = None, profile: str | None = None,
                 ratio: float | None = None, checkpoint: str = "best", frame: pd.DataFrame | None = None) -> list[Path]:
    """Per-class Dice box plots, one figure per dataset, profile key and label ratio (every ratio
    when ``ratio`` is None)."""
    plt, sns = _pyplot()
    metrics_file = RunFiles.METRICS if checkpoint == "best" else RunFiles.METRICS_LAST
    paths = []
    records = frame if frame is not None else select_records(root, dataset, profile, checkpoint=checkpoint)
    for df, path, title in _groups(records, figure_base(out)):
        ratios = [ratio] if ratio is not None else sorted(df.loc[~df.all_labels, "ratio"].unique()) or [100.0]
        for r in ratios:
            sub = df[(df.ratio == r) | df.all_labels]
            if sub.empty:
                raise BenchError(f"{title}: no runs at {r:g} % labels")
            rows = []
            for _, rec in sub.iterrows():
                try:
                    metrics = RunFiles(Path(rec.dir)).read_metrics(metrics_file)
                except BenchError as exc:  # one lost file must not hide the other runs
                    logging.getLogger("sslbench").warning(f"skipping {exc}")
                    continue
                for case in metrics["metric_per_case"]:
                    for cls, m in case["metrics"].items():
                        rows.append({"name": rec["name"], "class": cls, "dsc": 100 * m["dice"]})
            if not rows:
                raise BenchError(f"{title}: no run at {r:g} % labels has a readable {metrics_file}")
            long = pd.DataFrame(rows)
            order = sorted(long.name.unique(), key=paper_order)
            fig, ax = plt.subplots(figsize=(2 * COLUMN_WIDTH_IN, 2.6))
            sns.boxplot(data=long, x="class", y="dsc", hue="name", hue_order=order, ax=ax, fliersize=1, linewidth=0.6)
            ax.set_ylabel("DSC [%] per volume")
            ax.set_xlabel(None)
            ax.legend(fontsize=6, frameon=False, bbox_to_anchor=(1.02, 1), loc="upper left")
            ax.set_title(f"{title}, {r:g} % labeled", fontsize=8)
            target = path if len(ratios) == 1 else path.with_name(f"{path.name}-{r:g}pct")
            paths += _save(fig, target)
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


def plot_qualitative(root: Path, out: Path, dataset: str, profile: str | None = None, ratio: float | None = None,
                     seed: int = 0, n_slices: int = 3, cache: Path | None = None, case: str | None = None,
                     slices: Sequence[int] | None = None) -> list[Path]:
    """Image, ground truth and each method's prediction on the same slices of one case (Figure 3
    style), with a legend of the classes; ``case`` and ``slices`` pick them (default: the first case
    with predictions, its slices with the most foreground)."""
    plt, _ = _pyplot()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from sslbench.cache import prepare

    df = select_records(root, dataset, profile)
    df = df[df.seed == seed]
    if ratio is not None:
        df = df[(df.ratio == ratio) | df.all_labels]
    keys = sorted(set(df.profile_key))
    if len(keys) > 1:
        raise BenchError(f"{dataset}: runs of {len(keys)} profiles or schedules ({', '.join(keys)}); pick one with --profile")
    runs = sorted(((variant_name(rec.paper_name, rec.tag), Path(rec.dir)) for _, rec in df.iterrows()),
                  key=lambda t: paper_order(t[0]))
    ds = prepare(dataset, cache_root=cache)
    with_preds = [(n, d) for n, d in runs if RunFiles(d).predictions.is_dir()]
    if not with_preds:
        raise BenchError(f"{root}: no saved predictions for {dataset}; run `bench run --save-predictions` first")
    saved = sorted(p.name.split(".")[0] for p in RunFiles(with_preds[0][1]).predictions.iterdir())
    if case is None:
        case = saved[0]
    elif case not in saved:
        raise BenchError(f"--case {case}: no saved prediction of it (saved: {', '.join(saved[:8])}"
                         f"{' ...' if len(saved) > 8 else ''})")
    image, label = (np.asarray(a) for a in ds.volume(case))
    if slices is None:
        fg = (label > 0).reshape(label.shape[0], -1).sum(1)
        slices = sorted(np.argsort(fg)[::-1][:n_slices].tolist())
    bad = [z for z in slices if not 0 <= z < image.shape[0]]
    if bad:
        raise BenchError(f"--slices {bad[0]}: {case} has slices 0..{image.shape[0] - 1}")
    columns = [("Image", None), ("Ground truth", label)] + [(n, _load_prediction(d, case)) for n, d in with_preds]
    for (name, pred), (_, folder) in zip(columns[2:], with_preds):
        if pred is not None and pred.shape != label.shape:
            raise BenchError(f"{RunFiles(Path(folder)).predictions}: {name}'s prediction of {case} has shape "
                             f"{pred.shape}, the case {label.shape}")
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
    fig.suptitle(f"{dataset} {case}, slices {', '.join(map(str, slices))} ({keys[0] if keys else ''}, seed {seed})",
                 fontsize=7)
    paths = _save(fig, figure_base(out))
    plt.close(fig)
    return paths


def plot_param(root: Path, out: Path, key: str, dataset: str | None = None, profile: str | None = None,
               methods: Sequence[str] | None = None) -> list[Path]:
    """Dice against the value of ``key`` (``section.name`` of the resolved config) across runs, one
    figure per dataset and profile key."""
    plt, sns = _pyplot()
    if "." not in key:
        raise BenchError(f"--param {key}: give section.key, e.g. method.consistency")
    section, name = key.split(".", 1)
    paths = []
    for df, path, title in _groups(select_records(root, dataset, profile, methods), figure_base(out)):
        values = []
        for _, rec in df.iterrows():
            cfg = RunFiles(Path(rec.dir)).read_if_any(RunFiles.CONFIG)  # None when missing or damaged
            table = cfg.get(section) if isinstance(cfg, dict) else None
            value = table.get(name) if isinstance(table, dict) else None
            values.append(value if isinstance(value, (int, float)) and not isinstance(value, bool) else None)
        df = df.assign(value=values).dropna(subset=["value"])
        if df.empty or df.value.nunique() < 2:
            raise BenchError(f"--param {key}: the runs of {title} do not vary it (sweep it with --set {key}=...)")
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 2.4))
        sns.lineplot(data=df, x="value", y="dsc", hue="paper_name", marker="o", errorbar="sd", ax=ax)
        ax.set_xlabel(key)
        ax.set_ylabel("DSC [%]")
        ax.set_title(f"{title}: mean ± sd over seeds", fontsize=8)
        ax.legend(fontsize=6, frameon=False)
        paths += _save(fig, path)
        plt.close(fig)
    return paths


def curve_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Training logs of the runs in ``df``, long: name, seed, stage, step (iterations since the run
    began, stages one after the other), loss or val_dice [%]."""
    rows = []
    for _, rec in df.iterrows():
        offset, stage_end = {}, 0
        for item in RunFiles(Path(rec.dir)).read_log():
            stage = item.get("stage")
            try:  # a foreign line: an iteration of 10^400 would overflow the float axis
                it = integer(item.get("iteration"), "iteration", 0, MAX_ITERATIONS)
            except FieldError:
                continue
            if not isinstance(stage, str):
                continue
            if stage not in offset:
                offset[stage] = stage_end
            stage_end = max(stage_end, offset[stage] + it)
            step = offset[stage] + it
            for what, key, scale in (("loss", "loss", 1.0), ("val_dice", "val_dice", 100.0)):
                try:  # a foreign line's value: a string, a bool, an integer beyond any float
                    value = number(item.get(key), key, finite=False, nan=True)
                except FieldError:
                    continue
                rows.append({"name": rec["name"], "seed": rec.seed, "stage": stage, "step": step, "what": what,
                             "value": scale * value})
    return pd.DataFrame(rows)


def plot_curves(root: Path, out: Path, dataset: str | None = None, profile: str | None = None,
                methods: Sequence[str] | None = None, ratio: float | None = None,
                frame: pd.DataFrame | None = None) -> list[Path]:
    """Training loss and validation Dice against iterations, per method and tag (mean ± sd over seeds),
    one figure per dataset, profile key and ratio; from ``train_log.jsonl`` (TensorBoard not needed)."""
    plt, sns = _pyplot()
    paths = []
    records = frame if frame is not None else select_records(root, dataset, profile, methods)
    for df, path, title in _groups(records, figure_base(out)):
        ratios = [ratio] if ratio is not None else sorted(df.loc[~df.all_labels, "ratio"].unique()) or [100.0]
        for r in ratios:
            long = curve_frame(df[(df.ratio == r) | df.all_labels])
            if long.empty:
                raise BenchError(f"{title}: the runs at {r:g} % labels have no training log")
            order = sorted(long.name.unique(), key=paper_order)
            fig, axes = plt.subplots(1, 2, figsize=(2 * COLUMN_WIDTH_IN, 2.4))
            for ax, (what, label) in zip(axes, (("loss", "training loss"), ("val_dice", "validation DSC [%]"))):
                part = long[long.what == what]
                if not part.empty:
                    sns.lineplot(data=part, x="step", y="value", hue="name", hue_order=order, errorbar="sd", ax=ax,
                                 legend=ax is axes[-1], marker="o" if what == "val_dice" else None, markersize=3)
                ax.set_xlabel("iteration (stages in order)")
                ax.set_ylabel(label)
            if axes[-1].get_legend() is not None:
                axes[-1].legend(title=None, fontsize=6, frameon=False, bbox_to_anchor=(1.02, 1), loc="upper left")
            fig.suptitle(f"{title}, {r:g} % labeled", fontsize=8)
            target = path if len(ratios) == 1 else path.with_name(f"{path.name}-{r:g}pct")
            paths += _save(fig, target)
            plt.close(fig)
    return paths
