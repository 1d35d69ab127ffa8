"""The commands around the runs: ``bench predict``, ``speed``, ``methods``, ``datasets``, ``prepare``
and ``check``."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from sslbench.base.errors import DataError
from sslbench.cli.app import csv_list, load_plugins, main, output_file, plugin_option, user_errors


@main.command("predict")
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--cases", default=None, help="Comma-separated case ids (default: the run's evaluation split).")
@click.option("--cache", type=click.Path(path_type=Path), default=None, help="Prepared-data cache.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@plugin_option
@user_errors
def predict_cmd(run_dir: Path, cases: str | None, cache: Path | None, device: str, plugins: tuple[str, ...]) -> None:
    """Write a finished run's predictions from its stored weights, without training (what
    --save-predictions would have written): <RUN_DIR>/predictions, NIfTI in the source geometry for
    NIfTI datasets, else .npy."""
    from sslbench.run.predict import predict_run

    load_plugins(plugins)
    predict_run(run_dir, cache, device, csv_list(cases, "cases") if cases else None, log=lambda m: click.echo(m, err=True))


@main.command("speed")
@click.option("--methods", default="unet-l,mt", show_default=True,
              help="Comma-separated methods (UNet-L, the baseline of the ratios, is always timed).")
@click.option("--profile", default="quick", show_default=True, help="Batch, image size, width and precision "
              "come from this profile.")
@click.option("--dataset", default="synthetic-cardiac", show_default=True, help="Whose settings to time (its "
              "configs/datasets layer; no data is read): la or synthetic-la times the 3-D track.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key (as bench run).")
@click.option("--steps", default=20, show_default=True, type=click.IntRange(1), help="Timed steps per stage.")
@click.option("--warmup", default=3, show_default=True, type=click.IntRange(0), help="Untimed steps first.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--vs-bare", "vs_bare", default=0, show_default=True, type=click.IntRange(0), metavar="ROUNDS",
              help="Also time each method's last stage against a bare PyTorch loop of the same work (a batch "
              "made beforehand, plain SGD; UNet-L: the network, 0.5 (CE + Dice), SGD) in ROUNDS alternating "
              "rounds of --steps steps: the trainer's overhead as a ratio.")
@click.option("--format", "fmt", type=click.Choice(["markdown", "json"]), default="markdown", show_default=True)
@plugin_option
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None, help="Write to a file.")
@user_errors
def speed_cmd(methods: str, profile: str, dataset: str, overrides: tuple[str, ...], steps: int, warmup: int,
              device: str, vs_bare: int, fmt: str, plugins: tuple[str, ...], output: Path | None) -> None:
    """Time training steps per method and stage on synthetic slices of the profile's size (no dataset
    needed): step time, it/s, ratio to UNet-L measured in the same call, share of the step spent
    preparing the batch, peak memory; plus evaluation throughput and metric time per volume."""
    from sslbench.base.atomic import write_text
    from sslbench.run.environment import pick_device
    from sslbench.run.speed import render, speed

    if output:
        output_file(output)  # before minutes of timing
    pick_device(device)
    load_plugins(plugins)
    report = speed(csv_list(methods, "methods"), profile, overrides, device, steps, warmup,
                   log=lambda m: click.echo(m, err=True), dataset=dataset, vs_bare=vs_bare)
    text = render(report, fmt)
    if output:
        write_text(output, text + "\n")
    else:
        click.echo(text)


@main.command("methods")
@click.argument("name", required=False)
@plugin_option
@user_errors
def methods_cmd(name: str | None, plugins: tuple[str, ...]) -> None:
    """List the registered methods with their source (built-in, plugin package or module); with NAME,
    that method's configuration keys (method.KEY), their defaults and what each one does."""
    from tabulate import tabulate

    from sslbench.method import METHODS
    from sslbench.report.tables import paper_order

    load_plugins(plugins)
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
    if cls.defaults:
        import json

        lines += ["", f"{cls.__qualname__}.defaults (its own layer, applied after the profile and dataset files):",
                  json.dumps(cls.defaults, indent=1, sort_keys=True)]
    if len(cls.stages) > 1 or cls.stage_lengths:
        lines += ["", "stage lengths: " + ", ".join(f"{s} from {k}" for s, k in cls.stage_length_keys().items())]
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

    from sslbench.cache import PreparedDataset, dataset_folder, prepared_names
    from sslbench.data import DATASETS

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
    from sslbench.base.printable import one_line

    rows = [tuple(one_line(str(cell)) for cell in row) for row in rows]  # labels from a dataset.json: one line each
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



@main.command("check")
@click.argument("name")
@plugin_option
@user_errors
def check_cmd(name: str, plugins: tuple[str, ...]) -> None:
    """Run the conformance kit on method NAME (a plugin: with --plugin MODULE or $BENCH_PLUGINS): on a
    tiny network on the CPU, in seconds, its losses, gradients, prediction, resume, determinism,
    stages, teachers, evaluated networks and autocast; a method whose dims holds 3 again on a tiny
    VNet (lines "in 3-D:"). Prints one line per check; exit code 1 when one fails.

    \b
    bench check mt
    bench check my-method --plugin my_lab.my_method
    """
    from sslbench.method import METHODS
    from sslbench.testing import run_checks

    load_plugins(plugins)
    METHODS.get(name)  # an unknown name: one error line with the closest known one, exit 2
    if not run_checks(name, plugins, report=click.echo):
        sys.exit(1)
