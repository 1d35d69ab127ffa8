"""`bench table --table la`: the Left Atrium rows published for UA-MT's LA release (3-D, 80 training / 20
test volumes; 5 / 10 / 20 % = 4 / 8 / 16 labeled cases), their provenance and units, and how they sit
beside hand-written LA runs (``fake_run``)."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd
import pytest

from sslbench.base.config import configs_dir

from .test_table_views import _rows, bench
from .test_views import fake_run

NAMES = {"UAMT": "UA-MT", "SASSNet": "SASSNet", "DTC": "DTC", "MC-Net": "MC-Net"}  # row -> name in its source
DTC_README = "HiLab-git/DTC, README.md at commit 396895b3ad54e343dec5c8d51a221d307cc757b1"
UAMT_PROTOCOL = {"profile": "uamt", "units": "voxels", "iterations": 6000, "image_size": "80x112x112"}


def _shipped() -> list[dict[str, str]]:
    with open(configs_dir() / "paper" / "la_published.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _frame(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text)).set_index("Method")


def test_every_la_row_parses_and_says_where_it_comes_from_and_in_which_units() -> None:
    rows = _shipped()
    assert rows and {r["table"] for r in rows} == {"7"} and {r["dataset"] for r in rows} == {"la"}
    assert {r["method"] for r in rows} == set(NAMES) and {r["ratio"] for r in rows} == {"10", "20"}
    assert len({(r["method"], r["variant"], r["ratio"]) for r in rows}) == len(rows)   # one row per cell
    for r in rows:
        where = f"{r['method']} {r['ratio']} %"
        assert r["source"].strip() and NAMES[r["method"]] in r["source"], f"{where}: no source naming it"
        assert DTC_README in r["source"], f"{where}: not the README it was read from"
        labeled = {"10": "8 labeled cases (10 %)", "20": "16 labeled cases (20 %)"}[r["ratio"]]
        assert labeled in r["source"], f"{where}: the labeled cases are not stated"
        # the numbers in the cells are the numbers quoted in the source text (no drift between the two)
        assert (f"Dice {r['dsc']}, Jaccard {r['jaccard']}, 95HD {r['hd95']}, ASD {r['asd']};" in r["source"]), where
        # units and the ASD's definition: voxels, medpy's directed asd(pred, gt) (what asd_legacy holds)
        assert "in voxels" in r["source"] and "asd(pred, gt)" in r["source"] and "directed" in r["source"], where
        for key in ("dsc", "jaccard", "hd95", "asd"):
            assert float(r[key]) > 0, f"{where}: {key} empty"
    # rows whose number is not the method's own say so
    by = {(r["method"], r["ratio"]): r for r in rows}
    assert "MC-Net's run of DTC" in by[("DTC", "10")]["source"]
    assert "not known to be UA-MT's own" in by[("UAMT", "10")]["source"]
    assert all("published-only row" in r["source"] for r in rows if r["method"] in ("SASSNet", "DTC", "MC-Net"))


def test_the_recorded_values_are_pinned() -> None:
    from sslbench.report.paper import paper_cells

    cells = paper_cells()
    la = cells[cells.table == 7].set_index(["method", "ratio"])
    assert tuple(la.loc[("UAMT", 20.0), ["dsc", "jaccard", "hd95", "asd"]]) == (88.88, 80.21, 7.32, 2.26)
    assert tuple(la.loc[("UAMT", 10.0), ["dsc", "jaccard", "hd95", "asd"]]) == (84.25, 73.48, 13.84, 3.36)
    assert tuple(la.loc[("SASSNet", 20.0), ["dsc", "asd"]]) == (89.54, 2.20)
    assert tuple(la.loc[("DTC", 20.0), ["dsc", "asd"]]) == (89.42, 2.10)
    assert tuple(la.loc[("MC-Net", 10.0), ["dsc", "jaccard", "hd95", "asd"]]) == (87.71, 78.31, 9.36, 2.18)
    assert tuple(la.loc[("MC-Net", 20.0), ["dsc", "asd"]]) == (90.34, 1.77)
    # the other tables are untouched: no Jaccard / 95HD there, and the beyond table keeps its rows
    assert cells[cells.table != 7].jaccard.isna().all() and cells[cells.table != 7].hd95.isna().all()
    assert set(cells[cells.table == 6].dataset) == {"acdc"} and "la" not in set(cells[cells.table < 7].dataset)


def test_the_la_table_has_a_name_and_its_own_sources() -> None:
    from sslbench.report.paper import TABLES, layout, sources, table_number

    assert table_number("la") == table_number(" LA ") == table_number(7) == 7
    assert "configs/paper/la_published.csv" in TABLES[7] and "voxels" in TABLES[7] and "asd(pred, gt)" in TABLES[7]
    assert list(dict.fromkeys(layout(7).method)) == ["UAMT", "SASSNet", "DTC", "MC-Net"]
    notes = sources(7)
    assert [m for m, _ in notes] == ["UAMT", "UAMT", "SASSNet", "SASSNet", "DTC", "DTC", "MC-Net", "MC-Net"]
    assert all(DTC_README in s for _, s in notes)
    assert not any("la_published" in s or DTC_README in s for _, s in sources(6))   # the beyond table's own


def test_our_la_runs_sit_beside_the_published_numbers_with_the_difference(tmp_path: Path) -> None:
    """UA-MT at 20 % and 10 % meet their published rows (DSC Δ, and the ASD Δ of asd_legacy = 3.0, the
    directed voxel ASD, never the records' ASSD 3.5); a BCP run at 10 % gets a row of its own."""
    from sslbench.report.tables import paper_table

    root = tmp_path / "r"
    fake_run(root, "la", "uamt", 20.0, 0, 85.0, paper_name="UAMT", **UAMT_PROTOCOL)
    fake_run(root, "la", "uamt", 10.0, 0, 80.0, paper_name="UAMT", **UAMT_PROTOCOL)
    fake_run(root, "la", "bcp", 10.0, 0, 88.0, paper_name="BCP", **UAMT_PROTOCOL)
    frame = _frame(paper_table(root, "la", "csv", dataset="la", vs_paper=True))
    uamt = frame.loc["UAMT"]
    assert uamt["20% DSC mean"] == 85.0 and uamt["20% DSC paper"] == 88.88
    assert uamt["20% DSC Δ"] == pytest.approx(85.0 - 88.88)
    assert uamt["20% ASD paper"] == 2.26 and uamt["20% ASD Δ"] == pytest.approx(3.0 - 2.26)
    assert uamt["10% DSC paper"] == 84.25 and uamt["10% DSC Δ"] == pytest.approx(80.0 - 84.25)
    assert uamt["10% ASD Δ"] == pytest.approx(3.0 - 3.36)
    assert set(frame.asd_unit) == {"voxels"} and set(frame.published_dataset) == {"la"}
    # published-only rows: the published value, no run, no difference
    assert frame.loc["MC-Net", "10% DSC paper"] == 87.71 and pd.isna(frame.loc["MC-Net", "10% DSC Δ"])
    # BCP's own LA table (arXiv 2305.00673) is not shipped: its run is a row with nothing to compare
    bcp = frame.loc["BCP"]
    assert bcp["10% DSC mean"] == 88.0 and pd.isna(bcp["10% DSC paper"]) and pd.isna(bcp["10% DSC Δ"])

    md = paper_table(root, "la", dataset="la", vs_paper=True)
    rows = _rows(md)
    assert rows["UAMT"][6:9] == ["85.0", "88.9", "-3.9"] and rows["UAMT"][9:12] == ["3.50", "2.26", "+0.74"]
    assert "never with the ASSD" in md and "caveat" not in md     # UA-MT's release protocol: no caveat
    assert md.count("\n* published: ") == 8 and DTC_README in md


def test_the_caveat_names_ua_mts_protocol_not_monas(tmp_path: Path) -> None:
    from sslbench.report.tables import paper_table

    root = tmp_path / "r"
    fake_run(root, "la", "uamt", 20.0, 0, 85.0, paper_name="UAMT", units="voxels", iterations=300,
             image_size="32x64x64")
    caveat = next(line for line in paper_table(root, "la", vs_paper=True).splitlines() if "caveat" in line)
    assert "300 iterations (UA-MT's LA release: 6000)" in caveat
    assert "32x64x64 px (UA-MT's LA release: 80x112x112)" in caveat
    assert "seed" not in caveat and "the paper" not in caveat        # its sources state no seed count


def test_bench_table_la_vs_paper_from_the_command_line(tmp_path: Path) -> None:
    root = tmp_path / "r"
    fake_run(root, "la", "uamt", 20.0, 0, 85.0, paper_name="UAMT", **UAMT_PROTOCOL)
    code, out, err = bench("table", "--results", str(root), "--table", "la", "--vs-paper", "--dataset", "la",
                           "--format", "csv")
    assert code == 0, err
    assert _frame(out).loc["UAMT", "20% DSC paper"] == 88.88
    # the published rows alone, before any LA run: --dataset la is one of the table's datasets
    empty = tmp_path / "empty"
    fake_run(empty, "synthetic-cardiac", "mt", 5, 0, 60, paper_name="MT")
    code, out, err = bench("table", "--results", str(empty), "--table", "la", "--vs-paper", "--dataset", "la")
    assert code == 0, err
    assert _rows(out)["MC-Net"][1] == "87.7"
