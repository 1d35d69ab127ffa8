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


PLUGIN = '''
from sslbench.method import register_method
from sslbench.methods.supervised import UNetL


@register_method("ep-decorated")
class Decorated(UNetL):
    paper_name = "EP-Decorated"


class Plain(UNetL):
    """Exposed by an entry point without the decorator."""
'''


def test_entry_points_record_their_distribution_and_name_plain_classes(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    import sys

    from sslbench.method import METHODS

    (tmp_path / "epplug_mod.py").write_text(PLUGIN)
    info = tmp_path / "epplug-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: epplug\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(
        "[sslbench.methods]\nep-decorated = epplug_mod:Decorated\nep-plain = epplug_mod:Plain\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(METHODS, "_entry_points_loaded", False)
    monkeypatch.setattr(METHODS, "_entries", dict(METHODS._entries))    # restored afterwards
    try:
        decorated, plain = METHODS.entry("ep-decorated"), METHODS.entry("ep-plain")
        assert decorated.source == "plugin epplug 1.2.3" and plain.source == "plugin epplug 1.2.3"
        assert plain.obj.name == "ep-plain" and plain.obj.paper_name == "ep-plain"
        assert decorated.obj.paper_name == "EP-Decorated"
    finally:
        sys.modules.pop("epplug_mod", None)


def test_bench_plugins_reach_jobs_workers(tmp_path, monkeypatch, cache_dir) -> None:  # noqa: ANN001
    from .conftest import TINY_RUN
    from .test_cli import bench

    (tmp_path / "envplug_mod.py").write_text(
        "from sslbench.method import register_method\nfrom sslbench.methods.supervised import UNetL\n\n\n"
        "@register_method('env-plug')\nclass EnvPlug(UNetL):\n    paper_name = 'EnvPlug'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("BENCH_PLUGINS", "envplug_mod")
    code, _, err = bench("run", "--methods", "env-plug,unet-l", "--jobs", "2", "--results", str(tmp_path / "r"),
                         "--quiet", "--no-table", *TINY_RUN)
    assert code == 0, err
    assert "[2/2]" in err and "FAILED" not in err


def test_bench_methods_name_lists_every_key_with_its_default_and_doc() -> None:
    """``bench methods NAME`` documents each method's keys (today's docs come from the config
    dataclasses' comments): every built-in key has one."""
    from click.testing import CliRunner

    from sslbench.base.config import field_docs
    from sslbench.cli import main

    undocumented = {e.name: [k for k, doc in field_docs(e.obj.Config).items() if not doc] for e in METHODS}
    assert not {k: v for k, v in undocumented.items() if v}
    out = CliRunner().invoke(main, ["methods", "mt"])
    assert out.exit_code == 0, out.output
    assert "| method.ema_decay" in out.output and "0.99" in out.output and "the teacher's EMA decay" in out.output
    assert "method.eval_net in student, teacher" in out.output
    bcp = CliRunner().invoke(main, ["methods", "bcp"]).output
    assert "[profile.ssl4mis.train]" in bcp and "pretrain_iterations = 10000" in bcp
    bad = CliRunner().invoke(main, ["methods", "no-such"])
    assert bad.exit_code == 2 and "unknown method" in bad.output
