"""The commands that show results: ``bench status``, ``table``, ``report``, ``export`` and ``plot``."""
from __future__ import annotations

from pathlib import Path

import click

from sslbench.base.errors import BenchError
from sslbench.cli.app import (
    csv_list,
    default_results,
    load_plugins,
    main,
    not_in_run_folder,
    output_file,
    plugin_option,
    results_option,
    user_errors,
)


@main.command()
@results_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@plugin_option
@user_errors
def status(results: Path | None, fmt: str, plugins: tuple[str, ...]) -> None:
    """Every run under the results folder: pending, running (stage, iteration, it/s, ETA, host), done,
    stale (finished, but its method's code changed since), failed (the error's last line) or abandoned
    (a lock whose process is gone), from the run folders alone, plus each run's SLURM job state where
    squeue answers; finished runs of another core code version are noted."""
    from sslbench.run.slurm import squeue_states
    from sslbench.run.status import collect, render

    load_plugins(plugins)
    root = results or default_results()
    if not root.is_dir():
        raise BenchError(f"{root}: no such results folder")
    click.echo(render(collect(root, squeue_states()), fmt))


# the options each mode of `bench table` honours (beside --results, --format, -o and --plugin)
TABLE_OPTIONS = {
    "": ("dataset", "profile", "methods", "per_class", "checkpoint", "ci"),
    "--table": ("dataset", "profile", "table_no", "vs_paper", "paper_dataset", "checkpoint"),
    "--cost": ("dataset", "profile", "methods", "cost"),
    "--keys": ("dataset", "keys"),
}
ALWAYS = ("results", "fmt", "output", "plugins")


