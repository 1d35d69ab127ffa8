"""The ``bench`` command line: run sweeps, print tables, list methods and datasets."""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from sslbench.base.errors import BenchError, DataError

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_METHODS = "unet-f,unet-l,mt"
DEFAULT_DATASET = "synthetic-cardiac"
DEFAULT_RATIOS = "5"


results_option = click.option("--results", type=click.Path(path_type=Path), default=None,
                              help="Results root (default: ./results or $SSLBENCH_RESULTS).")


def _default_results() -> Path:
    return Path(os.environ.get("SSLBENCH_RESULTS", "results"))


def _csv(value: str, kind: str, cast: Callable[[str], Any] = str) -> list[Any]:
    """A comma-separated option value (``--ratios 1,5,10``); the refusal names the option ``--<kind>``."""
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise click.BadParameter(f"empty {kind} list", param_hint=f"'--{kind}'")
    try:
        return [cast(v) for v in items]
    except ValueError as exc:
        raise click.BadParameter(f"not a list of {kind}: {value!r}", param_hint=f"'--{kind}'") from exc


def user_errors(fn: F) -> F:
    """Turn BenchError into one line on stderr and exit code 2."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BenchError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except OSError as exc:  # a full disk, a read-only folder, a path that is a file: one line, not a traceback
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"error: {where}{exc.strerror or exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted: finished runs are kept; `bench run` again resumes the others", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def _output_file(path: Path) -> Path:
    """``-o FILE``: a file in an existing folder (never a folder, never a parent made on the way)."""
    if path.is_dir():
        raise BenchError(f"{path}: is a folder; -o takes a file name")
    if not path.parent.is_dir():
        raise BenchError(f"{path.parent}: no such folder (-o {path}); create it first")
    return path


class _EchoHandler(logging.Handler):
    """The package's warnings as ``warning: ...`` lines on the current stderr (the one click writes to)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"{record.levelname.lower()}: {record.getMessage()}", err=True)


def _load_plugins(plugins: tuple[str, ...]) -> None:
    from sslbench.method import METHODS

    METHODS.load_env_plugins()
    for module in plugins:
        METHODS.load_plugin_module(module)


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


_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2; with 8.1 nothing to catch


