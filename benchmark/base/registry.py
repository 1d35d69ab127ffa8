"""Name -> class registries with built-ins, entry-point plugins and `--plugin module` imports.

Built-ins register with a decorator when their module is imported. Third-party packages declare an
entry point in the group ``sslbench.methods`` (or ``sslbench.datasets``); those are loaded lazily,
once, the first time a name is looked up or listed. Unpackaged research code is imported by module
path (``bench run --plugin my_lab.my_method`` or ``BENCH_PLUGINS=mod1,mod2``). A name registered
twice, from any two sources, is an error that names both sources.

An entry point's object is recorded with its distribution's name and version (also when its module
registers it with the decorator on import), and an object the entry point exposes without the
decorator is registered under the entry point's name (``adopt`` gives it that name).
"""
from __future__ import annotations

import difflib
import importlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Generic, TypeVar

from sslbench.base.errors import RegistryError

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    source: str  # "built-in", "plugin <dist> <version>" or "module <path>"

    @property
    def class_path(self) -> str:
        return f"{getattr(self.obj, '__module__', '?')}.{getattr(self.obj, '__qualname__', '?')}"


class Registry(Generic[T]):
    def __init__(self, kind: str, entry_point_group: str, builtin_package: str,
                 adopt: Callable[[str, T], None] | None = None, hint: str = "") -> None:
        self.kind = kind
        self.hint = hint  # what an unknown name's error adds (how to make a plugin visible)
        self.adopt = adopt  # names an entry point's object that no decorator registered
        self.group = entry_point_group
        self.builtin_package = builtin_package
        self._entries: dict[str, Entry[T]] = {}
        self._builtins_loaded = False
        self._entry_points_loaded = False
        self._current_source: str | None = None

    # ---------------------------------------------------------------- registration
    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@METHODS.register("mt")``."""

        def deco(obj: T) -> T:
            self.add(name, obj, self._source_for(obj))
            return obj

        return deco

    def add(self, name: str, obj: T, source: str) -> None:
        if name in self._entries:
            old = self._entries[name]
            if old.obj is obj:
                return
            raise RegistryError(
                f"{self.kind} name '{name}' is registered twice: by {old.class_path} ({old.source}) "
                f"and by {Entry(name, obj, source).class_path} ({source})"
            )
        self._entries[name] = Entry(name, obj, source)

    def _source_for(self, obj: T) -> str:
        if self._current_source is not None:
            return self._current_source
        module = getattr(obj, "__module__", "")
        if module.startswith(self.builtin_package):
            return "built-in"
        return f"module {module}"

    # ---------------------------------------------------------------- discovery
    def _load_builtins(self) -> None:
        if not self._builtins_loaded:
            self._builtins_loaded = True
            importlib.import_module(self.builtin_package)

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in metadata.entry_points(group=self.group):
            dist = getattr(ep, "dist", None)
            source = f"plugin {dist.name} {dist.version}" if dist else f"plugin {ep.value}"
            self._current_source = source  # decorators run while the entry point's module imports
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin must not break the suite
                log.warning("skipping %s entry point %r from %s: %s", self.kind, ep.name, source, exc)
                continue
            finally:
                self._current_source = None
            if ep.name not in self._entries and self.adopt is not None:
                self.adopt(ep.name, obj)
            self.add(ep.name, obj, source)

    def load_plugin_module(self, module: str) -> None:
        """Import a module whose decorators register plugins (``--plugin``). The working directory is
        searched too (after the installed packages), so ``--plugin my_lab.my_method`` works from the
        folder that holds ``my_lab/``, as pytest finds a project's modules."""
        self._load_builtins()
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.append(os.getcwd())
        self._current_source = f"module {module}"
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise RegistryError(f"cannot import plugin module '{module}': {exc} (--plugin takes a dotted module "
                                f"path importable from the working directory, e.g. my_lab.my_method run from the "
                                f"folder that holds my_lab/; not a file path)") from exc
        except SyntaxError as exc:  # the module's own code: where, in one line
            raise RegistryError(f"plugin module '{module}': {exc.filename}:{exc.lineno}: {exc.msg}") from exc
        except Exception as exc:  # noqa: BLE001 - anything its import raises is the plugin's error, not ours
            where = _innermost_frame(exc)
            raise RegistryError(f"plugin module '{module}' failed on import: {type(exc).__name__}: "
                                f"{str(exc)[:200]}{f' ({where})' if where else ''}") from exc
        finally:
            self._current_source = None

    def load_env_plugins(self, env_var: str = "BENCH_PLUGINS") -> None:
        for module in filter(None, (m.strip() for m in os.environ.get(env_var, "").split(","))):
            self.load_plugin_module(module)

    def _ensure_loaded(self) -> None:
        self._load_builtins()
        self._load_entry_points()

    # ---------------------------------------------------------------- lookup
    def get(self, name: str) -> T:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        self._ensure_loaded()
        if name not in self._entries:
            known = ", ".join(sorted(self._entries)) or "none"
            close = difflib.get_close_matches(str(name), sorted(self._entries), n=1, cutoff=0.6)
            guess = f"; did you mean '{close[0]}'?" if close else ""
            raise RegistryError(f"unknown {self.kind} '{name}'{guess} (known: {known})"
                                + (f"; {self.hint}" if self.hint else ""))
        return self._entries[name]

    def names(self) -> list[str]:
        self._ensure_loaded()
        return list(self._entries)

    def __iter__(self) -> Iterator[Entry[T]]:
        self._ensure_loaded()
        return iter(list(self._entries.values()))

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return name in self._entries


def _innermost_frame(exc: BaseException) -> str:
    """``file:line`` where an exception was raised, for a one-line error."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb is not None else ""
