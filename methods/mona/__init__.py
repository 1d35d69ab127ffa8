"""MONA (You et al., "Mine yOur owN Anatomy") and what only it owns: GLCon, its stage 1
(``glcon``), the anatomical contrastive reconstruction of stage 2 (``anatomy``, also the fine-tuning
stage of every framework's fine-tuned variant, ``<framework>-ft``), its heads and its class-aware
memory bank.

The classes load on first use, so the frameworks module can import ``anatomy`` from here while
``glcon`` imports the frameworks module.
"""
from __future__ import annotations

from typing import Any

_LAZY = {"GLCon", "GLConConfig", "MONA", "MONAConfig"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import glcon

        return getattr(glcon, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
