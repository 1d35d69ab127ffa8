"""The documentation holds: every relative link in README and docs/ resolves, every `bench ...` line of
README's command list parses (its subcommand's options accept it), and the plugin example of
docs/adding-a-method.md registers and passes the conformance kit."""
from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import click
import pytest

from sslbench.cli import main
from sslbench.method import METHODS

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_every_relative_link_resolves() -> None:
    broken = []
    for page in PAGES:
        text = page.read_text()
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#", 1)[0]).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def test_readme_is_a_front_door() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150, len(lines)
    setup = next(i for i, line in enumerate(lines) if line.startswith("## Set up"))
    assert setup < 15                                   # set-up right after three sentences


def _readme_commands() -> list[list[str]]:
    """The `bench ...` lines of README's set-up and command sections (comments stripped)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Set up"):text.index("## Methods")]
    out = []
    for line in section.splitlines():
        line = line.strip().split("  #", 1)[0].strip()
        for part in line.split("&&"):
            part = part.strip()
            if part.startswith("bench"):
                out.append(shlex.split(part)[1:])
    return out


def test_readme_commands_parse() -> None:
    commands = _readme_commands()
    assert len(commands) >= 15
    for argv in commands:
        group = main
        ctx = group.make_context("bench", list(argv), resilient_parsing=True)
        name, cmd, rest = group.resolve_command(ctx, list(argv))
        assert cmd is not None, argv
        try:
            cmd.make_context(name, rest)                # parses the options; runs nothing
        except click.BadParameter as exc:
            if "does not exist" not in str(exc):        # an example's file (cluster.toml) is the user's
                pytest.fail(f"bench {' '.join(argv)}: {exc}")
        except click.UsageError as exc:
            pytest.fail(f"bench {' '.join(argv)}: {exc}")
        except click.exceptions.Exit:
            pass


def test_the_plugin_example_registers_and_passes_the_conformance_kit(tmp_path: Path) -> None:
    from sslbench.testing import check_method

    text = (ROOT / "docs" / "adding-a-method.md").read_text()
    code = next(block for block in re.findall(r"```python\n(.*?)```", text, re.S) if "register_method" in block)
    module = tmp_path / "doc_example_method.py"
    module.write_text(code)
    sys.path.insert(0, str(tmp_path))
    try:
        METHODS.load_plugin_module("doc_example_method")
        check_method("my-method", report=None)
        assert METHODS.get("my-method").Config.__name__ == "MyConfig"
    finally:
        sys.path.remove(str(tmp_path))
        METHODS._entries.pop("my-method", None)
        sys.modules.pop("doc_example_method", None)
