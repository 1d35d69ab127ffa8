"""Dataset plugins. Importing this package registers the built-in datasets."""
from __future__ import annotations

from . import synthetic_cardiac  # noqa: F401
