"""The core's layers (see ``sslbench/__init__.py``): each module imports only its own layer and the
ones below it; plugins (methods, datasets) import only the contracts and what is below them."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RANK = {  # module prefix -> layer (higher may import lower, never the reverse)
    "sslbench.base": 0, "sslbench.io": 1, "sslbench.nn": 1, "sslbench.method": 2, "sslbench.data": 2, "sslbench.cache": 2, "sslbench.splits": 2,
    "sslbench.methods": 3, "sslbench.datasets": 3, "sslbench.train": 4, "sslbench.testing": 4,
    "sslbench.report": 5, "sslbench.run": 6, "sslbench.cli": 7,
}
FOLDERS = {"benchmark": "sslbench", "methods": "sslbench.methods", "datasets": "sslbench.datasets"}


def layer(module: str) -> int | None:
    best = max((p for p in RANK if module == p or module.startswith(p + ".")), key=len, default=None)
    return RANK[best] if best else None


def modules() -> dict[str, Path]:
    out = {}
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join([package, *[p for p in parts if p != "__init__"]])
            out[name] = path
    return out


def imports(name: str, path: Path, runtime: bool = False) -> list[str]:
    """The project modules a module imports, anywhere in its body (function-level imports too).
    ``runtime``: what it imports when it runs: ``from X import Y`` as X and X.Y (Y may be a module),
    imports under ``if TYPE_CHECKING:`` left out (the cycle test); otherwise every import statement's
    module (the layer test, which holds type-only imports to the layers too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if runtime and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if node.level or module.startswith("sslbench"):
                found.append(module)
                if runtime:
                    found.extend(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.extend(a.name for a in node.names if a.name.startswith("sslbench"))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def test_no_module_imports_a_higher_layer() -> None:
    upward = []
    for name, path in modules().items():
        own = layer(name)
        if own is None:
            continue
        for target in imports(name, path):
            other = layer(target)
            if other is not None and other > own:
                upward.append(f"{name} (layer {own}) imports {target} (layer {other})")
    assert not upward, "\n".join(upward)


def test_the_layer_table_covers_every_module() -> None:
    unplaced = [name for name in modules() if layer(name) is None and name != "sslbench"]
    assert not unplaced, unplaced


def test_old_flat_import_paths_are_gone() -> None:
    """No compatibility layer before a first release: the former flat modules do not import."""
    import importlib

    import pytest

    for old in ("sslbench.losses", "sslbench.heads", "sslbench.trainer"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(old)


def _graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports when it runs; a name that is not a module resolves to
    the longest module path above it (a package's ``__init__`` for a name it defines)."""
    found = modules()
    graph = {}
    for name, path in found.items():
        targets = set()
        for target in imports(name, path, runtime=True):
            while target and target not in found:
                target = target.rpartition(".")[0]
            if target and target != name:
                targets.add(target)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each import cycle once, as the path that closes it (depth-first search, colours)."""
    state: dict[str, int] = {}
    found = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append(path[path.index(nxt):] + [node, nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return found


def test_no_import_cycles_even_inside_functions() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}), "the cycle finder must find a planted cycle"
    assert not cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()})
    found = cycles(_graph())
    assert not found, "\n".join(" -> ".join(c) for c in found)
