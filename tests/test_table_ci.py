"""``bench table --ci LEVEL``: a seeded percentile bootstrap interval of each DSC cell's mean beside its
mean ± sd (over the cell's cases x seeds, pooled), in columns of their own in CSV, off by default, and
refused where a mode cannot show it; class names in table headers are escaped for markdown and LaTeX."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from .test_views import fake_run


def bench(*args: str) -> tuple[int, str, str]:
    from sslbench.cli import main

    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def _by_hand(values: list[float], level: float = 95.0) -> tuple[float, float]:
    """The interval as the docs state it, written out: 2000 resamples of all values with replacement
    from numpy's generator seeded 0, the percentiles of their means."""
    vals = np.asarray(values)
    means = vals[np.random.default_rng(0).integers(0, len(vals), size=(2000, len(vals)))].mean(axis=1)
    lo, hi = np.percentile(means, [(100 - level) / 2, 100 - (100 - level) / 2])
    return float(lo), float(hi)


def test_the_interval_on_numbers_small_enough_to_count() -> None:
    from sslbench.report.bootstrap import bootstrap_ci

    # two values: a resample's mean is 0 (1/4), 50 (1/2) or 100 (1/4), so the 2.5th and 97.5th
    # percentiles are the ends and the 30th and 70th the middle
    assert bootstrap_ci([0.0, 100.0]) == (0.0, 100.0)
    assert bootstrap_ci([0.0, 100.0], level=40) == (50.0, 50.0)
    assert bootstrap_ci([70.0] * 4) == (70.0, 70.0) and bootstrap_ci([3.0]) is None
    assert bootstrap_ci([1.0, float("nan")]) is None                          # non-finite values left out
    values = [58.5, 59.5, 60.5, 61.5, 40.0]
    assert bootstrap_ci(values) == pytest.approx(_by_hand(values)) and bootstrap_ci(values) == bootstrap_ci(values)
    assert bootstrap_ci(values, level=80) == pytest.approx(_by_hand(values, 80))


@pytest.fixture
def records(tmp_path: Path) -> Path:
    """MT at 5 %, seeds 0 and 1 (class-mean Dice per case 58.5 ... 62.5), one per-class column made
    to differ (RV 10 points lower), the last weights 20 points lower; UNet-L one seed."""
    root = tmp_path / "r"
    for seed in (0, 1):
        folder = fake_run(root, "synthetic-cardiac", "mt", 5, seed, 60 + seed, paper_name="MT", last_dsc=40 + seed)
        data = json.loads((folder / "metrics.json").read_text())
        for case in data["metric_per_case"]:
            case["metrics"]["RV"]["dice"] -= 0.10
        (folder / "metrics.json").write_text(json.dumps(data))
        record = json.loads((folder / "run.json").read_text())
        record["per_class"]["RV"]["dice"] -= 0.10
        (folder / "run.json").write_text(json.dumps(record))
    fake_run(root, "synthetic-cardiac", "unet-l", 5, 0, 50, paper_name="UNet-L")
    return root


def _pooled(root: Path, name: str = "metrics.json", cls: str | None = None) -> list[float]:
    values = []
    for seed in (0, 1):
        data = json.loads((root / f"synthetic-cardiac/quick/mt/ratio-5/seed-{seed}" / name).read_text())
        for case in data["metric_per_case"]:
            m = case["metrics"]
            values.append(100 * (m[cls]["dice"] if cls else np.mean([v["dice"] for v in m.values()])))
    return values


def _cell(text: str, row: str, col: int) -> str:
    line = next(line for line in text.splitlines() if line.startswith(f"| {row} "))
    return line.split("|")[col + 1].strip()


def test_a_cell_shows_the_interval_of_its_cases_and_seeds_beside_mean_and_sd(records: Path) -> None:
    code, plain, _ = bench("table", "--results", str(records))
    code_ci, text, err = bench("table", "--results", str(records), "--ci", "95")
    assert code == code_ci == 0, err
    lo, hi = _by_hand(_pooled(records))
    assert _cell(plain, "MT", 1) == "60.5 ± 0.7"                              # off by default: as before
    assert _cell(text, "MT", 1) == f"60.5 ± 0.7 [{lo:.1f}, {hi:.1f}]"
    assert _cell(text, "MT", 2) == _cell(plain, "MT", 2)                      # ASD: no interval
    seed_means = [60.0, 61.0]                                                  # what a bootstrap over seeds would give
    assert (lo, hi) != pytest.approx(_by_hand(seed_means))
    assert "95 % percentile bootstrap interval of the mean DSC, resampling the evaluated cases of every seed pooled" in text
    assert "2000 resamples, RNG seed 0" in text and "[" not in plain.split("\n\n", 1)[1]
    assert bench("table", "--results", str(records), "--ci", "95")[1] == text  # deterministic


