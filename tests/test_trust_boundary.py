"""Reliability III: what the tool prints or writes for another program stays inert whatever the names
on disk hold (terminals, spreadsheets, markdown and LaTeX), and a run is counted once under its own
row. Hostile names are drawn per class (control characters, formula prefixes, markup metacharacters,
colliding names) from a seeded generator, so each class is exercised, not only one input."""
from __future__ import annotations

import csv
import io
import json
import random
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from .test_views import fake_run

CONTROLS = ["\x1b[2J", "\x1b]0;pwned\x07", "\x1b]52;c;cm0gLXJmIH4=\x07", "\r", "\x9b31m", "\x07", "\x00", "\x7f", "\x1b"]
FORMULAS = ["=", "+", "-", "@", "\t", "\r"]
MARKUP = ["|", "$x^2$", "\u27e6", "\u27e7", "}", "{", "\\", "%", "&", "<b>", "\n"]


def _draw(rng: random.Random, pool: list[str]) -> str:
    return rng.choice(["", "a"]) + "".join(rng.choice(pool) + rng.choice(["x", "1", "cmd|' /C calc'!A0"])
                                          for _ in range(rng.randint(1, 3)))


def _bench(*args: str) -> tuple[int, str, str]:
    from sslbench.cli import main

    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def _no_controls(text: str) -> bool:
    return not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", text)


@pytest.mark.parametrize("draw", range(6))
def test_control_characters_from_files_never_reach_the_terminal(tmp_path: Path, draw: int) -> None:
    rng = random.Random(draw)
    root = tmp_path / "r"
    fake_run(root, "synthetic-cardiac", "mt", 5, 0, 60)
    failed = root / "synthetic-cardiac" / "quick" / "unet-l" / "ratio-5" / "seed-0"
    failed.mkdir(parents=True)
    (failed / "config.json").write_text(json.dumps({"hash": "x", "spec": {"method": "unet-l", "overrides": [_draw(rng, CONTROLS)]}}))
    (failed / "failed.json").write_text(json.dumps({"error": _draw(rng, CONTROLS), "host": _draw(rng, CONTROLS)}))
    locked = failed.parent / "seed-1"
    locked.mkdir()
    (locked / "config.json").write_text(json.dumps({"hash": "x"}))
    (locked / ".lock").write_text(json.dumps({"host": _draw(rng, CONTROLS), "pid": 1, "since": _draw(rng, CONTROLS)}))
    code, out, err = _bench("status", "--results", str(root))
    assert code == 0, err
    assert _no_controls(out) and _no_controls(err) and "\\x" in out
    assert len(out.splitlines()) == 5                       # header, three runs, summary: one line each


def test_bidirectional_overrides_are_shown_escaped() -> None:
    """A tag "evil\u202egnp.exe" would display as "evilexe.png": the override is printed as an escape."""
    from sslbench.base.printable import PrintableStream

    out = __import__("io").StringIO()
    PrintableStream(out).write("MT (evil\u202egnp.exe) \u2066x\u2069\n")
    assert out.getvalue() == "MT (evil\\u202egnp.exe) \\u2066x\\u2069\n"


def test_a_record_field_with_a_control_character_is_damaged() -> None:
    from sslbench.base.fields import FieldError, text

    for bad in CONTROLS:
        with pytest.raises(FieldError, match="control character"):
            text(f"MT{bad}", "paper_name")
    assert text("a\tb\nc", "error") == "a\tb\nc"


def _rename(folder: Path, case: str, cls: str) -> None:
    """Give a fake run's metrics files a hostile case id and class name."""
    for name in ("metrics.json", "metrics-last.json"):
        data = json.loads((folder / name).read_text())
        for i, entry in enumerate(data["metric_per_case"]):
            entry["case"] = f"{case}{i}"
            entry["metrics"] = {cls if k == "RV" else k: v for k, v in entry["metrics"].items()}
        (folder / name).write_text(json.dumps(data))


def _text_cells(text: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(text)) for cell in row]


