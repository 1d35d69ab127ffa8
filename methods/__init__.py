"""Method plugins. Importing this package registers the built-in methods."""
from __future__ import annotations

from . import mean_teacher, supervised  # noqa: F401
