"""The ``bench`` command group and what its commands share: one ``error:`` line and exit code 2 for
bad input, the ``--results`` / ``--plugin`` options, comma lists, output files."""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from sslbench.base.errors import BenchError

F = TypeVar("F", bound=Callable[..., Any])

plugin_option = click.option("--plugin", "plugins", multiple=True, metavar="MODULE",
                             help="Import a module that registers extra methods (repeatable; also $BENCH_PLUGINS).")
results_option = click.option("--results", type=click.Path(path_type=Path), default=None,
                              help="Results root (default: ./results or $SSLBENCH_RESULTS).")


def default_results() -> Path:
    return Path(os.environ.get("SSLBENCH_RESULTS", "results"))


def csv_list(value: str, kind: str, cast: Callable[[str], Any] = str) -> list[Any]:
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


def output_file(path: Path) -> Path:
    """``-o FILE``: a file in an existing folder (never a folder, never a parent made on the way),
    never inside a run folder (a view must not overwrite a record it was built from)."""
    if path.is_dir():
        raise BenchError(f"{path}: is a folder; -o takes a file name")
    if not path.parent.is_dir():
        raise BenchError(f"{path.parent}: no such folder (-o {path}); create it first")
    not_in_run_folder(path)
    return path


def not_in_run_folder(path: Path) -> None:
    """Refuse an output path inside a run folder (one holding a run's config, record or DONE, at any
    level above the path)."""
    from sslbench.base.run_files import RunFiles

    for folder in [path.resolve().parent, *path.resolve().parent.parents]:
        if any((folder / name).is_file() for name in (RunFiles.RECORD, RunFiles.CONFIG, RunFiles.DONE)):
            raise BenchError(f"{path}: inside the run folder {folder}; a view never writes into a run's folder "
                             "(choose a path outside the results' run folders)")


class _EchoHandler(logging.Handler):
    """The package's warnings as ``warning: ...`` lines on the current stderr (the one click writes to)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"{record.levelname.lower()}: {record.getMessage()}", err=True)


def load_plugins(plugins: tuple[str, ...]) -> None:
    from sslbench.method import METHODS

    METHODS.load_env_plugins()
    for module in plugins:
        METHODS.load_plugin_module(module)


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
    from sslbench.base.printable import PrintableStream

    for stream in (sys.stdout, sys.stderr):  # text from someone else's file is printed, never a crash
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    # and never acted on: control characters from files or names are shown, not obeyed
    if not isinstance(sys.stdout, PrintableStream):
        sys.stdout = PrintableStream(sys.stdout)  # type: ignore[assignment]
    if not isinstance(sys.stderr, PrintableStream):
        sys.stderr = PrintableStream(sys.stderr)  # type: ignore[assignment]
    log = logging.getLogger("sslbench")
    if not any(isinstance(h, _EchoHandler) for h in log.handlers):
        log.addHandler(_EchoHandler())
        log.setLevel(logging.WARNING)
        log.propagate = False