class _OneLineGroup(click.Group):
    """click's own refusals (an unknown option, a value outside a choice) as one ``error:`` line
    naming the command where click knows it and where its help is, exit code 2, like every other
    refusal of the CLI."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.pop("standalone_mode", True) is False:  # a caller that handles click's exceptions itself
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except _NO_ARGS_IS_HELP as exc:  # `bench` alone: the help text
            exc.show()
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            where = f"{ctx.command_path}: " if ctx is not None else ""
            hint = f" (see {ctx.command_path if ctx is not None else 'bench COMMAND'} --help)" \
                if isinstance(exc, click.UsageError) else ""
            click.echo(f"error: {where}{exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=_OneLineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sslbench")
def main() -> None:
    """sslbench: semi-supervised medical image segmentation, benchmarked fairly.

    \b
    bench run                       the default sweep on the embedded synthetic phantom
    bench run --methods mt,unet-l --dataset synthetic-cardiac --ratios 5,10 --seeds 0,1,2
    bench table --format latex      the records as the paper's table
    bench methods                   the registered method plugins
    """
    for stream in (sys.stdout, sys.stderr):  # text from someone else's file is printed, never a crash
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    log = logging.getLogger("sslbench")
    if not any(isinstance(h, _EchoHandler) for h in log.handlers):
        log.addHandler(_EchoHandler())
        log.setLevel(logging.WARNING)
        log.propagate = False


@main.command()
@click.option("--methods", default=DEFAULT_METHODS, show_default=True, help="Comma-separated method names.")
@click.option("--dataset", "--datasets", "datasets", default=DEFAULT_DATASET, show_default=True,
              help="Comma-separated dataset names.")
@click.option("--ratios", default=DEFAULT_RATIOS, show_default=True, help="Label ratios in percent of training volumes.")
@click.option("--seeds", default="0", show_default=True, help="Comma-separated seeds (split and initialisation).")
@click.option("--profile", default="quick", show_default=True, help="Schedule profile: quick, ssl4mis, paper.")
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
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--plugin", "plugins", multiple=True, metavar="MODULE",
              help="Import a module that registers extra methods (repeatable; also $BENCH_PLUGINS).")
@click.option("--force", is_flag=True, help="Replace runs whose saved configuration differs.")
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
        sweep: str | None, tag: str, eval_split: str | None, results: Path | None, cache: Path | None, jobs: int, device: str,
        plugins: tuple[str, ...], force: bool, save_predictions: bool, keep_checkpoints: str,
        eval_workers: int | None, quiet: bool, no_table: bool, debug: bool, dry_run: bool, executor: str,
        executor_config: Path | None,
        sbatch: tuple[str, ...], wait: bool, **slurm: Any) -> None:
    """Train and evaluate every method x dataset x ratio x seed; skip runs already done, resume
    interrupted ones, then print the table. With --executor slurm: submit the runs as one SLURM job
    array and return (--wait: follow it and print the table at the end)."""
    from sslbench.base.run_files import RunFiles
    from sslbench.run.runner import RunOptions, execute, expand, find_sweep, load_sweep, pick_device

    _load_plugins(plugins)
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
        method_list = _csv(methods, "methods")
        dataset_list = _csv(datasets, "datasets")
        specs = expand(method_list, dataset_list, _csv(ratios, "ratios", float), _csv(seeds, "seeds", int),
                       profile, overrides, cache, tag)
    root = results or _default_results()
    opts = RunOptions(results=root, cache=cache, device=device, force=force, progress=not quiet,
                      plugins=plugins, save_predictions=save_predictions, keep_checkpoints=keep_checkpoints,
                      eval_workers=eval_workers)
    click.echo(f"{len(specs)} run(s): {', '.join(method_list)} on {', '.join(dataset_list)}, "
               f"profile {profile}; results in {root}", err=True)
    if dry_run:
        from sslbench.run.plan import plan_text

        click.echo(plan_text(specs, opts))
        return
    if executor == "slurm":
        if jobs > 1:
            raise BenchError("--jobs is for the local executor; on SLURM use --runs-per-task K")
        _run_on_slurm(specs, opts, executor_config, sbatch, wait, slurm,
                      lambda: _print_tables(root, dataset_list, profile, specs) if not no_table else None)
        return
    given = [k for k, v in slurm.items() if v is not None] + (["slurm"] if sbatch else []) + \
        (["executor_config"] if executor_config else []) + (["wait"] if wait else [])
    if given:
        raise BenchError(f"--{given[0].replace('_', '-')} needs --executor slurm")
    outcomes = execute(specs, opts, jobs=jobs, log=lambda m: click.echo(m, err=True))
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
        click.echo(tables(root, "markdown", dataset=ds, profile=profile, methods=[s.method for s in specs]))
        click.echo()


def _run_on_slurm(specs: list[Any], opts: Any, config: Path | None, sbatch: tuple[str, ...], wait: bool,
                  given: dict[str, Any], print_tables: Callable[[], None]) -> None:
    """Submit the sweep's unfinished runs as one job array; with ``wait``, follow it to the end."""
    from sslbench.base.run_files import RunFiles
    from sslbench.run.queue import queued_job, squeue_states
    from sslbench.run.slurm import load_settings, submit
    from sslbench.run.slurm import wait as wait_for
    from sslbench.run.status import collect

    settings = load_settings(config, sbatch, **given)
    sub = submit(specs, opts, settings, log=lambda m: click.echo(m, err=True))
    for why, labels in sub.skipped.items():
        if labels:
            what = {"done": "already done", "running": "being trained now", "queued": "already queued"}[why]
            click.echo(f"{len(labels)} run(s) {what}: not submitted again", err=True)
    if sub.job_ids:
        array = sub.job_ids[0].split("_")[0]
        click.echo(f"submitted {sum(len(r) for r in sub.runs.values())} run(s) as SLURM job "
                   f"{'array ' if '_' in sub.job_ids[0] else ''}{array} ({len(sub.job_ids)} task(s), "
                   f"{settings.runs_per_task} run(s) per task); logs in {sub.logs}/{array}*", err=True)
    elif not wait:
        click.echo("nothing submitted", err=True)
    if not wait:
        click.echo(f"follow with: bench status --results {opts.results}", err=True)
        return
    folders = [s.files(opts.results.absolute()).folder for s in specs]
    queue = squeue_states() or {}  # and the runs an earlier submission still has in the queue
    watching = [*sub.job_ids, *(q[0] for f in folders if (q := queued_job(RunFiles(f), queue)) is not None)]
    wait_for(opts.results.absolute(), watching, folders, log=lambda m: click.echo(m, err=True))
    states = collect(opts.results.absolute(), squeue_states(), folders)
    print_tables()
    unfinished = [s for s in states if s.state != "done"]
    if unfinished:
        click.echo(f"{len(unfinished)} run(s) did not finish (bench status --results {opts.results}):", err=True)
        for s in unfinished:
            click.echo(f"  {s.run}: {s.state} {s.error or s.note or ''}".rstrip(), err=True)
        sys.exit(1)


