"""Dataset plugins. Importing this package registers the built-in datasets: every module in this
folder is imported, so an in-tree dataset is one new file with a ``@register_dataset`` class."""
from __future__ import annotations

import importlib
import pkgutil

for _info in pkgutil.walk_packages(__path__, prefix=f"{__name__}."):
    importlib.import_module(_info.name)
