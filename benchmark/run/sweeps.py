"""Sweep files (``configs/sweeps/*.toml`` or a user's file): a paper table's or a lab's sweep,
expanded into run specs."""
from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sslbench.base.config import configs_dir
from sslbench.base.errors import BenchError
from sslbench.base.fields import FieldError
from sslbench.io.readers import regular_input
from sslbench.method import METHODS
from sslbench.run.specs import RunSpec, expand

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def shipped_sweeps() -> list[str]:
    """The sweeps that ship with the package (``configs/sweeps/<name>.toml``)."""
    return sorted(p.stem for p in (configs_dir() / "sweeps").glob("*.toml"))


def find_sweep(name_or_path: str | Path) -> Path:
    """A sweep file: a path that exists, else the shipped sweep of that name (``table1``, ``acdc-cpu``)."""
    path = Path(name_or_path)
    if path.exists() or path.is_symlink():  # a file (or a FIFO, folder, link: refused by load_sweep, by name)
        return path
    shipped = configs_dir() / "sweeps" / f"{path.name.removesuffix('.toml')}.toml"
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    raise BenchError(f"--sweep {name_or_path}: no such file, nor a shipped sweep "
                     f"(shipped: {', '.join(shipped_sweeps())})")


def load_sweep(path: Path, profile: str | None = None, extra: Sequence[str] = (), cache: Path | None = None,
               warn: Callable[[str], None] = print) -> list[RunSpec]:
    """Run specs of a sweep file (``configs/sweeps/*.toml``): a ``[sweep]`` table with methods,
    datasets, ratios, seeds, profile and ``set`` overrides, and optional ``[[variant]]`` tables
    (``tag`` + ``set``, optionally their own ``methods``), each a tagged group of runs. Methods not
    registered are skipped with a warning, so one file can describe a whole paper table while methods are still being added.
    ``profile`` and ``extra`` (from the command line) override the file."""
    try:
        regular_input(path)  # a FIFO would hang the read
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # TOMLDecodeError and UnicodeDecodeError are ValueErrors
        raise BenchError(f"{path}: unreadable sweep file ({type(exc).__name__}: {str(exc)[:200]})") from None
    sweep = data.get("sweep")
    allowed = {"methods", "datasets", "ratios", "seeds", "profile", "set"}
    if not isinstance(sweep, dict) or set(data) - {"sweep", "variant"} or set(sweep) - allowed:
        raise BenchError(f"{path}: expected a [sweep] table with {', '.join(sorted(allowed))} "
                         "and optional [[variant]] tables")
    try:
        def registered(names: list[str]) -> list[str]:
            return [m for m in names if m in METHODS.names() or warn(
                f"warning: {path.name}: skipping method '{m}' (not registered)")]

        variants = data.get("variant") or [{"tag": "", "set": []}]
        for variant in variants:
            if not isinstance(variant, dict) or set(variant) - {"tag", "set", "methods"}:
                raise BenchError(f"{path}: a [[variant]] takes tag, set and methods only")
        specs: list[RunSpec] = []
        datasets = _listed(sweep.get("datasets"), "datasets", str)
        ratios = _listed(sweep.get("ratios", [10]), "ratios", float)  # checked (and made floats) by expand
        seeds = _listed(sweep.get("seeds", [0]), "seeds", int)
        sweep_profile = sweep.get("profile", "quick")
        if not isinstance(sweep_profile, str):
            raise FieldError(f"profile: expected a string, got {sweep_profile!r}")
        for variant in variants:
            methods = registered(_listed(variant.get("methods", sweep.get("methods")), "methods", str))
            overrides = [*_listed(sweep.get("set", []), "set", str), *_listed(variant.get("set", []), "set", str),
                         *extra]
            tag = variant.get("tag", "")
            if not isinstance(tag, str):
                raise FieldError(f"variant tag: expected a string, got {tag!r}")
            specs += expand(methods, datasets, ratios, seeds, profile or sweep_profile, overrides, cache, tag)
    except FieldError as exc:
        raise BenchError(f"{path}: {exc}") from None
    return specs


def _listed(value: Any, key: str, kind: type) -> list[Any]:
    """A sweep file's list of ``kind`` (a string where a list belongs, or ``true`` as a seed, is refused);
    only ``set`` may be empty."""
    if not isinstance(value, list) or (not value and key != "set"):
        raise FieldError(f"{key}: expected a non-empty list, got {value!r}")
    for item in value:
        ok = isinstance(item, (int, float) if kind is float else kind) and not isinstance(item, bool)
        if not ok:
            raise FieldError(f"{key}: expected a list of {kind.__name__}s, got the item {item!r}")
    return list(value)
