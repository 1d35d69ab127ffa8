"""The ``bench`` command line: run sweeps, show the results, check a method, list methods and datasets.

``app`` holds the command group and what the commands share; each other module registers its commands
on it when imported (below), one module per kind of work."""
from __future__ import annotations

from sslbench.cli import catalog, plot_cmd, run_cmd, views  # noqa: F401  (each registers its commands)
from sslbench.cli.app import main

__all__ = ["main"]
