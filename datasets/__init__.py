"""Dataset plugins. Importing this package registers the built-in datasets: every module in this
folder whose name does not start with ``_`` is imported, so an in-tree dataset is one new file with a
``@register_dataset`` class. ``_name.py`` marks a helper (phantom drawing, paired NIfTI reading, splits)."""
from __future__ import annotations

import importlib
import pkgutil

for _info in pkgutil.walk_packages(__path__, prefix=f"{__name__}."):
    if not _info.name.rpartition(".")[2].startswith("_"):  # _name: a helper, imported by the plugins that use it
        importlib.import_module(_info.name)
