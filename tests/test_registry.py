"""Registry: built-ins, entry points (lazy, broken ones skipped), --plugin modules, name clashes."""
from __future__ import annotations

import sys
import textwrap
from importlib import metadata

import pytest

from sslbench.base.errors import RegistryError
from sslbench.method import METHODS, SSLMethod
from sslbench.base.registry import Registry


def test_builtins_listed_with_source() -> None:
    names = METHODS.names()
    assert {"unet-f", "unet-l", "mt"} <= set(names)
    assert METHODS.entry("mt").source == "built-in"
    assert METHODS.get("mt").paper_name == "MT"


def test_unknown_name_is_a_clear_error() -> None:
    with pytest.raises(RegistryError, match="unknown method 'nope'"):
        METHODS.get("nope")


def test_clash_names_both_sources() -> None:
    reg: Registry[type] = Registry("method", "sslbench.test-none", "sslbench.methods")

    class A: ...

    class B: ...

    reg.add("x", A, "built-in")
    with pytest.raises(RegistryError, match="registered twice"):
        reg.add("x", B, "plugin other 1.0")


class FakeEntryPoint:
    def __init__(self, name: str, obj: object, fail: bool = False) -> None:
        self.name, self.obj, self.fail = name, obj, fail
        self.value = f"fake:{name}"
        self.dist = type("D", (), {"name": "fake-dist", "version": "9.9"})()

    def load(self) -> object:
        if self.fail:
            raise ImportError("broken plugin")
        return self.obj


def test_entry_points_loaded_lazily_and_broken_ones_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    class Ext(SSLMethod):
        paper_name = "Ext"

    eps = [FakeEntryPoint("ext-method", Ext), FakeEntryPoint("broken", None, fail=True)]
    monkeypatch.setattr(metadata, "entry_points", lambda group: eps if group == "sslbench.test-ep" else [])
    reg: Registry[type] = Registry("method", "sslbench.test-ep", "sslbench.methods")
    assert reg.entry("ext-method").source == "plugin fake-dist 9.9"
    assert "broken" not in reg.names()


def test_plugin_module(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    (tmp_path / "my_lab_plugin.py").write_text(textwrap.dedent('''
        from sslbench.method import register_method
        from sslbench.methods.supervised import UNetL

        @register_method("my-unet")
        class MyUNet(UNetL):
            paper_name = "MyUNet"
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        METHODS.load_plugin_module("my_lab_plugin")
        assert METHODS.entry("my-unet").source == "module my_lab_plugin"
        with pytest.raises(RegistryError, match="cannot import plugin module"):
            METHODS.load_plugin_module("no_such_module_xyz")
    finally:
        METHODS._entries.pop("my-unet", None)
        sys.modules.pop("my_lab_plugin", None)
