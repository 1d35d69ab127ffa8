"""Dataset plugins. Importing this package registers the built-in datasets."""
from __future__ import annotations

from . import acdc, lits, mmwhs, nnunet, synthetic_cardiac, synthetic_liver, synthetic_whs  # noqa: F401
