"""sslbench: a benchmark suite for semi-supervised medical image segmentation.

Layers, each importing only the ones below it:

    cli                                   the `bench` command
    run/                                  sweeps -> runs -> records
    report/                               evaluation, metrics, tables, figures
    train/                                the trainer, its sampler, the conformance kit
    method.py, data.py                    the two plugin contracts
    nn/, io/                              building blocks for methods; arrays in and out
    base/                                 config, registries, errors, names, locks, records
"""
from __future__ import annotations

__version__ = "0.1.0"