def refuse_unused(mode: str, honoured: tuple[str, ...], command: str) -> None:
    """Every option the user gave that ``command`` would not act on is refused with one line (a
    default value is never "given")."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    given = [p for p in ctx.command.params
             if ctx.get_parameter_source(p.name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
             and p.name not in honoured and p.name not in ALWAYS]
    if given:
        names = ", ".join(p.opts[-1] if p.opts[-1].startswith("--") else p.opts[0] for p in given)
        raise BenchError(f"{command}: {names} would be ignored here (see bench table --help)")
    if ctx.params.get("vs_paper") is False and ctx.get_parameter_source("paper_dataset") == ParameterSource.COMMANDLINE:
        raise BenchError("--paper-dataset needs --vs-paper")


@main.command()
@results_option
@click.option("--format", "fmt", type=click.Choice(["markdown", "latex", "csv"]), default="markdown",
              show_default=True)
@click.option("--dataset", default=None, help="Only this dataset.")
@click.option("--profile", default=None, help="Only this profile.")
@click.option("--methods", default=None, help="Only these methods (comma-separated).")
@click.option("--table", "table_no", type=str, default=None,
              help="Lay out as the paper's Table 1-5 (its rows and order, best in bold, significance marks), or "
                   "'beyond': BCP, UniMatch and ABD beside MONA with their own published numbers, or 'la': the 3-D "
                   "track's LA rows (published numbers as quoted, docs/3d-track.md).")
@click.option("--vs-paper", is_flag=True, help="With --table: add the published value and the difference.")
@click.option("--paper-dataset", default=None,
              help="With --vs-paper: which of the table's published datasets to set beside the records (default: "
                   "the dataset of the same name, else none), e.g. acdc beside a synthetic run.")
@click.option("--cost", is_flag=True, help="Cost per method instead: precision, iterations per stage, wall "
              "time, it/s, device-hours, memory, params.")
@click.option("--per-class", is_flag=True, help="DSC and ASD per class instead of the class mean.")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True,
              help="The selected weights (best validation Dice) or the last weights of each run.")
@click.option("--ci", type=click.FloatRange(0, 100, min_open=True, max_open=True), default=None, metavar="LEVEL",
              help="Beside each DSC, its LEVEL % (e.g. 95) percentile bootstrap interval of the mean, resampling "
                   "the evaluated cases of every seed pooled (2000 resamples, RNG seed 0); with --format csv in "
                   "columns of their own.")
@click.option("--keys", is_flag=True, help="List the profile keys (schedules) under the results folder: each "
              "key's profile and the train./data. values its runs changed, with run counts per dataset.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None, help="Write to a file.")
@plugin_option
@user_errors
def table(results: Path | None, fmt: str, dataset: str | None, profile: str | None, methods: str | None,
          table_no: str | None, vs_paper: bool, paper_dataset: str | None, cost: bool, per_class: bool,
          checkpoint: str, ci: float | None, keys: bool, output: Path | None, plugins: tuple[str, ...]) -> None:
    """Turn the run records into tables: by default one per dataset and profile (one row per method
    in the paper's order, columns ratio x (DSC, ASD), mean ± std over seeds); with --table N the
    layout of the paper's Table N; with --cost what each method costs; with --keys which schedules
    (profile keys) the records hold. An option a mode cannot honour is refused, never ignored."""
    from sslbench.base.atomic import write_text
    from sslbench.report.cost import cost_table
    from sslbench.report.keys import keys_table
    from sslbench.report.tables import paper_table, tables

    root = results or default_results()
    load_plugins(plugins)
    mode = "--keys" if keys else "--cost" if cost else "--table" if table_no is not None else ""
    refuse_unused(mode, TABLE_OPTIONS[mode], "bench table" + (f" {mode}" if mode else ""))
    if output:
        output_file(output)  # before any work
    if not root.is_dir():
        raise BenchError(f"{root}: no such results folder (--results; run `bench run` first)")
    chosen = csv_list(methods, "methods") if methods else None
    if keys:
        text = keys_table(root, fmt, dataset)
    elif cost:
        text = cost_table(root, fmt, dataset, profile, chosen)
    elif table_no is not None:
        text = paper_table(root, table_no, fmt, dataset, profile, vs_paper, paper_dataset,
                           warn=lambda m: click.echo(f"warning: {m}", err=True), checkpoint=checkpoint)
    else:
        text = tables(root, fmt, dataset, profile, chosen, per_class, checkpoint, ci=ci)
    if output:
        write_text(output, text + "\n")
    else:
        click.echo(text)


@main.command("report")
@results_option
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("report"), show_default=True,
              help="Folder to write the report into (index.html, runs/, figures/).")
@plugin_option
@user_errors
def report_cmd(results: Path | None, output: Path, plugins: tuple[str, ...]) -> None:
    """Write a static HTML report of a results folder (opens from disk: no server, no CDN): per dataset
    and schedule the protocol, leaderboards per label ratio, per-class tables, figures and training
    curves; a cost table; one page per run with its selection, per-case metrics and provenance."""
    from sslbench.report.html import write_report

    load_plugins(plugins)
    not_in_run_folder(output / "index.html")
    index = write_report(results or default_results(), output)
    click.echo(str(index))


@main.command("export")
@results_option
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="results.csv or results.parquet (Parquet needs pyarrow).")
@plugin_option
@user_errors
def export_cmd(results: Path | None, output: Path, plugins: tuple[str, ...]) -> None:
    """Write the tidy results: one row per run x evaluated case x class, for the selected and the last
    weights (dataset, profile key, config hash, method, tag, ratio, seed, case, class, dsc, assd, asd,
    hd95 with their unit, iterations, evaluation split, best iteration, wall time). In Python:
    sslbench.report.load_results(path) returns the same frame."""
    from sslbench.base.atomic import atomic_path
    from sslbench.base.spreadsheet import to_safe_csv
    from sslbench.report.frame import load_results

    load_plugins(plugins)
    df = load_results(results or default_results())
    if df.empty:
        raise BenchError(f"{results or default_results()}: no completed runs to export")
    suffix = output.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise BenchError(f"{output}: the file name must end in .csv or .parquet")
    output_file(output)
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError as exc:
            raise BenchError("Parquet needs pyarrow: pip install pyarrow (or write .csv)") from exc
    with atomic_path(output) as tmp:
        df.to_parquet(tmp, index=False) if suffix == ".parquet" else to_safe_csv(df, tmp)
    code_warning(results or default_results())
    click.echo(f"{output}: {len(df)} rows ({df.groupby(['dataset', 'profile_key', 'method', 'tag', 'ratio', 'seed']).ngroups} "
               "runs)", err=True)


def code_warning(root: Path) -> None:
    """An export has no caption: what a table's caption would say of the code behind its
    runs (several code versions, stale runs) goes to stderr."""
    import logging

    from sslbench.report.frame import code_note, run_frame

    log = logging.getLogger("sslbench")
    level = log.level
    log.setLevel(logging.ERROR)  # the records were read (and their warnings printed) once already
    try:
        runs = run_frame(root)
    finally:
        log.setLevel(level)
    note = code_note(runs) if not runs.empty else ""
    if note:
        click.echo(f"warning: {note}", err=True)
