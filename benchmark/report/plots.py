"""`bench plot`: figures from the run records (seaborn / matplotlib, PNG and PDF, paper column width).

* ``ratio``: Dice (and ASD) against the label ratio, one line per method, spread over seeds;
* ``classes``: per-class Dice box plots over test volumes (and seeds) for one label ratio;
* ``qualitative``: a grid like the paper's Figure 3: image, ground truth and each method's
  prediction on the same slices (needs runs made with ``--save-predictions``);
* ``param``: Dice against the value of one configuration key across runs (hyper-parameter curves).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sslbench.base.atomic import atomic_path
from sslbench.base.errors import BenchError
from sslbench.base.run_files import RunFiles
from sslbench.report.tables import paper_order, select_records

COLUMN_WIDTH_IN = 3.5  # one column of a two-column paper
FORMATS = ("png", "pdf")


def _pyplot():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid", font_scale=0.9)
    return plt, sns


def _save(fig, out: Path) -> list[Path]:  # noqa: ANN001
    written = []
    for ext in FORMATS:
        path = out.with_suffix(f".{ext}")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, dpi=300, bbox_inches="tight")
        written.append(path)
    return written


def plot_ratio(root: Path, out: Path, dataset: str | None = None, profile: str | None = None) -> list[Path]:
    plt, sns = _pyplot()
    df = select_records(root, dataset, profile)
    ratios = sorted(df.loc[~df.all_labels, "ratio"].unique())
    rows = []
    for _, rec in df.iterrows():  # UNet-F (every label) is drawn across all ratios as a reference
        for r in (ratios if rec.all_labels else [rec.ratio]):
            rows.append({**rec.to_dict(), "ratio": r})
    long = pd.DataFrame(rows)
    order = sorted(long.paper_name.unique(), key=paper_order)
    fig, axes = plt.subplots(1, 2, figsize=(2 * COLUMN_WIDTH_IN, 2.4))
    for ax, (key, label) in zip(axes, (("dsc", "DSC [%]"), ("asd", "ASD"))):
        sns.lineplot(data=long, x="ratio", y=key, hue="paper_name", hue_order=order, marker="o",
                     errorbar="sd", ax=ax, legend=ax is axes[-1])
        ax.set_xlabel("labeled volumes [%]")
        ax.set_ylabel(label)
        ax.set_xticks(ratios)
    axes[-1].legend(title=None, fontsize=6, frameon=False, bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.suptitle(f"{', '.join(long.dataset.unique())}: mean ± sd over seeds", fontsize=8)
    paths = _save(fig, out)
    plt.close(fig)
    return paths


def plot_classes(root: Path, out: Path, dataset: str | None = None, profile: str | None = None,
                 ratio: float | None = None) -> list[Path]:
    plt, sns = _pyplot()
    df = select_records(root, dataset, profile)
    if ratio is None:
        ratio = float(sorted(df.loc[~df.all_labels, "ratio"].unique() or df.ratio.unique())[0])
    df = df[(df.ratio == ratio) | df.all_labels]
    rows = []
    for _, rec in df.iterrows():
        metrics = RunFiles(Path(rec.dir)).read(RunFiles.METRICS)
        for case in metrics["metric_per_case"]:
            for cls, m in case["metrics"].items():
                rows.append({"method": rec.paper_name, "class": cls, "dsc": 100 * m["dice"]})
    long = pd.DataFrame(rows)
    order = sorted(long.method.unique(), key=paper_order)
    fig, ax = plt.subplots(figsize=(2 * COLUMN_WIDTH_IN, 2.6))
    sns.boxplot(data=long, x="class", y="dsc", hue="method", hue_order=order, ax=ax, fliersize=1, linewidth=0.6)
    ax.set_ylabel("DSC [%] per volume")
    ax.set_xlabel(None)
    ax.legend(fontsize=6, frameon=False, bbox_to_anchor=(1.02, 1), loc="upper left")
    ax.set_title(f"{', '.join(df.dataset.unique())}, {ratio:g} % labeled", fontsize=8)
    paths = _save(fig, out)
    plt.close(fig)
    return paths


def _load_prediction(folder: Path, case: str) -> np.ndarray | None:
    predictions = RunFiles(folder).predictions
    npy, nii = predictions / f"{case}.npy", predictions / f"{case}.nii.gz"
    if npy.exists():
        return np.load(npy)
    if nii.exists():
        from sslbench.io.nifti import load_volume

        return load_volume(nii, dtype=np.uint8)[0]
    return None


def plot_qualitative(root: Path, out: Path, dataset: str, profile: str | None = None, ratio: float | None = None,
                     seed: int = 0, n_slices: int = 3, cache: Path | None = None) -> list[Path]:
    """Image, ground truth and each method's prediction on the same slices (Figure 3 style)."""
    plt, _ = _pyplot()
    from matplotlib.colors import ListedColormap

    from sslbench.cache import prepare

    df = select_records(root, dataset, profile)
    df = df[df.seed == seed]
    if ratio is not None:
        df = df[(df.ratio == ratio) | df.all_labels]
    runs = [(rec.paper_name, Path(rec.dir)) for _, rec in df.iterrows()]
    runs.sort(key=lambda t: paper_order(t[0]))
    ds = prepare(dataset, cache_root=cache)
    with_preds = [(n, d) for n, d in runs if RunFiles(d).predictions.is_dir()]
    if not with_preds:
        raise BenchError(f"{root}: no saved predictions for {dataset}; run `bench run --save-predictions` first")
    case = sorted(p.name.split(".")[0] for p in RunFiles(with_preds[0][1]).predictions.iterdir())[0]
    image, label = (np.asarray(a) for a in ds.volume(case))
    fg = (label > 0).reshape(label.shape[0], -1).sum(1)
    slices = sorted(np.argsort(fg)[::-1][:n_slices].tolist())
    columns = [("Image", None), ("Ground truth", label)] + [(n, _load_prediction(d, case)) for n, d in with_preds]
    colors = ListedColormap(["none", "#e41a1c", "#4daf4a", "#377eb8", "#ff7f00", "#984ea3", "#a65628", "#f781bf"])
    fig, axes = plt.subplots(len(slices), len(columns), squeeze=False,
                             figsize=(0.9 * len(columns) + 0.2, 0.9 * len(slices) + 0.3))
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
    fig.suptitle(f"{dataset} {case}", fontsize=7)
    paths = _save(fig, out)
    plt.close(fig)
    return paths


def plot_param(root: Path, out: Path, key: str, dataset: str | None = None, profile: str | None = None,
               methods: Sequence[str] | None = None) -> list[Path]:
    """Dice against the value of ``key`` (``section.name`` of the resolved config) across runs."""
    plt, sns = _pyplot()
    df = select_records(root, dataset, profile, methods)
    if "." not in key:
        raise BenchError(f"--param {key}: give section.key, e.g. method.consistency")
    section, name = key.split(".", 1)
    values = []
    for _, rec in df.iterrows():
        cfg = RunFiles(Path(rec.dir)).read(RunFiles.CONFIG)
        values.append(cfg.get(section, {}).get(name))
    df = df.assign(value=values).dropna(subset=["value"])
    if df.empty or df.value.nunique() < 2:
        raise BenchError(f"--param {key}: the runs do not vary it (sweep it with --set {key}=...)")
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 2.4))
    sns.lineplot(data=df, x="value", y="dsc", hue="paper_name", marker="o", errorbar="sd", ax=ax)
    ax.set_xlabel(key)
    ax.set_ylabel("DSC [%]")
    ax.legend(fontsize=6, frameon=False)
    paths = _save(fig, out)
    plt.close(fig)
    return paths
