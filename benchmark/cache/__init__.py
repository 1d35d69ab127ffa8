"""The prepared-data cache: reading it back (``reader``) and preparing a dataset into it (``prepare``).

    from sslbench.cache import PreparedDataset, prepare
"""
from __future__ import annotations

from .prepare import check_dataset_name, dataset_folder, prepare, prepared_names, source_fingerprint
from .reader import RESIZE_VERSION, PreparedDataset

__all__ = ["RESIZE_VERSION", "PreparedDataset", "check_dataset_name", "dataset_folder", "prepare", "prepared_names",
           "source_fingerprint"]
