"""``bench report`` compares within a cell (Views II leftovers): a paired per-case scatter of each
method against UNet-L (one dataset, schedule, split and ratio per plot, points paired by seed and case
id), the worst cases of each method's cell pooled over seeds with their TP / FP / FN voxels, the
counts on every run page, and each skip warning printed once. Records are written by hand
(``fake_run``) and then given per-case values of their own, so every number shown is known."""
from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from .test_views import fake_run

HOSTILE = '<b>x</b>&"$|'


def _set_cases(folder: Path, values: dict[str, tuple[float, ...]], counts: bool = False) -> None:
    """metrics.json of a fake run with these cases (in this order) and per-class Dice; with ``counts``
    each class also stores |pred| = 210 and |ref| = 190 voxels, so TP = 200 x Dice, FP = 210 - TP, FN = 190 - TP."""
    data = json.loads((folder / "metrics.json").read_text())
    classes = list(data["metric_per_case"][0]["metrics"])
    cases = []
    for name, dice in values.items():
        metrics = {}
        for cls, d in zip(classes, dice):
            m: dict[str, Any] = {"dice": d, "assd": 2.0, "asd": 2.0, "hd95": 5.0}
            if counts:
                tp = round(200 * d)
                m.update(n_pred=210, n_ref=190, dice=2 * tp / 400)
            metrics[cls] = m
        cases.append({"case": name, "spacing": None, "metrics": metrics})
    data["metric_per_case"] = cases
    (folder / "metrics.json").write_text(json.dumps(data))


def _case_means(folder: Path) -> dict[str, float]:
    data = json.loads((folder / "metrics.json").read_text())
    return {c["case"]: 100 * float(np.mean([m["dice"] for m in c["metrics"].values()])) for c in data["metric_per_case"]}


def _points(index: str, method: str, ratio: str) -> tuple[list[tuple[int, str, float, float]], str]:
    """The points (seed, case, x, y) and caption of the scatter of ``method`` in the leaderboard of ``ratio``."""
    board = re.search(rf'<h3>Leaderboard, {ratio} % labeled</h3>(.*?)(?=<h3>)', index, re.DOTALL).group(1)
    figures = [body for name, body in re.findall(r'<figure class="pair" data-method="([^"]*)"[^>]*>(.*?)</figure>',
                                                 board, re.DOTALL) if html.unescape(name) == method]
    assert len(figures) == 1, f"{len(figures)} scatters of {method} at {ratio} %"
    dots = re.findall(r'<circle [^>]*class="point" data-case="([^"]*)" data-seed="(\d+)" data-x="([^"]+)" '
                      r'data-y="([^"]+)"', figures[0])
    caption = re.search(r'<figcaption class="caption">(.*?)</figcaption>', figures[0], re.DOTALL).group(1)
    return [(int(s), html.unescape(c), float(x), float(y)) for c, s, x, y in dots], html.unescape(caption)


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """ACDC at 10 %: MT seeds 0-2 (seed 2 without a UNet-L partner; seed 1's cases in another order),
    UNet-L seeds 0-1 (seed 1 without case3), a tagged MT, a plugin-like row with a hostile name, UNet-F;
    ACDC at 5 %: MT and UNet-L seed 0; the phantom: MT scored on the validation split, UNet-L on the test
    split (never paired)."""
    from sslbench.report.html import write_report

    base = tmp_path_factory.mktemp("compare")
    root = base / "results"
    mt = [fake_run(root, "acdc", "mt", 10, s, 60, paper_name="MT") for s in range(3)]
    unet = [fake_run(root, "acdc", "unet-l", 10, s, 50, paper_name="UNet-L") for s in range(2)]
    _set_cases(mt[0], {"case0": (0.70, 0.60, 0.50), "case1": (0.90, 0.80, 0.85), "case2": (0.40, 0.45, 0.50),
                       "case3": (0.75, 0.75, 0.75)}, counts=True)
    _set_cases(mt[1], {"case3": (0.35, 0.40, 0.30), "case2": (0.95, 0.90, 0.85), "case1": (0.60, 0.65, 0.70),
                       "case0": (0.65, 0.70, 0.75)}, counts=True)
    _set_cases(mt[2], {"case0": (0.20, 0.20, 0.20), "case1": (0.25, 0.25, 0.25)}, counts=True)
    _set_cases(unet[0], {"case0": (0.50, 0.55, 0.60), "case1": (0.65, 0.70, 0.60), "case2": (0.45, 0.40, 0.35),
                         "case3": (0.80, 0.85, 0.90)})
    _set_cases(unet[1], {"case0": (0.30, 0.35, 0.40), "case1": (0.60, 0.55, 0.50), "case2": (0.85, 0.80, 0.75)})
    (mt[1] / "predictions").mkdir()
    np.save(mt[1] / "predictions" / "case3.npy", np.zeros((2, 2, 2), np.uint8))
    fake_run(root, "acdc", "mt", 10, 0, 45, paper_name="MT", tag="w=1.0", overrides=("method.consistency=1.0",))
    fake_run(root, "acdc", "cct", 10, 0, 58, paper_name=HOSTILE)
    fake_run(root, "acdc", "unet-f", 100, 0, 80, paper_name="UNet-F")
    fake_run(root, "acdc", "mt", 5, 0, 40, paper_name="MT")
    fake_run(root, "acdc", "unet-l", 5, 0, 30, paper_name="UNet-L")
    fake_run(root, "synthetic-cardiac", "mt", 10, 0, 60, paper_name="MT", eval_split="val")
    fake_run(root, "synthetic-cardiac", "unet-l", 10, 0, 50, paper_name="UNet-L")
    out = base / "report"
    write_report(root, out)
    return root, out


