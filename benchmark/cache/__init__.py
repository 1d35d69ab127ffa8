"""The prepared-data cache: reading it back (``reader``), preparing a dataset into it (``prepare``)
and a run's use of a prepared dataset (``use``: its shared lock and fingerprint checks).

    from sslbench.cache import PreparedDataset, prepare
"""
from __future__ import annotations

from .prepare import check_dataset_name, check_separate, dataset_folder, prepare, prepared_names, source_fingerprint
from .reader import RESIZE_VERSION, PreparedDataset, current_fingerprint
from .use import DatasetUse, data_changed

__all__ = ["RESIZE_VERSION", "DatasetUse", "PreparedDataset", "check_dataset_name", "check_separate",
           "current_fingerprint", "data_changed", "dataset_folder", "prepare", "prepared_names",
           "source_fingerprint"]
