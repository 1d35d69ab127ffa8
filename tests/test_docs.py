"""The documentation holds: every relative link in README and docs/ resolves, every `bench ...` line of
README's command list parses (its subcommand's options accept it), and both worked examples of
docs/adding-a-method.md pass `bench check`."""
from __future__ import annotations

import os
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


@pytest.mark.parametrize("name", ["weak-strong", "pre-teacher"])
def test_the_worked_examples_register_and_pass_the_conformance_kit(name: str, tmp_path: Path) -> None:
    """Each worked example of docs/adding-a-method.md, saved where its first line says, passes
    `bench check NAME --plugin my_lab.<module>` from the folder that holds my_lab/."""
    from .test_cli import bench

    text = (ROOT / "docs" / "adding-a-method.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "register_method" in b]
    assert len(blocks) == 2
    code = next(b for b in blocks if f'@register_method("{name}")' in b)
    path = code.splitlines()[0].removeprefix("# ").strip()           # my_lab/weak_strong.py
    (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / path).write_text(code)
    module = path.removesuffix(".py").replace("/", ".")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        status, out, err = bench("check", name, "--plugin", module)
        assert status == 0, out + err
        assert out.splitlines()[-1].startswith(f"{name}: all ") and "FAILED" not in out
    finally:
        os.chdir(cwd)
        METHODS._entries.pop(name, None)
        for key in [k for k in sys.modules if k == "my_lab" or k.startswith("my_lab.")]:
            sys.modules.pop(key)
        sys.path[:] = [p for p in sys.path if p != str(tmp_path)]


def test_the_gpu_checks_on_a_cpu_run_on_the_worked_example(tmp_path: Path) -> None:
    """docs/adding-a-method.md's HostReads snippet runs as printed against the pre-teacher
    example (saved where its first line says) and finds nothing to report."""
    import subprocess

    text = (ROOT / "docs" / "adding-a-method.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    example = next(b for b in blocks if '@register_method("pre-teacher")' in b)
    snippet = next(b for b in blocks if "HostReads" in b)
    path = tmp_path / example.splitlines()[0].removeprefix("# ").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(example)
    done = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "", done.stdout           # the example reads nothing back