@pytest.mark.parametrize("draw", range(4))
def test_no_csv_cell_starts_a_formula(tmp_path: Path, draw: int) -> None:
    rng = random.Random(100 + draw)
    root = tmp_path / "r"
    tag = _draw(rng, FORMULAS).replace("\r", "r")
    for seed in (0, 1):
        folder = fake_run(root, "synthetic-cardiac", "mt", 5, seed, 60, tag=tag, paper_name="MT")
        _rename(folder, _draw(rng, FORMULAS).strip() or "=x", "=cmd|' /C calc'!A0")
    out = tmp_path / "results.csv"
    assert _bench("export", "--results", str(root), "-o", str(out))[0] == 0
    cells = _text_cells(out.read_text())
    for args in (("--format", "csv"), ("--format", "csv", "--per-class"), ("--table", "1", "--format", "csv"),
                 ("--cost", "--format", "csv"), ("--keys", "--format", "csv")):
        code, text, err = _bench("table", "--results", str(root), *args)
        assert code == 0, err
        cells += _text_cells(text)
    risky = [c for c in cells if c.startswith(("=", "+", "@", "\t", "\r")) or re.match(r"-(?![0-9.])", c)]
    assert not risky and any(c.startswith("'") for c in cells)
    # numbers stay numbers: a negative difference is not quoted
    assert "-7.6" not in [c for c in cells if c.startswith("'")]


@pytest.mark.parametrize("draw", range(4))
def test_markup_in_names_never_breaks_a_table(tmp_path: Path, draw: int) -> None:
    from sslbench.report.tables import paper_table, tables

    rng = random.Random(200 + draw)
    root = tmp_path / "r"
    tag = _draw(rng, MARKUP)
    fake_run(root, "synthetic-cardiac", "mt", 5, 0, 60, tag=tag, paper_name="MT")
    fake_run(root, "synthetic-cardiac", "unet-l", 5, 0, 50, paper_name="UNet-L")
    for text in (tables(root), paper_table(root, 1, dataset="synthetic-cardiac")):
        rows = [line for line in text.splitlines() if line.startswith("|")]
        widths = {len(re.findall(r"(?<!\\)\|", line)) for line in rows}
        assert len(widths) == 1, text                                    # every row has the header's columns
    for text in (tables(root, "latex"), paper_table(root, 1, "latex", dataset="synthetic-cardiac")):
        body = re.sub(r"\\[{}]", "", text)                                # escaped braces are text
        assert body.count("{") == body.count("}"), text
        assert "\u27e6" not in text and "\u27e7" not in text and _no_controls(text.replace("\n", ""))


def test_an_archived_copy_of_runs_is_counted_once_and_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import shutil

    from sslbench.report.tables import tables

    root = tmp_path / "r"
    for seed in (0, 1):
        fake_run(root, "synthetic-cardiac", "mt", 5, seed, 60 + 10 * seed)
    shutil.copytree(root / "synthetic-cardiac", root / "archive" / "2026-11" / "synthetic-cardiac")
    with caplog.at_level("WARNING", logger="sslbench"):
        text = tables(root)
    assert "65.0 ± 7.1" in text                                           # n = 2, sd of two seeds
    assert "2 run folder(s)" in caplog.text and "archive" in caplog.text and "counted once" in caplog.text


