"""The conformance kit for plugin authors (public; lives in ``sslbench.train.conformance``).

    from sslbench.testing import check_method
    check_method("my-method")      # raises AssertionError naming the failed contract
"""
from __future__ import annotations

from .train.conformance import (
                                CHECKS,
                                NUM_CLASSES,
                                TINY,
                                build,
                                check_determinism,
                                check_gradients,
                                check_losses,
                                check_method,
                                check_predict,
                                check_pretrain,
                                check_resume,
                                tiny_data,
)

__all__ = ["CHECKS", "NUM_CLASSES", "TINY", "build", "check_determinism", "check_gradients", "check_losses",
           "check_method", "check_predict", "check_pretrain", "check_resume", "tiny_data"]
