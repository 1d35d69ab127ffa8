"""`bench table --table beyond`: the shipped published numbers of the methods beyond the paper, their
provenance, and how they sit beside our runs."""
from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from sslbench.base.config import configs_dir
from sslbench.base.errors import BenchError


def _shipped() -> list[dict[str, str]]:
    with open(configs_dir() / "paper" / "beyond_published.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_the_beyond_table_has_a_name_and_every_row_says_where_it_comes_from() -> None:
    from sslbench.report.paper import table_number

    assert table_number("beyond") == table_number(" Beyond ") == 6
    with pytest.raises(BenchError, match="unknown table 'ahead'"):
        table_number("ahead")
    rows = _shipped()
    assert {r["method"] for r in rows} == {"MONA", "UniMatch", "BCP", "ABD"}
    assert {(r["method"], r["ratio"]) for r in rows} >= {(m, q) for m in ("MONA", "UniMatch", "BCP", "ABD")
                                                        for q in ("5", "10")}
    for r in rows:
        assert r["source"].strip(), f"{r['method']} {r['ratio']} %: no source"
        if r["dsc"] and r["source"] != "same, 3 cases" and r["source"] != "same, 7 cases":
            assert r["method"] in r["source"], f"{r['method']} {r['ratio']} %: its source does not name it"
        if not r["dsc"]:
            assert "not transcribed" in r["source"], f"{r['method']} {r['ratio']} %: empty without saying why"
    # a number quoted in the source text is the number in the cells (no drift between the two)
    for r in rows:
        if r["method"] in ("BCP", "ABD") and r["dsc"]:
            assert f"Dice {r['dsc']}," in r["source"] and f"ASD {r['asd']};" in r["source"]
    abd = {r["ratio"]: r for r in rows if r["method"] == "ABD"}
    assert (abd["5"]["dsc"], abd["5"]["asd"], abd["10"]["dsc"], abd["10"]["asd"]) == ("88.96", "0.52", "89.81", "0.49")
    assert all("secondary quotation" in r["source"] and "magic-fortune/AdaMix" in r["source"] for r in abd.values())
    unimatch = next(r for r in rows if r["method"] == "UniMatch" and r["ratio"] == "1")
    assert "valtest" in unimatch["source"] and "selected on it" in unimatch["source"]


def test_monas_row_in_the_beyond_table_is_its_table_1_row() -> None:
    from sslbench.report.paper import paper_cells

    cells = paper_cells()
    mona6 = cells[(cells.table == 6) & (cells.method == "MONA")].set_index("ratio")[["dsc", "asd"]]
    mona1 = cells[(cells.table == 1) & (cells.dataset == "acdc") & (cells.method == "MONA")].set_index("ratio")
    assert not mona6.empty
    pd.testing.assert_frame_equal(mona6.sort_index(), mona1.loc[mona6.index, ["dsc", "asd"]].sort_index())


def test_the_layout_shows_the_published_numbers_and_a_dash_where_a_paper_gives_none(tmp_path: Path) -> None:
    from sslbench.report.tables import paper_table

    text = paper_table(tmp_path / "none", "beyond", vs_paper=True)
    lines = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
             for line in text.splitlines() if line.startswith("| ") and "Method" not in line}
    assert list(lines)[:4] == ["MONA", "UniMatch", "BCP", "ABD"]
    header = next(line for line in text.splitlines() if "Method" in line)
    cols = [c.strip() for c in header.split("|")[2:-1]]
    at = {name: i for i, name in enumerate(cols)}
    assert lines["BCP"][at["5% DSC paper"]] == "87.6" and lines["BCP"][at["10% ASD paper"]] == "1.17"
    assert lines["UniMatch"][at["10% DSC paper"]] == "89.9" and lines["UniMatch"][at["10% ASD paper"]] == "—"
    assert lines["ABD"][at["5% DSC paper"]] == "89.0" and lines["ABD"][at["10% ASD paper"]] == "0.49"
    assert lines["MONA"][at["5% DSC paper"]] == "88.8"


def test_our_run_sits_beside_its_published_number_with_the_difference(tmp_path: Path) -> None:
    from sslbench.report import tables

    from .test_views import fake_run

    fake_run(tmp_path / "r", "acdc", "bcp", 5.0, 0, 80.0, profile="ssl4mis", paper_name="BCP", units="voxels")
    text = tables.paper_table(tmp_path / "r", "beyond", vs_paper=True, fmt="csv")
    frame = pd.read_csv(__import__("io").StringIO(text))
    row = frame[frame.Method == "BCP"].iloc[0]
    assert row["5% DSC mean"] == 80.0 and row["5% DSC paper"] == 87.59 and row["5% DSC Δ"] == pytest.approx(-7.59)
    # the published ASD (directed, voxels) against the record's asd_legacy (3.0), never its ASSD (3.5)
    assert row["5% ASD paper"] == 0.67 and row["5% ASD Δ"] == pytest.approx(2.33)
    assert row["asd_unit"] == "voxels" and row["checkpoint"] == "best" and row["published_dataset"] == "acdc"


def test_with_vs_paper_the_table_says_where_each_published_number_comes_from(tmp_path: Path) -> None:
    from sslbench.report.tables import paper_table

    text = paper_table(tmp_path / "none", "beyond", vs_paper=True)
    notes = [line for line in text.splitlines() if line.startswith("* published: ")]
    assert [n.split(": ", 1)[1].split(" ", 1)[0] for n in notes] == ["MONA", "UniMatch", "BCP", "BCP", "ABD", "ABD"]
    assert any("yyliu01/TraCoCo" in n for n in notes) and all("same," not in n for n in notes)
    assert "published: " not in paper_table(tmp_path / "none", "beyond", vs_paper=False)
    assert "% published: MONA" in paper_table(tmp_path / "none", "beyond", fmt="latex", vs_paper=True)
    assert "\n* published: " not in paper_table(tmp_path / "none", 1, vs_paper=True)  # the paper's own tables
