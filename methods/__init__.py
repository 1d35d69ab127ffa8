"""Method plugins. Importing this package registers the built-in methods: every module in this
folder (and in its sub-packages, such as ``mona/``) is imported, so an in-tree method is one new
file with a ``@register_method`` class, nothing to add here."""
from __future__ import annotations

import importlib
import pkgutil

for _info in pkgutil.walk_packages(__path__, prefix=f"{__name__}."):
    importlib.import_module(_info.name)