def _section(out: Path, dataset: str) -> str:
    index = (out / "index.html").read_text()
    return re.search(rf'<section id="{dataset}-quick">(.*?)</section>', index, re.DOTALL).group(1)


def test_each_scatter_point_is_a_case_of_one_seed_both_methods_evaluated(compared: tuple[Path, Path]) -> None:
    root, out = compared
    acdc = _section(out, "acdc")
    points, caption = _points(acdc, "MT", "10")
    expected = []
    for seed in (0, 1):                                       # seed 2: MT only; case3 of seed 1: MT only
        mt = _case_means(root / f"acdc/quick/mt/ratio-10/seed-{seed}")
        unet = _case_means(root / f"acdc/quick/unet-l/ratio-10/seed-{seed}")
        expected += [(seed, case, unet[case], mt[case]) for case in sorted(set(mt) & set(unet))]
    assert [(s, c) for s, c, _, _ in points] == [(s, c) for s, c, _, _ in expected]
    assert [v for *_, x, y in points for v in (x, y)] == pytest.approx([v for *_, x, y in expected for v in (x, y)],
                                                                      abs=1e-9)
    assert points[4] == (1, "case0", pytest.approx(35.0), pytest.approx(70.0))   # matched by id, not by position
    assert len(points) == 7 and sum(y > x for *_, x, y in expected) == 6
    for words in ("acdc, quick, 10 % labeled", "evaluated on the test split", "the selected weights",
                  "MT (y) against UNet-L (x)", "7 points from seed(s) 0, 1", "seed(s) 2 without a partner",
                  "better (6 of 7 points)"):
        assert words in caption, (words, caption)


def test_the_diagonal_and_the_dots_share_one_scale(compared: tuple[Path, Path]) -> None:
    _, out = compared
    figure = re.search(r'<figure class="pair" data-method="MT"[^>]*>(.*?)</figure>', _section(out, "acdc"), re.DOTALL).group(1)
    x1, y1, x2, y2 = map(float, re.search(r'<line x1="([\d.]+)" y1="([\d.]+)" x2="([\d.]+)" y2="([\d.]+)" class="diagonal"',
                                          figure).groups())
    assert x2 - x1 == pytest.approx(y1 - y2)                    # a 45° line: y = x
    for cx, cy, x, y in re.findall(r'cx="([\d.]+)" cy="([\d.]+)" r="2.5"[^>]*data-x="([^"]+)" data-y="([^"]+)"', figure):
        # a dot above the diagonal is one where y > x
        on_line = y1 - (float(cx) - x1)
        assert (float(cy) < on_line - 0.1) == (float(y) > float(x) + 0.1) or abs(float(y) - float(x)) <= 0.1


def test_pairs_never_mix_ratios_splits_or_the_baseline_itself(compared: tuple[Path, Path]) -> None:
    root, out = compared
    acdc = _section(out, "acdc")
    points, caption = _points(acdc, "MT", "5")
    mt = _case_means(root / "acdc/quick/mt/ratio-5/seed-0")
    unet = _case_means(root / "acdc/quick/unet-l/ratio-5/seed-0")
    assert points == [(0, c, pytest.approx(unet[c]), pytest.approx(mt[c])) for c in sorted(mt)]
    assert "5 % labeled" in caption
    figures = [html.unescape(m) for m in re.findall(r'<figure class="pair" data-method="([^"]*)"', acdc)]
    assert sorted(figures) == sorted(["MT", "MT (w=1.0)", HOSTILE, "MT"])     # none for UNet-L or UNet-F
    phantom = _section(out, "synthetic-cardiac")
    assert '<figure class="pair"' not in phantom                 # MT scored on val, UNet-L on test: no pairs
    assert "No paired plot for MT: no UNet-L run at 10 % labels evaluated on the val split." in phantom


