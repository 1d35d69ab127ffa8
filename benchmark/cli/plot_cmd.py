"""``bench plot``: figures from the run records (one module per kind of work: see ``sslbench.cli``)."""
from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from sslbench.base.errors import BenchError
from sslbench.cli.app import csv_list, default_results, load_plugins, main, not_in_run_folder, plugin_option, \
    results_option, user_errors

KINDS = ("ratio", "classes", "qualitative", "param", "curves", "paired")
# the options each kind acts on, beyond --results, --dataset, --profile, -o and --plugin (which all do);
# any other one given is refused, so that no option is silently ignored
USES = {
    "ratio": ("methods", "checkpoint"),
    "classes": ("ratio", "methods", "checkpoint"),
    "qualitative": ("ratio", "methods", "seed", "case", "slices", "cache"),
    "param": ("param_key", "ratio", "methods", "checkpoint"),
    "curves": ("ratio", "methods", "keys"),
    "paired": ("ratio", "methods", "checkpoint"),
}
FLAGS = {"ratio": "--ratio", "methods": "--methods", "checkpoint": "--checkpoint", "seed": "--seed", "case": "--case",
         "slices": "--slices", "cache": "--cache", "param_key": "--param", "keys": "--key/--keys"}
GIVEN = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT, ParameterSource.PROMPT)


def refuse_unused(ctx: click.Context, kind: str) -> None:
    """One error line naming every option the user gave that ``kind`` does not act on, and the kinds
    that do (click fills defaults, so "given" is the value's source, not its value)."""
    unused = [f"{flag} (for {', '.join(k for k in KINDS if name in USES[k])})" for name, flag in FLAGS.items()
              if name not in USES[kind] and ctx.get_parameter_source(name) in GIVEN]
    if unused:
        raise BenchError(f"bench plot {kind} does not use {'; '.join(unused)}")


@main.command()
@click.argument("kind", required=False, metavar="KIND", type=click.Choice(KINDS))
@results_option
@click.option("--dataset", default=None, help="Only this dataset (required for qualitative).")
@click.option("--profile", default=None,
              help="Only this profile (or profile key, e.g. quick+1a2b3c, or its text, e.g. 'quick (train.iterations=40)').")
@click.option("--ratio", type=float, default=None,
              help="Only this label ratio (classes, qualitative, param, curves, paired; default: each).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed whose predictions to show (qualitative).")
@click.option("--case", default=None, help="Case to show (qualitative; default: the first every shown run saved).")
@click.option("--slices", default=None, help="Comma-separated slice indices to show (qualitative).")
@click.option("--param", "param_key", default=None, help="Config key varied across runs (param), e.g. method.consistency.")
@click.option("--methods", default=None,
              help="Only these methods, comma-separated; method@tag for one tagged variant (every kind; paired: "
                   "exactly two, a bare name meaning its untagged runs).")
@click.option("--key", "--keys", "keys", multiple=True,
              help="Logged key to draw, a panel each; repeat it or give a comma list (curves; default: "
                   "loss,val_dice), e.g. --key loss_sup --key lr or --keys loss,cons_weight,step_s,val_dice.")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True,
              help="The selected or the last weights' metrics (ratio, classes, param, paired).")
@click.option("--cache", type=click.Path(path_type=Path), default=None, help="Prepared-data cache (qualitative).")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Output path without extension, or an existing folder (default: figures/<kind>-<dataset>-<profile "
                   "key>); writes .png, .pdf and a .txt caption, one set per dataset and profile (and per ratio "
                   "where the kind draws one) when the records hold several.")
@plugin_option
@click.pass_context
@user_errors
def plot(ctx: click.Context, kind: str | None, results: Path | None, dataset: str | None, profile: str | None,
         ratio: float | None, seed: int, case: str | None, slices: str | None, param_key: str | None,
         methods: str | None, keys: tuple[str, ...], checkpoint: str, cache: Path | None, output: Path | None,
         plugins: tuple[str, ...]) -> None:
    """Figures from the run records (PNG and PDF at paper column width, and beside each a .txt caption
    stating its protocol: split, checkpoint, seeds per point, schedule, units). A figure never mixes
    datasets, profiles, tags or distance units, and a point never pools label ratios: several in the
    records give a figure, a line or a panel each. Prints the files written.

    \b
    ratio        Dice and ASD against the label ratio per method and tag (spread over seeds)
    classes      per-class Dice box plots over evaluated volumes, one figure per ratio
    qualitative  image, ground truth and each method's prediction (runs with --save-predictions)
    param        Dice against one config key across runs (a sweep tagged with --tag), a panel per ratio
    curves       logged values (loss, validation Dice; --key for others: loss terms, cons_weight,
                 lr, step_s) against the global step, stage starts dashed (from train_log.jsonl)
    paired       two methods' Dice per case and seed against each other (--methods a,b), diagonal drawn
    """
    if kind is None:
        raise BenchError(f"{ctx.command_path} needs a KIND: one of {', '.join(KINDS)} "
                         f"(see {ctx.command_path} --help)")
    refuse_unused(ctx, kind)
    from sslbench.report import plots

    load_plugins(plugins)
    root = results or default_results()
    chosen = csv_list(methods, "methods") if methods else None
    if kind == "paired" and (not chosen or len(chosen) != 2):
        raise BenchError("bench plot paired needs --methods A,B: two methods (method@tag for a tagged variant)")
    if kind == "param" and not param_key:
        raise BenchError("bench plot param needs --param section.key")
    if kind == "qualitative" and not dataset:
        raise BenchError("bench plot qualitative needs --dataset")
    name = f"paired-{chosen[0]}-vs-{chosen[1]}" if kind == "paired" and chosen else kind
    out = output or Path("figures") / name
    not_in_run_folder(out if not out.is_dir() else out / "figure")
    named = {"name_all": output is None}  # the default names state dataset and profile key (and ratio), once
    if kind == "ratio":
        paths = plots.plot_ratio(root, out, dataset, profile, checkpoint, methods=chosen, **named)
    elif kind == "classes":
        paths = plots.plot_classes(root, out, dataset, profile, ratio, checkpoint, methods=chosen, **named)
    elif kind == "qualitative":
        picked = csv_list(slices, "slices", int) if slices else None
        paths = plots.plot_qualitative(root, out, str(dataset), profile, ratio, seed, cache=cache, case=case,
                                       slices=picked, methods=chosen, **named)
    elif kind == "curves":
        paths = plots.plot_curves(root, out, dataset, profile, chosen, ratio,
                                  keys=[k for given in keys for k in csv_list(given, "key")] or None, **named)
    elif kind == "paired":
        paths = plots.plot_paired(root, out, chosen or [], dataset, profile, ratio, checkpoint, **named)
    else:
        paths = plots.plot_param(root, out, str(param_key), dataset, profile, chosen, ratio=ratio,
                                 checkpoint=checkpoint, **named)
    notes = []
    for path in plots.with_captions(paths):
        click.echo(str(path))
        if path.suffix == ".txt":  # what a table's caption says of the code behind the runs, on stderr too
            notes += [line[len(plots.CODE_LINE):] for line in path.read_text(encoding="utf-8").splitlines()
                      if line.startswith(plots.CODE_LINE)]
    for note in dict.fromkeys(notes):
        click.echo(f"warning: {note}", err=True)
