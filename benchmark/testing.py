"""The conformance kit for plugin authors (public; lives in ``sslbench.train.conformance``).

    from sslbench.testing import check_method
    check_method("my-method")                                 # raises AssertionError naming the failed check
    check_method("my-method", plugins=["my_lab.my_method"])   # a plugin module (or $BENCH_PLUGINS)
    run_checks("my-method", ["my_lab.my_method"])             # `bench check`: ok / FAILED lines, True or False
    with track(3): check_gradients("my-method")               # one check on the 3-D track (a tiny VNet)
"""
from __future__ import annotations

from .train.conformance import (
                                CHECKS,
                                NUM_CLASSES,
                                NUM_CLASSES_3D,
                                STEPS,
                                TINY,
                                TINY_3D,
                                WHAT,
                                build,
                                check_autocast,
                                check_determinism,
                                check_eval_nets,
                                check_gradients,
                                check_losses,
                                check_method,
                                check_predict,
                                check_pretrain,
                                check_resume,
                                check_teachers,
                                check_validated,
                                num_classes,
                                resolve_method,
                                run_checks,
                                tiny_data,
                                track,
)

__all__ = ["CHECKS", "NUM_CLASSES", "NUM_CLASSES_3D", "STEPS", "TINY", "TINY_3D", "WHAT", "build", "check_autocast",
           "check_determinism", "check_eval_nets", "check_gradients", "check_losses", "check_method", "check_predict",
           "check_pretrain", "check_resume", "check_teachers", "check_validated", "num_classes", "resolve_method",
           "run_checks", "tiny_data", "track"]
