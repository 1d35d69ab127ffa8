"""Every option of every view command is honoured or refused, never silently ignored (Views II).

Each scenario runs a command without and with one option on the same records: the option must change
what the command produces (its output, its error, the files it writes) or be refused with one
``error:`` line and exit code 2. The walk fails when a view command has an option no scenario
exercises, so a new option comes with its scenario."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from .test_figures_protocol import _Phantom
from .test_views import fake_run

VIEWS = ("status", "table", "report", "export", "plot")

# (command, arguments without the option, the option's arguments, "acts" or "refused"); {R} is the
# results folder, {R2} one with a subset of its runs, {OUT} a fresh output folder per invocation, {KEY}
# the profile key of the 200-iteration schedule
SCENARIOS: list[tuple[str, tuple[str, ...], tuple[str, ...], str]] = [
    ("status", (), ("--format", "json"), "acts"),
    ("status", (), ("--results", "{R2}"), "acts"),
    ("status", (), ("--plugin", "no_such_module"), "refused"),
    ("table", (), ("--format", "latex"), "acts"),
    ("table", (), ("--dataset", "acdc"), "acts"),
    ("table", (), ("--profile", "{KEY}"), "acts"),
    ("table", (), ("--methods", "mt"), "acts"),
    ("table", (), ("--per-class",), "acts"),
    ("table", (), ("--checkpoint", "last"), "acts"),
    ("table", (), ("--ci", "95"), "acts"),
    ("table", ("--cost",), ("--ci", "95"), "refused"),
    ("table", (), ("--keys",), "acts"),
    ("table", (), ("--cost",), "acts"),
    ("table", (), ("--table", "1", "--dataset", "acdc"), "acts"),
    ("table", ("--table", "1", "--dataset", "acdc"), ("--vs-paper",), "acts"),
    ("table", ("--table", "1", "--dataset", "acdc", "--vs-paper"), ("--paper-dataset", "lits"), "acts"),
    ("table", (), ("--vs-paper",), "refused"),
    ("table", (), ("--paper-dataset", "acdc"), "refused"),
    ("table", (), ("-o", "{OUT}/t.md"), "acts"),
    ("table", (), ("--results", "{R2}"), "acts"),
    ("table", (), ("--plugin", "no_such_module"), "refused"),
    ("report", ("-o", "{OUT}/rep"), ("--results", "{R2}"), "acts"),
    ("report", ("-o", "{OUT}/rep"), ("-o", "{OUT}/other"), "acts"),
    ("report", ("-o", "{OUT}/rep"), ("--plugin", "no_such_module"), "refused"),
    ("export", ("-o", "{OUT}/a.csv"), ("--results", "{R2}"), "acts"),
    ("export", ("-o", "{OUT}/a.csv"), ("-o", "{OUT}/b.csv"), "acts"),
    ("export", ("-o", "{OUT}/a.csv"), ("--plugin", "no_such_module"), "refused"),
    ("plot", ("ratio", "-o", "{OUT}/f"), ("--dataset", "acdc"), "acts"),
    ("plot", ("ratio", "-o", "{OUT}/f"), ("--profile", "{KEY}"), "acts"),
    ("plot", ("ratio", "-o", "{OUT}/f"), ("--methods", "mt"), "acts"),
    ("plot", ("ratio", "-o", "{OUT}/f"), ("--checkpoint", "last"), "acts"),
    ("plot", ("ratio", "-o", "{OUT}/f"), ("--results", "{R2}"), "acts"),
    ("plot", ("ratio", "-o", "{OUT}/f"), ("--ratio", "5"), "refused"),
    ("plot", ("ratio", "-o", "{OUT}/f"), ("--seed", "1"), "refused"),
    ("plot", ("ratio", "-o", "{OUT}/f"), ("--case", "case0"), "refused"),
    ("plot", ("ratio", "-o", "{OUT}/f"), ("--slices", "1"), "refused"),
    ("plot", ("ratio", "-o", "{OUT}/f"), ("--cache", "{OUT}/cache"), "refused"),
    ("plot", ("ratio", "-o", "{OUT}/f"), ("--param", "method.consistency"), "refused"),
    ("plot", ("ratio", "-o", "{OUT}/f"), ("--keys", "loss"), "refused"),
    ("plot", ("ratio", "-o", "{OUT}/f"), ("--plugin", "no_such_module"), "refused"),
    ("plot", ("classes", "-o", "{OUT}/f", "--dataset", "acdc"), ("--ratio", "5"), "acts"),
    ("plot", ("qualitative", "--dataset", "acdc", "-o", "{OUT}/f"), ("--ratio", "5"), "acts"),
    ("plot", ("qualitative", "--dataset", "acdc", "-o", "{OUT}/f"), ("--seed", "1"), "acts"),
    ("plot", ("qualitative", "--dataset", "acdc", "-o", "{OUT}/f"), ("--case", "case1"), "acts"),
    ("plot", ("qualitative", "--dataset", "acdc", "-o", "{OUT}/f"), ("--slices", "1"), "acts"),
    ("plot", ("qualitative", "--dataset", "acdc", "-o", "{OUT}/f"), ("--cache", "{OUT}/elsewhere"), "acts"),
    ("plot", ("param", "--param", "method.consistency", "-o", "{OUT}/f"), ("--methods", "unet-l"), "acts"),
    ("plot", ("curves", "--dataset", "acdc", "-o", "{OUT}/f"), ("--keys", "loss"), "acts"),
    ("plot", ("paired", "--methods", "unet-l,mt", "--ratio", "5", "-o", "{OUT}/f"), ("--checkpoint", "last"), "acts"),
]


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """ACDC (MT at 5 and 10 %, UNet-L at 5 %, a tagged sweep point, saved predictions for two cases
    and two seeds) and phantom runs (one on a 200-iteration schedule); {R2} holds one phantom run."""
    root = tmp_path_factory.mktemp("walk") / "results"
    for seed in (0, 1):
        for method, value in (("mt", 60), ("unet-l", 50)):
            folder = fake_run(root, "acdc", method, 5, seed, value + seed, paper_name=method.upper(),
                              last_dsc=value - 5 + seed)
            (folder / "predictions").mkdir()
            for case in ("case0", "case1"):
                np.save(folder / "predictions" / f"{case}.npy", _Phantom().volume(case)[1])
        fake_run(root, "acdc", "mt", 10, seed, 70 + seed, paper_name="MT")
        fake_run(root, "acdc", "mt", 5, seed, 66 + seed, paper_name="MT", tag="w=0.5",
                 overrides=("method.consistency=0.5",))
        fake_run(root, "synthetic-cardiac", "mt", 5, seed, 40 + seed, paper_name="MT", tag="short", iterations=200,
                 overrides=("train.iterations=200",))
    fake_run(root, "synthetic-cardiac", "mt", 5, 0, 55, paper_name="MT")
    subset = root.parent / "subset"
    fake_run(subset, "synthetic-cardiac", "mt", 5, 0, 55, paper_name="MT")
    return root, subset


def _invoke(args: tuple[str, ...], out: Path) -> tuple[int, str, str, tuple[tuple[str, str], ...]]:
    """Exit code, stdout, stderr and what was written under ``out`` (names and contents' hashes; the
    report's time stamp and figure images aside), with paths made relative."""
    from sslbench.cli import main

    result = CliRunner().invoke(main, list(args))
    files = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.suffix in (".png", ".pdf"):
            data = str(len(data) // 2048).encode()  # an image: its size, not its metadata
        if path.name == "index.html":
            data = b"\n".join(line for line in data.splitlines() if b"generated" not in line.lower())
        files.append((str(path.relative_to(out)), hashlib.sha256(data).hexdigest()))
    text = lambda s: s.replace(str(out), "OUT")  # noqa: E731
    return result.exit_code, text(result.stdout), text(result.stderr), tuple(files)


@pytest.mark.parametrize(("command", "base", "option", "expect"), SCENARIOS,
                         ids=[f"{c}{'-' + b[0] if b else ''}{o[0]}" for c, b, o, _ in SCENARIOS])
def test_an_option_is_honoured_or_refused(records: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          command: str, base: tuple[str, ...], option: tuple[str, ...],
                                          expect: str) -> None:
    import sslbench.cache
    from sslbench.report.frame import run_frame

    root, subset = records

    def prepare(name: str, *args: object, cache_root: Path | None = None, **kwargs: object) -> _Phantom:
        if cache_root is not None and cache_root.name == "elsewhere":  # --cache reaches the data layer
            from sslbench.base.errors import DataError
            raise DataError(f"dataset '{name}' is not prepared in {cache_root}")
        return _Phantom()

    monkeypatch.setattr(sslbench.cache, "prepare", prepare)

    def run(args: tuple[str, ...], name: str) -> tuple[int, str, str, tuple[tuple[str, str], ...]]:
        out = tmp_path / name
        out.mkdir()
        key = next(k for k in run_frame(root).profile_key if "+" in k)
        filled = tuple(a.replace("{R2}", str(subset)).replace("{R}", str(root)).replace("{OUT}", str(out))
                       .replace("{KEY}", key) for a in args)
        with_root = filled if "--results" in filled else (*filled, "--results", str(root))
        return _invoke((command, *with_root), out)

    without = run(base, "without")
    given = run((*base, *option), "with")
    if expect == "refused":
        errors = [line for line in given[2].splitlines() if line.startswith("error:")]
        assert given[0] == 2 and len(errors) == 1 and given[1] == "", given[2]
        assert option[0] in errors[0] or "no_such_module" in errors[0] or "needs" in errors[0], errors
    else:
        assert without[0] == 0, without[2]
        assert given != without, f"{command} {' '.join(option)} changed nothing"


def test_every_option_of_every_view_command_has_a_scenario() -> None:
    from sslbench.cli import main

    walked: dict[str, set[str]] = {c: set() for c in VIEWS}
    for command, base, option, _ in SCENARIOS:
        walked[command] |= {a for a in (*base, *option) if a.startswith("-")}
    for command in VIEWS:
        params = main.commands[command].params
        flags = {p.opts[0] if not p.opts[0].startswith("--") or len(p.opts) == 1 else p.opts[-1]
                 for p in params if isinstance(p.opts, list) and p.param_type_name == "option"}
        names = {o for p in params if p.param_type_name == "option" for o in p.opts}
        missing = sorted(f for f in flags if not (set(p for p in names if p in walked[command]) & {f})
                         and not any(o in walked[command] for p in params for o in p.opts if f in p.opts))
        assert not missing, f"bench {command}: no scenario walks {', '.join(missing)}"
