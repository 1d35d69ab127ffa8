"""Method plugins. Importing this package registers the built-in methods."""
from __future__ import annotations

from . import (  # noqa: F401
    cct, contrastive, cps, dan, dct, entropy_minimization, gcl, ict, mean_teacher, mona, plc, scs, supervised, uamt, urpc,
)
