"""Method plugins. Importing this package registers the built-in methods: every module in this
folder (and in its sub-packages, such as ``mona/``) whose name does not start with ``_`` is
imported, so an in-tree method is one new file with a ``@register_method`` class, nothing to add
here. ``_name.py`` marks a helper (code one method owns, such as ``mona/_anatomy.py``)."""
from __future__ import annotations

import importlib
import pkgutil

for _info in pkgutil.walk_packages(__path__, prefix=f"{__name__}."):
    if not _info.name.rpartition(".")[2].startswith("_"):  # _name: a helper, imported by the plugins that use it
        importlib.import_module(_info.name)
