"""Code identity: which code made a run, so that a number knows it and a stale one is never reused.

Two hashes go into every run's ``config.json`` and record (``code``):

- ``method``: the method's own source: the module of every method class in its MRO (ABD's and BCP's
  for ABD), and for a method that lives in a package of its own (``methods/mona/``, a plugin's
  ``my_lab/``) that package's whole folder; then, followed file by file, the modules these import
  that are the method's code too: modules of the built-in methods' package, or for a plugin the
  modules under the folder it is imported from (not installed libraries, not the suite). A run whose
  method hash differs from today's code is *stale*.
- ``core``: the shared code that trains and evaluates (contract, networks, losses, trainer, the data
  layer and dataset readers, evaluation and metrics): a core change makes runs "from another code
  version", which the views name; retraining them is the user's choice.

Each Python file is hashed by a canonical form of its syntax tree without docstrings (the same on
every Python version the suite supports), so a change of whitespace, comments or docs changes no
hash while any change to what runs does. TOML files of a method's package (its defaults) are hashed
byte for byte. A class without a source file (defined in ``__main__`` or a notebook) has no method
hash (""): its runs are never called stale.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import re
import subprocess
import sys
import sysconfig
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sslbench import __version__
from sslbench.base.errors import BenchError

# what trains and evaluates, relative to the sslbench package folder: a file, or a folder's .py files
CORE_PARTS = ("base", "cache", "io", "nn", "train", "data.py", "method.py", "splits.py", "report/evaluation.py",
              "report/metrics.py", "run/job.py", "run/environment.py")
MAX_FILES = 2000  # a plugin "package" that is really a whole home folder is refused, not hashed for minutes
SUFFIXES = (".py", ".toml")
HASH = re.compile(r"[0-9a-f]{0,12}(\+[0-9a-f]{12})?")  # a stored method or core hash ("a+b": resumed under two)


def is_hash(value: object) -> bool:
    """Whether a stored code hash is one this module writes (hex only: inert on a terminal or in a sheet)."""
    return isinstance(value, str) and HASH.fullmatch(value) is not None


def file_digest(path: Path) -> str:
    """A Python file's canonical syntax tree without docstrings (whitespace, comments and docs do not
    count); any other file's bytes."""
    data = path.read_bytes()
    if path.suffix == ".py":
        try:
            tree = ast.parse(data)
        except (SyntaxError, ValueError):
            pass
        else:
            data = repr(_canonical(tree)).encode()
    return hashlib.sha256(data).hexdigest()


def _canonical(node: Any) -> Any:
    """A syntax tree as nested tuples of node names and their non-empty fields, docstrings left out:
    fields a newer Python adds empty (``type_params``) or leaves out when empty do not count."""
    if isinstance(node, ast.AST):
        fields = []
        for name in node._fields:
            value = getattr(node, name, None)
            if name == "body" and isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                value = _without_docstring(value)
            if value is None or (isinstance(value, list) and not value):
                continue
            fields.append((name, _canonical(value)))
        return (type(node).__name__, tuple(fields))
    if isinstance(node, list):
        return tuple(_canonical(item) for item in node)
    return repr(node)


def _without_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    first = body[0] if body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return body[1:]
    return body


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
    datasets = _module_file("sslbench.datasets")  # the dataset readers and the phantoms
    if datasets is not None:
        files += sorted(datasets.parent.rglob("*.py"))
    return digest_files((f for f in files if "__pycache__" not in f.parts), root.parent)


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


def _root(module: str) -> Path | None:
    """The folder a module is imported from (where its top-level package or module lies)."""
    top = _module_file(module.split(".")[0])
    if top is None:
        return None
    return top.parent.parent if top.name == "__init__.py" else top.parent


def _installed(path: Path) -> bool:
    """Whether a file belongs to an installed library or the standard library, not to a user's code."""
    if {"site-packages", "dist-packages"} & set(path.parts):
        return True
    stdlib = sysconfig.get_paths().get("stdlib")
    return bool(stdlib) and path.is_relative_to(Path(stdlib).resolve())


