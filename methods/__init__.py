"""Method plugins. Importing this package registers the built-in methods."""
from __future__ import annotations

from . import cct, contrastive, cps, dan, dct, entropy_minimization, ict, mean_teacher, mona, supervised, uamt, urpc  # noqa: F401