def test_a_plugin_named_like_a_built_in_gets_a_row_of_its_own(tmp_path: Path) -> None:
    from sslbench.report.tables import paper_table, tables

    root = tmp_path / "r"
    for seed in (0, 1):
        fake_run(root, "synthetic-cardiac", "mt", 5, seed, 60, paper_name="MT")
        fake_run(root, "synthetic-cardiac", "my-mt", 5, seed, 90, paper_name="MT")
    text = tables(root)
    rows = {line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ")}
    assert {"MT", "MT [my-mt]"} <= rows and "60.0 ± 0.0" in text and "90.0 ± 0.0" in text
    table1 = paper_table(root, 1, dataset="synthetic-cardiac")
    mt = next(line for line in table1.splitlines() if line.startswith("| MT "))
    assert "60.0" in mt and "90.0" not in mt


def test_no_view_writes_inside_a_run_folder(tmp_path: Path) -> None:
    root = tmp_path / "r"
    folder = fake_run(root, "synthetic-cardiac", "mt", 5, 0, 60)
    record = (folder / "run.json").read_bytes()
    for args in (("table", "-o", str(folder / "run.json")), ("export", "-o", str(folder / "x.csv")),
                 ("report", "-o", str(folder / "report")), ("plot", "ratio", "-o", str(folder / "fig")),
                 ("plot", "ratio", "-o", str(folder))):
        code, _, err = _bench(args[0], "--results", str(root), *args[1:])
        assert code == 2 and "a view never writes into a run's folder" in err, (args, err)
    assert (folder / "run.json").read_bytes() == record and not (folder / "x.csv").exists()
    assert not list(folder.glob("fig*")) and not list(folder.glob("figure*"))


def test_a_control_character_in_a_tag_or_row_name_is_refused_where_it_is_given() -> None:
    """A record refuses control characters, so a run tagged with one could never be shown: the tag
    (and a plugin's row name) is refused at once instead."""
    from sslbench.base.errors import BenchError, RegistryError
    from sslbench.method import SSLMethod, register_method
    from sslbench.run.specs import expand

    for bad in CONTROLS:
        with pytest.raises(BenchError, match="control characters"):
            expand(["mt"], ["synthetic-cardiac"], [5], [0], "quick", tag=f"w{bad}")
    with pytest.raises(RegistryError, match="without control characters"):
        @register_method("ctl-row")
        class Bad(SSLMethod):  # noqa: F841
            paper_name = "MT\x1b[2J"


def test_a_linked_sweep_plan_folder_is_never_written_through(tmp_path: Path) -> None:
    from sslbench.base.errors import BenchError
    from sslbench.base.run_files import run_dir
    from sslbench.run.sweep_plan import sweep_plan

    root, elsewhere = tmp_path / "r", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    (root / ".sweeps").symlink_to(elsewhere)
    folders = [run_dir(root, "synthetic-cardiac", "quick", "mt", 5, s) for s in (0, 1)]
    with pytest.raises(BenchError, match="never written through"):
        with sweep_plan(root, folders):
            pass
    assert not list(elsewhere.iterdir())


def test_a_name_with_a_bar_keeps_the_reports_cost_table_in_its_columns(tmp_path: Path) -> None:
    from sslbench.report.cost import cost_table
    from sslbench.report.html import _markdown_table_to_html

    root = tmp_path / "r"
    fake_run(root, "synthetic-cardiac", "mt", 5, 0, 60, tag="a|b", paper_name="MT")
    html = _markdown_table_to_html(cost_table(root, "markdown"))
    rows = re.findall(r"<tr>(.*?)</tr>", html, re.S)
    assert len({len(re.findall(r"<t[dh]", row)) for row in rows}) == 1 and "MT (a|b)" in html


@pytest.mark.parametrize("name", ["$x^2$", "$\\frac{$", "a$b", "$\\undefinedcommand$"])
def test_markup_in_a_tag_or_class_never_breaks_a_figure(tmp_path: Path, name: str) -> None:
    """matplotlib parses "$...$" as mathtext unless told not to: an unbalanced or unknown command in
    a tag or a class name would end `bench plot` and `bench report`. Every label is plain text."""
    from sslbench.report.plots import plot_classes, plot_ratio

    root = tmp_path / "r"
    for seed in (0, 1):
        folder = fake_run(root, "synthetic-cardiac", "mt", 5, seed, 60, tag=name, paper_name="MT")
        _rename(folder, "case", name)
    assert plot_ratio(root, tmp_path / "ratio") and plot_classes(root, tmp_path / "classes", ratio=5)


def test_a_copied_run_folder_never_stands_in_for_another_run(tmp_path: Path, cache_dir: Path) -> None:
    """Hostile pass: a finished seed-0 folder copied to seed-1 (or to another ratio) was "already
    done" for seed 1, which was then never trained. Its stored spec names another run: refused."""
    import shutil

    from .conftest import TINY_RUN

    root = tmp_path / "r"
    run = ("run", "--methods", "unet-l", "--ratios", "5", "--quiet", "--no-table", *TINY_RUN, "--results", str(root))
    assert _bench(*run, "--seeds", "0")[0] == 0
    base = root / "synthetic-cardiac" / "quick" / "unet-l"
    shutil.copytree(base / "ratio-5" / "seed-0", base / "ratio-5" / "seed-1")
    shutil.copytree(base / "ratio-5" / "seed-0", base / "ratio-10" / "seed-0")
    code, _, err = _bench(*run, "--seeds", "1")
    assert code == 2 and "holds the run of seed 0, not this one" in err and "already done" not in err
    code, _, err = _bench(*run[:4], "10", *run[5:], "--seeds", "0")
    assert code == 2 and "holds the run of ratio 5 %" in err


def test_a_set_value_of_too_many_digits_is_one_line() -> None:
    code, out, err = _bench("run", "--methods", "unet-l", "--ratios", "5", "--dry-run", "--set", "train.lr=" + "9" * 5000)
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err and "no usable number" in err


def test_export_prints_each_skip_warning_once(tmp_path: Path) -> None:
    root = tmp_path / "r"
    fake_run(root, "synthetic-cardiac", "mt", 5, 0, 60)
    damaged = fake_run(root, "synthetic-cardiac", "mt", 5, 1, 60)
    (damaged / "run.json").write_text("{not json")
    code, _, err = _bench("export", "--results", str(root), "-o", str(tmp_path / "x.csv"))
    assert code == 0 and err.count("skipping") == 1, err
