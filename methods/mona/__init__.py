"""MONA (You et al., "Mine yOur owN Anatomy") and what only it owns: the plugins GLCon (its stage 1)
and MONA in ``glcon``; helpers: the anatomical contrastive reconstruction of stage 2 (``_anatomy``,
also the fine-tuning stage of every framework's fine-tuned variant, ``<framework>-ft``), its heads
(``_heads``), its class-aware memory bank (``_banks``) and the factored FPN map (``_fused``).
"""