@main.command()
@results_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@user_errors
def status(results: Path | None, fmt: str) -> None:
    """Every run under the results folder: pending, running (stage, iteration, it/s, ETA, host), done,
    failed (the error's last line) or stale (a lock whose process is gone), from the run folders
    alone, plus each run's SLURM job state where squeue answers."""
    from sslbench.run.slurm import squeue_states
    from sslbench.run.status import collect, render

    root = results or _default_results()
    if not root.is_dir():
        raise BenchError(f"{root}: no such results folder")
    click.echo(render(collect(root, squeue_states()), fmt))


@main.command()
@results_option
@click.option("--format", "fmt", type=click.Choice(["markdown", "latex", "csv"]), default="markdown",
              show_default=True)
@click.option("--dataset", default=None, help="Only this dataset.")
@click.option("--profile", default=None, help="Only this profile.")
@click.option("--methods", default=None, help="Only these methods (comma-separated).")
@click.option("--table", "table_no", type=str, default=None,
              help="Lay out as the paper's Table 1-5 (its rows and order, best in bold, significance marks), or "
                   "'beyond': BCP, UniMatch and ABD beside MONA with their own published numbers.")
@click.option("--vs-paper", is_flag=True, help="With --table: add the published value and the difference.")
@click.option("--paper-dataset", default=None,
              help="With --vs-paper: which paper dataset to compare with (default: the same name, else the "
                   "table's first), e.g. to set a synthetic run beside ACDC's numbers.")
@click.option("--cost", is_flag=True, help="Cost per method instead: precision, iterations per stage, wall "
              "time, it/s, device-hours, memory, params.")
@click.option("--per-class", is_flag=True, help="DSC and ASD per class instead of the class mean.")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True,
              help="The selected weights (best validation Dice) or the last weights of each run.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None, help="Write to a file.")
@user_errors
def table(results: Path | None, fmt: str, dataset: str | None, profile: str | None, methods: str | None,
          table_no: str | None, vs_paper: bool, paper_dataset: str | None, cost: bool, per_class: bool,
          checkpoint: str, output: Path | None) -> None:
    """Turn the run records into tables: by default one per dataset and profile (one row per method
    in the paper's order, columns ratio x (DSC, ASD), mean ± std over seeds); with --table N the
    layout of the paper's Table N; with --cost what each method costs."""
    from sslbench.base.atomic import write_text
    from sslbench.report.tables import cost_table, paper_table, tables

    root = results or _default_results()
    if output:
        _output_file(output)  # before any work
    if vs_paper and table_no is None:
        raise BenchError("--vs-paper needs --table N (the paper table to compare with)")
    if cost:
        text = cost_table(root, fmt, dataset)
    elif table_no is not None:
        text = paper_table(root, table_no, fmt, dataset, profile, vs_paper, paper_dataset,
                           warn=lambda m: click.echo(f"warning: {m}", err=True), checkpoint=checkpoint)
    else:
        text = tables(root, fmt, dataset, profile, _csv(methods, "methods") if methods else None, per_class,
                      checkpoint)
    if output:
        write_text(output, text + "\n")
    else:
        click.echo(text)


