"""MONA (You et al., "Mine yOur owN Anatomy") and what only it owns: the plugins GLCon (its stage 1)
and MONA in ``glcon``; helpers: the anatomical contrastive reconstruction of stage 2 (``_anatomy``,
also the fine-tuning stage of every framework's fine-tuned variant, ``<framework>-ft``), its heads
(``_heads``), its class-aware memory bank (``_banks``) and the factored FPN map (``_fused``).

The classes load on first use, so the frameworks module can import ``_anatomy`` from here while
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