def test_per_class_and_last_weights_intervals_use_their_own_cases(records: Path) -> None:
    _, text, _ = bench("table", "--results", str(records), "--ci", "90", "--per-class")
    lo, hi = _by_hand(_pooled(records, cls="RV"), 90)
    assert _cell(text, "MT", 1).endswith(f" [{lo:.1f}, {hi:.1f}]") and _cell(text, "MT", 1).startswith("50.5 ± ")
    lo, hi = _by_hand(_pooled(records, cls="LV"), 90)
    assert _cell(text, "MT", 5).endswith(f" [{lo:.1f}, {hi:.1f}]")
    _, last, _ = bench("table", "--results", str(records), "--ci", "95", "--checkpoint", "last")
    lo, hi = _by_hand(_pooled(records, "metrics-last.json"))
    assert _cell(last, "MT", 1) == f"40.5 ± 0.7 [{lo:.1f}, {hi:.1f}]"


def test_csv_has_the_interval_in_numeric_columns_of_its_own(records: Path) -> None:
    _, plain, _ = bench("table", "--results", str(records), "--format", "csv")
    code, text, err = bench("table", "--results", str(records), "--format", "csv", "--ci", "95")
    assert code == 0, err
    frame = pd.read_csv(io.StringIO(text))
    mt = frame[frame.Method == "MT"].iloc[0]
    lo, hi = _by_hand(_pooled(records))
    assert mt["5% DSC ci95 low"] == pytest.approx(round(lo, 4)) and mt["5% DSC ci95 high"] == pytest.approx(round(hi, 4))
    assert mt["5% DSC mean"] == 60.5 and frame["5% DSC ci95 low"].dtype == float
    assert "cases of every seed pooled" in mt["ci_method"]
    assert "ci" not in " ".join(pd.read_csv(io.StringIO(plain)).columns)          # off by default
    assert "5% ASD ci95 low" not in frame


@pytest.mark.parametrize(("args", "message"), [
    (("--ci", "95", "--table", "1"), "--ci would be ignored"),
    (("--ci", "95", "--cost"), "--ci would be ignored"),
    (("--ci", "95", "--keys"), "--ci would be ignored"),
    (("--ci", "100"), "not in the range"),
    (("--ci", "0"), "not in the range"),
    (("--ci", "lots"), "'--ci'"),
])
def test_ci_is_refused_where_it_cannot_be_honoured(records: Path, args: tuple[str, ...], message: str) -> None:
    code, out, err = bench("table", "--results", str(records), *args)
    assert code == 2 and message in err and err.count("\n") == 1 and out == "", err


SPECIAL = "R**V**$x$_a|b`c`"


def test_class_names_with_markup_are_escaped_in_table_headers(tmp_path: Path) -> None:
    from sslbench.report.tables import tables

    root = tmp_path / "r"
    folder = fake_run(root, "synthetic-cardiac", "mt", 5, 0, 60, paper_name="MT")
    record = json.loads((folder / "run.json").read_text())
    record["per_class"] = {SPECIAL: record["per_class"]["RV"]}
    (folder / "run.json").write_text(json.dumps(record))
    md = tables(root, per_class=True)
    header = next(line for line in md.splitlines() if line.startswith("| Method"))
    assert "5% R\\*\\*V\\*\\*\\$x\\$\\_a\\|b\\`c\\` DSC" in header
    assert "**V**" not in header and "$x$" not in header and "`c`" not in header
    latex = tables(root, "latex", per_class=True)
    head = next(line for line in latex.splitlines() if line.lstrip().startswith("Method"))
    assert r"5\% R**V**\$x\$\_a\textbar{}b\textasciigrave{}c\textasciigrave{} DSC" in head
    assert _cell(md, "MT", 1) == "60.0"                                    # cells as before: numbers plain
