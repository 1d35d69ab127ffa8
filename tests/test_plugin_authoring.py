"""What a plugin author meets: ``--plugin`` finds modules beside the working directory, a failed run
keeps its whole traceback (``<run>/error.log``, named in the failure line and ``failed.json``) and
``bench run --debug`` prints it; ``check_method`` says what it checked."""
from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from sslbench.method import METHODS

from .conftest import TINY_RUN
from .test_cli import bench

PLUGIN = '''
from sslbench.method import register_method
from sslbench.methods.supervised import UNetL


def helper_that_breaks(batch):
    raise ValueError("boom in my plugin")


@register_method("my-broken")
class MyBroken(UNetL):
    paper_name = "MyBroken"

    def training_step(self, batch, step):
        return helper_that_breaks(batch)
'''


@pytest.mark.slow
def test_a_plugin_beside_the_working_directory_and_its_traceback(tmp_path: Path, cache_dir: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_lab").mkdir()
    (tmp_path / "my_lab" / "__init__.py").write_text("")
    (tmp_path / "my_lab" / "my_method.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.chdir(tmp_path)
    # as the installed `bench` script runs: neither "" nor the working directory on sys.path
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", os.getcwd(), str(tmp_path))])
    try:
        code, _, err = bench("run", "--plugin", "my_lab.my_method", "--methods", "my-broken", "--results",
                             str(tmp_path / "r"), "--quiet", "--no-table", "--debug", *TINY_RUN)
    finally:
        METHODS._entries.pop("my-broken", None)
        for name in ("my_lab", "my_lab.my_method"):
            sys.modules.pop(name, None)
    assert code == 1
    error_log = next((tmp_path / "r").rglob("error.log"))
    assert f"(traceback: {error_log})" in err                           # named in the failure line
    trace = error_log.read_text()
    assert "Traceback" in trace and "helper_that_breaks" in trace and "boom in my plugin" in trace
    assert "helper_that_breaks" in err                                  # --debug printed it
    failed = json.loads((error_log.parent / "failed.json").read_text())
    assert failed["traceback"] == str(error_log) and "boom in my plugin" in failed["error"]


def test_check_method_says_what_it_checked() -> None:
    from sslbench.testing import check_method

    lines: list[str] = []
    check_method("unet-l", report=lines.append)
    checks = ["losses", "gradients", "predict", "resume", "determinism", "pretrain", "eval-nets", "teachers",
              "validated", "autocast"]
    assert [line.split()[1] for line in lines[:-1]] == checks * 2   # on slices, then on LA's 3-D track
    assert all(line.startswith("ok ") for line in lines[:-1])
    assert all(" in 3-D: " in line for line in lines[len(checks):-1])
    assert lines[-1] == "unet-l: all 20 conformance checks passed (10 in 2-D, 10 in 3-D)"