@main.command("predict")
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--cases", default=None, help="Comma-separated case ids (default: the run's evaluation split).")
@click.option("--cache", type=click.Path(path_type=Path), default=None, help="Prepared-data cache.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--plugin", "plugins", multiple=True, metavar="MODULE", help="Import extra plugin modules.")
@user_errors
def predict_cmd(run_dir: Path, cases: str | None, cache: Path | None, device: str, plugins: tuple[str, ...]) -> None:
    """Write a finished run's predictions from its stored weights, without training (what
    --save-predictions would have written): <RUN_DIR>/predictions, NIfTI in the source geometry for
    NIfTI datasets, else .npy."""
    from sslbench.run.runner import predict_run

    _load_plugins(plugins)
    predict_run(run_dir, cache, device, _csv(cases, "cases") if cases else None, log=lambda m: click.echo(m, err=True))


@main.command("report")
@results_option
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("report"), show_default=True,
              help="Folder to write the report into (index.html, runs/, figures/).")
@user_errors
def report_cmd(results: Path | None, output: Path) -> None:
    """Write a static HTML report of a results folder (opens from disk: no server, no CDN): per dataset
    and schedule the protocol, leaderboards per label ratio, per-class tables, figures and training
    curves; a cost table; one page per run with its selection, per-case metrics and provenance."""
    from sslbench.report.html import write_report

    index = write_report(results or _default_results(), output)
    click.echo(str(index))


@main.command("export")
@results_option
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="results.csv or results.parquet (Parquet needs pyarrow).")
@user_errors
def export_cmd(results: Path | None, output: Path) -> None:
    """Write the tidy results: one row per run x evaluated case x class, for the selected and the last
    weights (dataset, profile key, config hash, method, tag, ratio, seed, case, class, dsc, assd, asd,
    hd95 with their unit, iterations, evaluation split, best iteration, wall time). In Python:
    sslbench.report.load_results(path) returns the same frame."""
    from sslbench.base.atomic import atomic_path
    from sslbench.report.frame import load_results

    df = load_results(results or _default_results())
    if df.empty:
        raise BenchError(f"{results or _default_results()}: no completed runs to export")
    suffix = output.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise BenchError(f"{output}: the file name must end in .csv or .parquet")
    _output_file(output)
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError as exc:
            raise BenchError("Parquet needs pyarrow: pip install pyarrow (or write .csv)") from exc
    with atomic_path(output) as tmp:
        df.to_parquet(tmp, index=False) if suffix == ".parquet" else df.to_csv(tmp, index=False)
    click.echo(f"{output}: {len(df)} rows ({df.groupby(['dataset', 'profile_key', 'method', 'tag', 'ratio', 'seed']).ngroups} "
               "runs)", err=True)


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
@user_errors
def plot(kind: str, results: Path | None, dataset: str | None, profile: str | None, ratio: float | None,
         seed: int, case: str | None, slices: str | None, param_key: str | None, methods: str | None,
         checkpoint: str, cache: Path | None, output: Path | None) -> None:
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

    root = results or _default_results()
    out = output or Path("figures") / (kind if not dataset else f"{kind}-{dataset}")
    chosen = _csv(methods, "methods") if methods else None
    if kind == "ratio":
        paths = plots.plot_ratio(root, out, dataset, profile, checkpoint)
    elif kind == "classes":
        paths = plots.plot_classes(root, out, dataset, profile, ratio, checkpoint)
    elif kind == "qualitative":
        if not dataset:
            raise BenchError("bench plot qualitative needs --dataset")
        picked = _csv(slices, "slices", int) if slices else None
        paths = plots.plot_qualitative(root, out, dataset, profile, ratio, seed, cache=cache, case=case, slices=picked)
    elif kind == "curves":
        paths = plots.plot_curves(root, out, dataset, profile, chosen, ratio)
    else:
        if not param_key:
            raise BenchError("bench plot param needs --param section.key")
        paths = plots.plot_param(root, out, param_key, dataset, profile, chosen)
    for path in paths:
        click.echo(str(path))


