"""The conformance kit's ``autocast`` check in a fresh process.

    python -m sslbench.train.autocast_probe [--3d] package.module:ClassName [more.module:Class ...]

A clash between precisions shows only when bf16 comes first: a table a method caches on first use,
built under autocast, then serves bf16 to fp32 code. In the process that ran the kit's other checks
(all fp32) every such table already exists in fp32, and the clash would hide; here nothing ran
before. Exit 0: passed; 1: failed, the reason on the last line of stderr; 3: the class cannot be
imported in a new process (defined in a function, or in ``__main__``), so the caller checks in its own.
``--3d``: on the kit's 3-D track (a tiny VNet on crops).
"""
from __future__ import annotations

import importlib
import sys

from sslbench.train.conformance import NOT_IMPORTABLE, autocast_steps, track


def main(argv: list[str]) -> int:
    refs = argv[1:]
    dims = 3 if refs[:1] == ["--3d"] else 2
    refs = refs[1:] if dims == 3 else refs
    if not refs or not all(":" in ref for ref in refs):
        print("usage: python -m sslbench.train.autocast_probe [--3d] package.module:ClassName ...", file=sys.stderr)
        return 2
    classes = []
    for ref in refs:
        module, _, qualname = ref.partition(":")
        try:
            cls = importlib.import_module(module)
            for part in qualname.split("."):
                cls = getattr(cls, part)
        except (ImportError, AttributeError) as exc:
            print(f"cannot import {ref} here: {exc}", file=sys.stderr)
            return NOT_IMPORTABLE
        classes.append(cls)
    try:
        with track(dims):
            autocast_steps(*classes)
    except AssertionError as exc:
        print(" ".join(str(exc).split()), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
