"""``bench run``: a sweep, on this machine or as a SLURM job array."""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from sslbench.base.errors import BenchError
from sslbench.cli.app import csv_list, default_results, load_plugins, main, plugin_option, results_option, user_errors

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_METHODS = "unet-f,unet-l,mt"
DEFAULT_DATASET = "synthetic-cardiac"
DEFAULT_RATIOS = "5"


def _slurm_options(fn: F) -> F:
    """``bench run``'s executor options (SLURM settings: defaults < --executor-config file < flags)."""
    options = [
        click.option("--executor", type=click.Choice(["local", "slurm"]), default="local", show_default=True,
                     help="Where runs train: this machine, or a SLURM job array (submitted through submitit)."),
        click.option("--executor-config", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
                     help="TOML file with a [slurm] table of the settings below (a lab writes its cluster once)."),
        click.option("--partition", default=None, help="SLURM partition."),
        click.option("--gpus-per-task", type=click.IntRange(0), default=None, help="GPUs per array task."),
        click.option("--cpus-per-task", type=click.IntRange(1), default=None, help="CPUs per array task."),
        click.option("--mem-gb", type=click.FloatRange(min=0, min_open=True), default=None, help="Memory per task (GB)."),
        click.option("--time-min", type=click.IntRange(1), default=None,
                     help="Time limit per task in minutes (default 240); longer runs checkpoint, requeue and resume."),
        click.option("--array-parallelism", type=click.IntRange(1), default=None,
                     help="Array tasks running at once (default 64)."),
        click.option("--account", default=None, help="SLURM account."),
        click.option("--qos", default=None, help="SLURM quality of service."),
        click.option("--runs-per-task", type=click.IntRange(1), default=None,
                     help="Runs per array task, trained side by side as that many processes (default 1)."),
        click.option("--slurm", "sbatch", multiple=True, metavar="KEY=VALUE",
                     help="Any other sbatch option, e.g. --slurm constraint=a100 (repeatable)."),
        click.option("--wait", is_flag=True, help="With --executor slurm: follow the array until it ends, "
                     "then print the table."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@main.command()
@click.option("--methods", default=DEFAULT_METHODS, show_default=True, help="Comma-separated method names.")
@click.option("--dataset", "--datasets", "datasets", default=DEFAULT_DATASET, show_default=True,
              help="Comma-separated dataset names.")
@click.option("--ratios", default=DEFAULT_RATIOS, show_default=True, help="Label ratios in percent of training volumes.")
@click.option("--seeds", default="0", show_default=True, help="Comma-separated seeds (split and initialisation).")
@click.option("--profile", default="quick", show_default=True, help="Schedule profile: quick, ssl4mis, paper, or uamt (the 3-D track: UA-MT's LA schedule).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set train.iterations=2000 --set method.ema_decay=0.999.")
@click.option("--sweep", default=None, metavar="NAME|FILE",
              help="Run a shipped sweep by name (table1 ... table5, beyond, acdc-cpu, smoke) or a sweep file "
                   "instead of --methods/--dataset/--ratios/--seeds.")
@click.option("--tag", default="", help="Name this variant (an ablation, a hyper-parameter value): its runs get "
              "their own folders and their own table rows, e.g. --tag 'w/ tailness'.")
@click.option("--eval-split", type=click.Choice(["test", "val"]), default=None,
              help="Report metrics on this split (default: test).")
@results_option
@click.option("--cache", type=click.Path(path_type=Path), default=None,
              help="Prepared-data cache (default: $SSLBENCH_CACHE or ~/.cache/sslbench).")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(1), help="Local worker processes.")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="PyTorch CPU threads per run (default: torch's own, every core, with one job; cores / jobs "
                   "per worker with --jobs). See docs/performance.md for which wins on a small CPU.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@plugin_option
@click.option("--force", is_flag=True, help="Replace runs whose saved configuration differs.")
@click.option("--rerun-stale", type=click.Choice(["method", "core"]), is_flag=False, flag_value="method",
              default=None, help="Train again from the start the runs whose method code changed since they ran or "
              "started (stale: refused otherwise); --rerun-stale=core also those of another version of the core code.")
@click.option("--save-predictions", is_flag=True,
              help="Write each evaluated volume's prediction under <run>/predictions (NIfTI in the source "
                   "geometry for NIfTI datasets).")
@click.option("--keep-checkpoints", type=click.Choice(["all", "last", "best", "none"]), default="all",
              show_default=True, help="Checkpoints kept once a run is done: last.pt (resumable: optimiser, "
              "teachers, banks) and/or best.pt (the evaluated network's weights only).")
@click.option("--eval-workers", type=click.IntRange(0), default=None,
              help="Processes computing each volume's metrics while the next one is predicted "
                   "(default: cores - 1 when predicting on a GPU, 0 on a CPU; 0: in this process).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--no-table", is_flag=True, help="Do not print the table at the end.")
@click.option("--debug", is_flag=True, help="Print the full traceback of every failed run (also kept in "
              "<run>/error.log).")
@click.option("--dry-run", is_flag=True, help="List the expanded runs, which are done, resumable or to train, and "
              "an estimate of the time left from finished runs of the same method and schedule; write nothing.")
@_slurm_options
@user_errors
def run(methods: str, datasets: str, ratios: str, seeds: str, profile: str, overrides: tuple[str, ...],
        sweep: str | None, tag: str, eval_split: str | None, results: Path | None, cache: Path | None, jobs: int,
        threads: int | None, device: str,
        plugins: tuple[str, ...], force: bool, rerun_stale: str | None, save_predictions: bool, keep_checkpoints: str,
        eval_workers: int | None, quiet: bool, no_table: bool, debug: bool, dry_run: bool, executor: str,
        executor_config: Path | None,
        sbatch: tuple[str, ...], wait: bool, **slurm: Any) -> None:
    """Train and evaluate every method x dataset x ratio x seed; skip runs already done, resume
    interrupted ones, then print the table. With --executor slurm: submit the runs as one SLURM job
    array and return (--wait: follow it and print the table at the end)."""
    from sslbench.base.run_files import RunFiles
    from sslbench.run.environment import pick_device
    from sslbench.run.executors import Executor, LocalExecutor
    from sslbench.run.specs import RunOptions, expand
    from sslbench.run.sweeps import find_sweep, load_sweep

    load_plugins(plugins)
    slurm_settings = None
    if executor == "slurm":  # every SLURM value checked before anything is printed, written or submitted
        from sslbench.run.slurm import check_script_values, load_settings

        if jobs > 1:
            raise BenchError("--jobs is for the local executor; on SLURM use --runs-per-task K")
        if threads is not None:
            raise BenchError("--threads is for the local executor; on SLURM a task's runs share its --cpus-per-task")
        slurm_settings = load_settings(executor_config, sbatch, **slurm)
        check_script_values(slurm_settings, results or default_results())
    if executor == "local":
        pick_device(device)  # before anything is written (on SLURM, the nodes' device counts)
    elif device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise BenchError(f"--device {device}: expected auto, cpu, cuda or cuda:N")
    overrides = tuple(overrides) + ((f"data.eval_split={eval_split}",) if eval_split else ())
    if sweep is not None:
        explicit = click.get_current_context().get_parameter_source("profile") == click.core.ParameterSource.COMMANDLINE
        specs = load_sweep(find_sweep(sweep), profile if explicit else None, overrides, cache,
                           warn=lambda m: click.echo(m, err=True))
        if not specs:
            raise BenchError(f"{sweep}: no runs (none of its methods is registered)")
        method_list = list(dict.fromkeys(s.method for s in specs))
        dataset_list = list(dict.fromkeys(s.dataset for s in specs))
        profile = specs[0].profile
    else:
        method_list = csv_list(methods, "methods")
        dataset_list = csv_list(datasets, "datasets")
        specs = expand(method_list, dataset_list, csv_list(ratios, "ratios", float), csv_list(seeds, "seeds", int),
                       profile, overrides, cache, tag)
    root = results or default_results()
    opts = RunOptions(results=root, cache=cache, device=device, force=force, progress=not quiet,
                      plugins=plugins, save_predictions=save_predictions, keep_checkpoints=keep_checkpoints,
                      eval_workers=eval_workers, rerun_stale=rerun_stale or "", threads=threads)
    click.echo(f"{len(specs)} run(s): {', '.join(method_list)} on {', '.join(dataset_list)}, "
               f"profile {profile}; results in {root}", err=True)
    if dry_run:
        from sslbench.run.plan import plan_text

        click.echo(plan_text(specs, opts))
        return
    runner: Executor
    if executor == "slurm":
        from sslbench.run.slurm_executor import SlurmExecutor

        runner = SlurmExecutor(executor_config, sbatch, wait, slurm, settings=slurm_settings)
    else:
        given = [k for k, v in slurm.items() if v is not None] + (["slurm"] if sbatch else []) + \
            (["executor_config"] if executor_config else []) + (["wait"] if wait else [])
        if given:
            raise BenchError(f"--{given[0].replace('_', '-')} needs --executor slurm")
        runner = LocalExecutor(jobs)
    result = runner.run(specs, opts, log=lambda m: click.echo(m, err=True))
    if not result.ended:
        return
    outcomes = result.outcomes
    skipped = sum(o.status == "skipped" for o in outcomes)
    busy = sum(o.status == "busy" for o in outcomes)
    failed = [o for o in outcomes if o.status == "failed"]
    if skipped == len(outcomes):
        click.echo(f"nothing to do: all {skipped} run(s) already done with the same configuration", err=True)
    if not no_table and len(failed) < len(outcomes):
        _print_tables(root, dataset_list, profile, specs)
    if busy:
        click.echo(f"{busy} run(s) were being trained by another process and were left to it; "
                   "`bench run` again later picks up any it did not finish", err=True)
    if failed:
        if executor == "slurm":
            click.echo(f"{len(failed)} run(s) did not finish (bench status --results {root}; `bench run "
                       "--executor slurm` again resubmits them):", err=True)
        else:
            click.echo(f"{len(failed)} run(s) failed (rerun `bench run` to resume them):", err=True)
        for o in failed:
            click.echo(f"  {o.spec.label}: {o.message}", err=True)
            trace = RunFiles(Path(o.folder)).error_log() if debug else None
            if trace:
                click.echo(trace, err=True)
        sys.exit(1)


def _print_tables(root: Path, datasets: list[str], profile: str, specs: list[Any]) -> None:
    from sslbench.report.tables import tables

    for ds in datasets:
        click.echo(tables(root, "markdown", dataset=ds, profile=profile, methods=[s.method for s in specs],
                          strict=False))  # a method whose runs all failed has no row, and no error
        click.echo()