def test_the_worst_cases_of_a_cell_are_its_lowest_over_seeds(compared: tuple[Path, Path]) -> None:
    _, out = compared
    acdc = _section(out, "acdc")
    board = re.search(r'<h3>Leaderboard, 10 % labeled</h3>(.*?)(?=<h3>)', acdc, re.DOTALL).group(1)
    table = re.search(r'<table class="sortable worst-cell" data-method="MT" data-split="test">(.*?)</table>',
                      board, re.DOTALL).group(1)
    assert re.findall(r"<th>(.*?)</th>", table) == ["case", "seed", "DSC [%]", "RV TP / FP / FN", "Myo TP / FP / FN",
                                                    "LV TP / FP / FN", "prediction"]
    rows = [re.findall(r"<td>(.*?)</td>", row) for row in re.findall(r"<tr><td>.*?</tr>", table)]
    # class means: s2 case0 20, s2 case1 25, s1 case3 35, s0 case2 45, s0 case0 60 (then s1 case1 65, ...)
    assert [(r[0], r[1], r[2]) for r in rows] == [("case0", "2", "20.00"), ("case1", "2", "25.00"), ("case3", "1", "35.00"),
                                                  ("case2", "0", "45.00"), ("case0", "0", "60.00")]
    # |pred| 210, |ref| 190, TP = 200 Dice: s1 case3's RV Dice 0.35 -> TP 70, FP 140, FN 120
    assert rows[2][3:] == ["70 / 140 / 120", "80 / 130 / 110", "60 / 150 / 130", "saved"]
    assert rows[0][3:] == ["40 / 170 / 150", "40 / 170 / 150", "40 / 170 / 150", "—"]
    unet = re.search(r'<table class="sortable worst-cell" data-method="UNet-L" data-split="test">(.*?)</table>',
                     board, re.DOTALL).group(1)
    assert "<td>—</td><td>—</td><td>—</td></tr>" in unet and "prediction" not in unet   # no counts stored, none saved


def test_worst_in_cell_orders_ties_by_seed_then_case(tmp_path: Path) -> None:
    from sslbench.report.compare import worst_in_cell

    def metrics(values: dict[str, float]) -> dict[str, Any]:
        return {"metric_per_case": [{"case": c, "metrics": {"A": {"dice": v}, "B": {"dice": v}}} for c, v in values.items()]}

    runs = {1: (str(tmp_path / "a"), metrics({"b": 0.5, "a": 0.5, "c": 0.1})), 0: (str(tmp_path / "b"), metrics({"z": 0.5}))}
    classes, rows = worst_in_cell(runs, 3)
    assert classes == ["A", "B"]
    assert [(r["case"], r["seed"], r["dice"]) for r in rows] == [("c", 1, "10.00"), ("z", 0, "50.00"), ("a", 1, "50.00")]


def test_a_run_page_gives_tp_fp_fn_per_case_and_class(compared: tuple[Path, Path]) -> None:
    _, out = compared
    page = next((out / "runs").glob("acdc-mt--r10-s1-*.html")).read_text()
    table = re.search(r'<table class="sortable cases">(.*?)</table>', page, re.DOTALL).group(1)
    assert re.findall(r"<th>(.*?)</th>", table)[-3:] == ["TP", "FP", "FN"]
    assert "<tr><td>case3</td><td>RV</td><td>35.00</td><td>2.000</td><td>5.000</td><td>70</td><td>140</td><td>120</td></tr>" \
        in table
    tp = 70 + 190 + 120 + 130                                                   # RV of case3, case2, case1, case0
    assert f"<tr><td>RV</td><td>{tp}</td><td>{4 * 210 - tp}</td><td>{4 * 190 - tp}</td></tr>" in page   # summed
    unet = next((out / "runs").glob("acdc-unet-l--r10-s0-*.html")).read_text()
    assert "<td>5.000</td><td>—</td><td>—</td><td>—</td></tr>" in unet


def test_names_in_the_comparisons_are_inert(compared: tuple[Path, Path]) -> None:
    _, out = compared
    index = (out / "index.html").read_text()
    assert "<b>x</b>" not in index and "&lt;b&gt;x&lt;/b&gt;&amp;&#34;$|" in index
    _, caption = _points(_section(out, "acdc"), HOSTILE, "10")
    assert f"{HOSTILE} (y) against UNet-L (x)" in caption


def test_the_report_prints_each_skip_warning_once(tmp_path: Path) -> None:
    from sslbench.cli import main

    root = tmp_path / "r"
    fake_run(root, "acdc", "mt", 10, 0, 60, paper_name="MT")
    fake_run(root, "acdc", "unet-l", 10, 0, 50, paper_name="UNet-L")
    (fake_run(root, "acdc", "mt", 10, 1, 60, paper_name="MT") / "run.json").write_text("{not json")
    result = CliRunner().invoke(main, ["report", "--results", str(root), "-o", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("skipping") == 1 and "seed-1/run.json" in result.stderr, result.stderr