@main.command("speed")
@click.option("--methods", default="unet-l,mt", show_default=True,
              help="Comma-separated methods (UNet-L, the baseline of the ratios, is always timed).")
@click.option("--profile", default="quick", show_default=True, help="Batch, image size, width and precision "
              "come from this profile.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key (as bench run).")
@click.option("--steps", default=20, show_default=True, type=click.IntRange(1), help="Timed steps per stage.")
@click.option("--warmup", default=3, show_default=True, type=click.IntRange(0), help="Untimed steps first.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--format", "fmt", type=click.Choice(["markdown", "json"]), default="markdown", show_default=True)
@click.option("--plugin", "plugins", multiple=True, metavar="MODULE", help="Import extra plugin modules.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None, help="Write to a file.")
@user_errors
def speed_cmd(methods: str, profile: str, overrides: tuple[str, ...], steps: int, warmup: int, device: str,
              fmt: str, plugins: tuple[str, ...], output: Path | None) -> None:
    """Time training steps per method and stage on synthetic slices of the profile's size (no dataset
    needed): step time, it/s, ratio to UNet-L measured in the same call, share of the step spent
    preparing the batch, peak memory; plus evaluation throughput and metric time per volume."""
    from .base.atomic import write_text
    from .run.runner import pick_device
    from .run.speed import render, speed

    if output:
        _output_file(output)  # before minutes of timing
    pick_device(device)
    _load_plugins(plugins)
    report = speed(_csv(methods, "methods"), profile, overrides, device, steps, warmup,
                   log=lambda m: click.echo(m, err=True))
    text = render(report, fmt)
    if output:
        write_text(output, text + "\n")
    else:
        click.echo(text)


@main.command("methods")
@click.argument("name", required=False)
@click.option("--plugin", "plugins", multiple=True, metavar="MODULE", help="Import extra plugin modules.")
@user_errors
def methods_cmd(name: str | None, plugins: tuple[str, ...]) -> None:
    """List the registered methods with their source (built-in, plugin package or module); with NAME,
    that method's configuration keys (method.KEY), their defaults and what each one does."""
    from tabulate import tabulate

    from sslbench.method import METHODS
    from sslbench.report.tables import paper_order

    _load_plugins(plugins)
    if name is not None:
        click.echo(_method_keys(METHODS.entry(name)))
        return
    entries = sorted(METHODS, key=lambda e: paper_order(e.obj.paper_name))
    rows = [(e.name, e.obj.paper_name, "yes" if e.obj.uses_unlabeled else "no", "+".join(e.obj.stages),
             e.source, e.class_path) for e in entries]
    click.echo(tabulate(rows, headers=["name", "paper name", "unlabeled", "stages", "source", "class"],
                        tablefmt="github"))


def _method_keys(entry: Any) -> str:
    """A method's keys with defaults and docs, and what its own TOML file sets."""
    import dataclasses

    from tabulate import tabulate

    from sslbench.base.config import configs_dir, field_docs

    cls = entry.obj
    docs = field_docs(cls.Config)
    rows = [(f"method.{f.name}", repr(getattr(cls.Config(), f.name)), docs[f.name])
            for f in dataclasses.fields(cls.Config)]
    head = (f"{entry.name} ({cls.paper_name}; {entry.source}, {entry.class_path}); stages: {' + '.join(cls.stages)}; "
            f"evaluated network: method.eval_net in {', '.join(cls.eval_nets)}" if "eval_net" in docs else
            f"{entry.name} ({cls.paper_name}; {entry.source}, {entry.class_path}); stages: {' + '.join(cls.stages)}")
    lines = [head, "", tabulate(rows, headers=["key", "default", "what it does"], tablefmt="github")
             if rows else "no method.* keys"]
    own = configs_dir() / "methods" / f"{entry.name}.toml"
    if own.is_file():
        lines += ["", f"configs/methods/{own.name} (applied after the profile):", own.read_text().rstrip()]
    lines += ["", "train.* and data.* keys apply to every method: docs/configuration.md; set any key with "
              "--set KEY=VALUE"]
    return "\n".join(lines)


@main.command("datasets")
@click.option("--cache", type=click.Path(path_type=Path), default=None, help="Prepared-data cache.")
@user_errors
def datasets_cmd(cache: Path | None) -> None:
    """List the registered datasets, their classes and whether they are prepared."""
    from tabulate import tabulate

    from sslbench.data import DATASETS

    from sslbench.cache import PreparedDataset, dataset_folder, prepared_names

    rows = []
    for e in DATASETS:
        prepared = (dataset_folder(e.name, cache) / "meta.json").exists()
        state = "yes" if prepared else ("on first use" if e.obj.embedded else "no (bench prepare)")
        rows.append((e.name, ", ".join(e.obj.classes[1:]) or "from dataset.json", state, e.source,
                     e.obj.description))
    for name in prepared_names(cache):
        if name not in DATASETS:
            try:
                ds = PreparedDataset(dataset_folder(name, cache))
            except DataError as exc:  # one damaged cache must not hide the others
                rows.append((name, "?", "damaged", "prepared", str(exc)[:200]))
                continue
            rows.append((name, ", ".join(ds.classes[1:]), "yes", f"prepared ({ds.meta.get('kind', '?')})",
                         f"{len(ds.split_cases('train'))} train / {len(ds.split_cases('val'))} val / "
                         f"{len(ds.split_cases('test'))} test volumes"))
    click.echo(tabulate(rows, headers=["name", "classes", "prepared", "source", "description"],
                        tablefmt="github"))


@main.command()
@click.argument("dataset")
@click.option("--raw", type=click.Path(path_type=Path), default=None, help="Raw data folder.")
@click.option("--format", "kind", default=None,
              help="Reader for a dataset prepared under its own name, e.g. --format nnunet.")
@click.option("--cache", type=click.Path(path_type=Path), default=None, help="Prepared-data cache.")
@click.option("--force", is_flag=True, help="Prepare again even if a cache exists (also from other raw data).")
@click.option("--strict-geometry", is_flag=True,
              help="A label whose affine differs from its image's is an error, even with the same shape and "
                   "spacing (default: the label takes the image's geometry, with a warning, as nnU-Net).")
@click.option("--max-voxels", type=click.IntRange(1), default=None,
              help="Refuse volumes with more voxels than this (default 2^31; also $SSLBENCH_MAX_VOXELS).")
@user_errors
def prepare(dataset: str, raw: Path | None, kind: str | None, cache: Path | None, force: bool,
            strict_geometry: bool, max_voxels: int | None) -> None:
    """Prepare DATASET once into the slice cache (idempotent and atomic).

    \b
    bench prepare acdc --raw /data/ACDC_ssl4mis
    bench prepare mydata --raw /data/Dataset042_Thing --format nnunet
    """
    from sslbench.cache import prepare as do_prepare

    if raw is not None and not raw.is_dir():
        raise BenchError(f"{raw}: no such folder")
    if max_voxels is not None:
        os.environ["SSLBENCH_MAX_VOXELS"] = str(max_voxels)
    ds = do_prepare(dataset, raw, cache, force, kind, strict_geometry)
    if ds.meta.get("geometry_fixed"):
        fixed = ds.meta["geometry_fixed"]
        click.echo(f"warning: {len(fixed)} label(s) took their image's geometry (listed in meta.json "
                   f"'geometry_fixed'): {', '.join(fixed[:5])}{' ...' if len(fixed) > 5 else ''}", err=True)
    counts = {s: len(ds.split_cases(s)) for s in ("train", "val", "test")}
    click.echo(f"{dataset}: prepared in {ds.folder} ({counts['train']} train, {counts['val']} val, "
               f"{counts['test']} test volumes)")


if __name__ == "__main__":  # pragma: no cover
    main()
