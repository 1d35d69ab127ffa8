"""Code identity: which code made a run, so that a number knows it and a stale one is never reused.

Two hashes go into every run's ``config.json`` and record (``code``):

- ``method``: the method's own source: the module of every method class in its MRO (ABD's and BCP's
  for ABD), the modules of its own package those import (``methods/_helper.py``), and the whole
  folder of a method that lives in a package of its own (``methods/mona/``, a plugin's ``my_lab/``).
  A run whose method hash differs from today's code is *stale*.
- ``core``: the shared code that trains and evaluates (contract, networks, losses, trainer, data
  layer, evaluation and metrics): a core change makes runs "from another code version", which the
  views name; retraining them is the user's choice.

Each Python file is hashed by its syntax tree without docstrings, so a change of whitespace, comments
or docs changes no hash, while any change to what runs does. Other files of a package (a method's
TOML defaults) are hashed byte for byte.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sslbench import __version__

# what trains and evaluates, relative to the sslbench package folder: a file, or a folder's .py files
CORE_PARTS = ("base", "cache", "io", "nn", "train", "data.py", "method.py", "splits.py", "report/evaluation.py",
              "report/metrics.py", "run/job.py", "run/environment.py")
MAX_FILES = 2000  # a plugin "package" that is really a whole home folder is refused, not hashed for minutes


def file_digest(path: Path) -> str:
    """A Python file's syntax tree without docstrings (whitespace, comments and docs do not count);
    any other file's bytes."""
    data = path.read_bytes()
    if path.suffix == ".py":
        try:
            tree = ast.parse(data)
        except (SyntaxError, ValueError):
            pass
        else:
            _strip_docstrings(tree)
            data = ast.dump(tree, annotate_fields=False, include_attributes=False).encode()
    return hashlib.sha256(data).hexdigest()


def _strip_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]


def digest_files(files: Iterable[Path], root: Path) -> str:
    """One short hash of files named relative to ``root`` (their names count, their order does not)."""
    h = hashlib.sha256()
    for path in sorted(set(files)):
        rel = path.relative_to(root) if path.is_relative_to(root) else Path(path.name)
        h.update(f"{rel.as_posix()}\0{file_digest(path)}\n".encode())
    return h.hexdigest()[:12]


def _package_dir() -> Path:
    return Path(__file__).resolve().parent.parent  # the sslbench package folder (benchmark/)


@functools.lru_cache(maxsize=1)
def core_code() -> str:
    """The core's hash (see the module docstring), computed once per process."""
    root = _package_dir()
    files: list[Path] = []
    for part in CORE_PARTS:
        path = root / part
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.is_file() else []
    return digest_files((f for f in files if "__pycache__" not in f.parts), root)


def _module_file(module: str) -> Path | None:
    mod = sys.modules.get(module)
    path = getattr(mod, "__file__", None)
    if path is None:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            return None
        path = getattr(spec, "origin", None) if spec is not None else None
    return Path(path).resolve() if path and str(path).endswith(".py") else None


def _package_folder(module: str, path: Path) -> Path | None:
    """The folder that is the method's code as a whole: a built-in's sub-package (``methods/mona/``)
    or a plugin's top-level package (``my_lab/``); None for a single module (``methods/mt.py``, a
    plugin ``fixseg.py``)."""
    parts = module.split(".")
    if parts[:2] == ["sslbench", "methods"]:
        methods_root = _module_file("sslbench.methods")
        return path.parent if methods_root is not None and path.parent != methods_root.parent else None
    if parts[0] == "sslbench" or len(parts) == 1:
        return None
    top = _module_file(parts[0])
    return top.parent if top is not None and top.name == "__init__.py" else None


def _imports(path: Path, module: str) -> set[str]:
    """Modules a file imports (relative imports resolved against ``module``), top level or not."""
    try:
        tree = ast.parse(path.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return set()
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[: len(parent) - (node.level - 1)] if node.level > 1 else parent
                base = ".".join(parent + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


def _same_place(module: str, origin: str, origin_file: Path) -> bool:
    """Whether an import of ``origin`` is the method's own code: a module of the built-in methods'
    package, or for a plugin a module beside it (not an installed library)."""
    if origin.startswith("sslbench.methods."):
        return module.startswith("sslbench.methods.")  # not the package's __init__, which finds them all
    if module.split(".")[0] in ("sslbench", "torch", "numpy") or module in sys.builtin_module_names:
        return False
    path = _module_file(module)
    return path is not None and path.parent == origin_file.parent


def method_files(cls: type) -> list[Path]:
    """The files whose code is ``cls``'s (see the module docstring)."""
    modules = [k.__module__ for k in cls.__mro__ if k.__module__ != "sslbench.method"
               and k.__module__.split(".")[0] not in ("builtins", "torch", "typing", "abc")]
    files: dict[Path, str] = {}
    todo = list(dict.fromkeys(modules))
    while todo:
        module = todo.pop()
        path = _module_file(module)  # None for a name that is no module (a class imported from one)
        if path is None or path in files:
            continue
        folder = _package_folder(module, path)
        if folder is not None:
            found = [p.resolve() for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                     and p.suffix in (".py", ".toml", ".json", ".txt")]
            if len(found) > MAX_FILES:
                raise ValueError(f"{folder}: more than {MAX_FILES} files in the method's package")
            files.update({p: module for p in found})
            continue
        files[path] = module
        for name in _imports(path, module):
            if name not in files.values() and _same_place(name, module, path):
                todo.append(name)
    return sorted(files)


@functools.lru_cache(maxsize=None)
def method_code(cls: type) -> str:
    """The method's hash (see the module docstring), computed once per class and process."""
    files = method_files(cls)
    root = Path(*_common(files)) if files else Path("/")
    return digest_files(files, root)


def _common(files: list[Path]) -> tuple[str, ...]:
    parts = [f.parent.parts for f in files]
    out: list[str] = []
    for level in zip(*parts):
        if len(set(level)) != 1:
            break
        out.append(level[0])
    return tuple(out) or ("/",)


def code_identity(cls: type) -> dict[str, Any]:
    """What a run's config.json and record store of the code that makes it."""
    return {"method": method_code(cls), "core": core_code(), "version": code_version()}


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """``0.1.0+<commit>[.dirty]`` from git where the package is a checkout, else the version."""
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "--no-optional-locks", "-C", str(here), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "--no-optional-locks", "-C", str(here), "status", "--porcelain"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        if out.returncode == 0:
            return f"{__version__}+{out.stdout.strip()}{'.dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        pass
    return __version__