def _package_folder(module: str, path: Path) -> tuple[Path, str] | None:
    """The folder that is the method's code as a whole, and its package's name: a built-in's
    sub-package (``methods/mona/``) or a plugin's top-level package (``my_lab/``); None for a single
    module (``methods/mt.py``, a plugin ``fixseg.py``) or a namespace package (no ``__init__.py``)."""
    parts = module.split(".")
    if parts[:2] == ["sslbench", "methods"]:
        methods_root = _module_file("sslbench.methods")
        if methods_root is None or path.parent == methods_root.parent:
            return None
        return path.parent, module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    if parts[0] == "sslbench" or len(parts) == 1:
        return None
    top = _module_file(parts[0])
    return (top.parent, parts[0]) if top is not None and top.name == "__init__.py" else None


def _name_in(package: str, folder: Path, file: Path) -> str:
    """The module name of a file of a package's folder."""
    parts = list(file.relative_to(folder).with_suffix("").parts)
    return ".".join([package, *(parts[:-1] if parts[-1] == "__init__" else parts)])


def _imports(path: Path, module: str) -> set[str]:
    """Modules a file imports (relative imports resolved against ``module``), top level or not, and
    the packages above them."""
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
    parts = [name.split(".") for name in out if name]
    return {".".join(p[:k]) for p in parts for k in range(1, len(p) + 1)}  # importing a.b runs a/__init__ too


def _own_code(module: str, origin: str, path: Path) -> bool:
    """Whether ``module`` (imported by the method's ``origin``, found at ``path``) is the method's code:
    another module of the built-in methods' package (not the package's ``__init__``, which imports
    them all), or for a plugin a module under the folder the plugin is imported from that is not an
    installed library."""
    if origin.startswith("sslbench.methods."):
        return module.startswith("sslbench.methods.")
    if module.split(".")[0] == "sslbench" or _installed(path):
        return False
    root = _root(origin)
    return root is not None and path.is_relative_to(root)


def _folder_files(folder: Path) -> list[Path]:
    found = []
    for p in folder.rglob("*"):
        rel = p.relative_to(folder).parts
        if p.suffix in SUFFIXES and p.is_file() and not any(part.startswith((".", "__pycache__")) for part in rel):
            found.append(p.resolve())
            if len(found) > MAX_FILES:
                raise BenchError(f"{folder}: more than {MAX_FILES} source files in a method's package; keep the "
                                 "method in a package of its own")
    return found


def method_files(cls: type) -> list[Path]:
    """The files whose code is ``cls``'s (see the module docstring)."""
    own = [k.__module__ for k in cls.__mro__ if k.__module__ != "sslbench.method"
           and k.__module__.split(".")[0] not in ("builtins", "torch", "typing", "abc")]
    files: dict[Path, str] = {}
    for module in dict.fromkeys(own):
        path = _module_file(module)
        if path is None:
            continue
        package = _package_folder(module, path)
        if package is None:
            files.setdefault(path, module)
            continue
        folder, name = package
        for file in _folder_files(folder):
            files.setdefault(file, _name_in(name, folder, file))
    todo = [(module, path) for path, module in files.items() if path.suffix == ".py"]
    done: set[Path] = set()
    while todo:  # follow the imports of every Python file hashed, file by file
        module, path = todo.pop()
        if path in done:
            continue
        done.add(path)
        for name in _imports(path, module):
            target = _module_file(name)  # None for a name that is no module (a class imported from one)
            if target is not None and target not in done and _own_code(name, module, target):
                files.setdefault(target, name)
                todo.append((name, target))
    return sorted(files)


@functools.lru_cache(maxsize=None)
def method_code(cls: type) -> str:
    """The method's hash (see the module docstring), once per class and process; "" for a class
    without a source file."""
    files = method_files(cls)
    if not files:
        return ""
    return digest_files(files, Path(*_common(files)))


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
