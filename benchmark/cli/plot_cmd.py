"""``bench plot``: figures from the run records (one module per kind of work: see ``sslbench.cli``)."""
from __future__ import annotations

from pathlib import Path

import click

from sslbench.base.errors import BenchError
from sslbench.cli.app import csv_list, default_results, load_plugins, main, plugin_option, results_option, user_errors
from sslbench.cli.views import code_warning


@main.command()
@click.argument("kind", type=click.Choice(["ratio", "classes", "qualitative", "param", "curves"]))
@results_option
@click.option("--dataset", default=None, help="Only this dataset (required for qualitative).")
@click.option("--profile", default=None, help="Only this profile (or profile key, e.g. quick+1a2b3c).")
@click.option("--ratio", type=float, default=None, help="Label ratio (classes, qualitative, curves; default: each).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed whose predictions to show (qualitative).")
@click.option("--case", default=None, help="Case to show (qualitative; default: the first with predictions).")
@click.option("--slices", default=None, help="Comma-separated slice indices to show (qualitative).")
@click.option("--param", "param_key", default=None, help="Config key varied across runs (param), e.g. method.consistency.")
@click.option("--methods", default=None, help="Only these methods (param, curves).")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True,
              help="The selected or the last weights' metrics (ratio, classes).")
@click.option("--cache", type=click.Path(path_type=Path), default=None, help="Prepared-data cache (qualitative).")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Output path without extension, or an existing folder (default: figures/<kind>); writes .png "
                   "and .pdf, one pair per dataset and profile when the records hold several.")
@plugin_option
@user_errors
def plot(kind: str, results: Path | None, dataset: str | None, profile: str | None, ratio: float | None,
         seed: int, case: str | None, slices: str | None, param_key: str | None, methods: str | None,
         checkpoint: str, cache: Path | None, output: Path | None, plugins: tuple[str, ...]) -> None:
    """Figures from the run records (PNG and PDF at paper column width). A figure never mixes
    datasets, profiles, tags or distance units: several in the records give a figure each.

    \b
    ratio        Dice and ASD against the label ratio per method and tag (spread over seeds)
    classes      per-class Dice box plots over evaluated volumes, one figure per ratio
    qualitative  image, ground truth and each method's prediction (runs with --save-predictions)
    param        Dice against one config key across runs (runs tagged with --tag, e.g. a sweep)
    curves       training loss and validation Dice against iterations (from train_log.jsonl)
    """
    from sslbench.report import plots

    load_plugins(plugins)
    root = results or default_results()
    out = output or Path("figures") / (kind if not dataset else f"{kind}-{dataset}")
    chosen = csv_list(methods, "methods") if methods else None
    if kind == "ratio":
        paths = plots.plot_ratio(root, out, dataset, profile, checkpoint)
    elif kind == "classes":
        paths = plots.plot_classes(root, out, dataset, profile, ratio, checkpoint)
    elif kind == "qualitative":
        if not dataset:
            raise BenchError("bench plot qualitative needs --dataset")
        picked = csv_list(slices, "slices", int) if slices else None
        paths = plots.plot_qualitative(root, out, dataset, profile, ratio, seed, cache=cache, case=case, slices=picked)
    elif kind == "curves":
        paths = plots.plot_curves(root, out, dataset, profile, chosen, ratio)
    else:
        if not param_key:
            raise BenchError("bench plot param needs --param section.key")
        paths = plots.plot_param(root, out, param_key, dataset, profile, chosen)
    for path in paths:
        click.echo(str(path))
    code_warning(root)
