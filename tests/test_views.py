"""What a researcher sees of the records: figures and tables never mix datasets, profiles (schedules),
tags or units; captions state the protocol the records state; the tidy export. Records are written
by hand here (two datasets, two profiles, a tagged variant), so each view is checked on known numbers."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from sslbench.base.run_files import RunFiles, run_dir

CLASSES = ("RV", "Myo", "LV")


def fake_run(root: Path, dataset: str, method: str, ratio: float, seed: int, dsc: float, *, profile: str = "quick",
             tag: str = "", units: str = "mm", overrides: tuple[str, ...] = (), eval_split: str = "test",
             iterations: int = 600, image_size: int = 64, paper_name: str | None = None, last_dsc: float | None = None,
             cases: int = 4) -> Path:
    """A finished run's folder with the files the views read (run.json, metrics.json, metrics-last.json,
    config.json, train_log.jsonl, DONE)."""
    from sslbench.run.specs import overrides_hash

    name = f"{method}@{tag}" if tag else method
    files = RunFiles(run_dir(root, dataset, profile, name, ratio, seed))
    files.create()

    def metrics(value: float) -> dict[str, Any]:
        per_case = [{"case": f"case{k}", "spacing": None,
                     "metrics": {c: {"dice": value / 100 + 0.01 * (k - 1.5), "assd": 2.0 + k, "asd": 2.0, "hd95": 5.0}
                                 for c in CLASSES}} for k in range(cases)]
        mean = {c: {"dice": value / 100, "assd": 3.5, "hd95": 5.0} for c in CLASSES}
        return {"metric_per_case": per_case, "mean": mean,
                "foreground_mean": {"dice": value / 100, "assd": 3.5, "hd95": 5.0, "asd_legacy": 3.0}}

    best, last = metrics(dsc), metrics(dsc if last_dsc is None else last_dsc)
    protocol = [o for o in overrides if o.startswith(("train.", "data."))]
    files.write(RunFiles.CONFIG, {"hash": "x", "train": {"image_size": image_size, "batch_size": 8, "labeled_bs": 4},
                                  "method": {"consistency": float(tag.split("=")[1]) if tag.startswith("w=") else 0.1}})
    files.write(RunFiles.METRICS, {**best, "policy": {}})
    files.write(RunFiles.METRICS_LAST, {**last, "policy": {}})
    for it in range(100, iterations + 1, 100):
        files.append_log({"stage": "train", "iteration": it, "loss": 1.0 / it})
        files.append_log({"stage": "train", "iteration": it, "val_dice": dsc / 100 * it / iterations})
    files.write(RunFiles.RECORD, {
        "dataset": dataset, "profile": profile, "method": method, "paper_name": paper_name or method.upper(),
        "variant": tag, "ratio": ratio, "seed": seed, "overrides": list(overrides), "config_hash": f"h{iterations}",
        "eval_split": eval_split, "n_eval_volumes": cases, "stage_iterations": {"train": iterations},
        "schedule": {"image_size": image_size, "batch_size": 8, "labeled_bs": 4, "lr_schedule": "poly", "select": "best"},
        "protocol_overrides": protocol, "overrides_hash": overrides_hash(protocol),
        "selection": {"rule": "best", "iteration": iterations // 2, "val_dice": dsc / 100},
        "summary": best["foreground_mean"], "per_class": best["mean"],
        "last": {"iteration": iterations, "summary": last["foreground_mean"], "per_class": last["mean"]},
        "timing": {"wall_s": 60.0, "iters_per_s": {"train": 10.0}}, "precision": "fp32",
        "metric_policy": {"spacing": "voxels" if units == "voxels" else "mm from the dataset"},
    })
    files.mark_done()
    return files.folder


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """Phantom (mm) at 5 %, ACDC (voxels, validation split) at 10 %, MT also at 40 iterations with two tags."""
    root = tmp_path / "results"
    for seed in (0, 1):
        fake_run(root, "synthetic-cardiac", "mt", 5, seed, 60 + seed)
        fake_run(root, "synthetic-cardiac", "unet-l", 5, seed, 55 + seed)
        fake_run(root, "acdc", "mt", 10, seed, 20 + seed, units="voxels", eval_split="val")
    for w, value in (("0.3", 40), ("1.0", 45)):
        fake_run(root, "synthetic-cardiac", "mt", 5, 0, value, tag=f"w={w}", iterations=40,
                 overrides=("train.iterations=40", f"method.consistency={w}"))
    fake_run(root, "synthetic-cardiac", "mt", 10, 0, 70)
    return root


def _captured(monkeypatch: pytest.MonkeyPatch, name: str) -> list[pd.DataFrame]:
    """Every frame handed to seaborn's ``name`` (lineplot / boxplot) while a figure is drawn."""
    import seaborn as sns

    seen: list[pd.DataFrame] = []
    original = getattr(sns, name)

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["data"].copy())
        return original(*args, **kwargs)

    monkeypatch.setattr(sns, name, spy)
    return seen


def test_the_ratio_figure_never_joins_datasets_or_units(mixed: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from sslbench.report.plots import plot_ratio

    seen = _captured(monkeypatch, "lineplot")
    paths = plot_ratio(mixed, tmp_path / "ratio")
    stems = sorted({p.stem for p in paths})
    assert stems == ["ratio-acdc-quick", "ratio-synthetic-cardiac-quick", "ratio-synthetic-cardiac-quick+" +
                     stems[-1].rsplit("+", 1)[1]]
    for frame in seen:                                   # each line plot: one dataset, one unit, one schedule
        assert frame.dataset.nunique() == 1 and frame.units.nunique() == 1 and frame.profile_key.nunique() == 1
    mt_phantom = [f for f in seen if set(f.dataset) == {"synthetic-cardiac"} and "MT" in set(f.name)]
    assert all(set(f[f.name == "MT"].ratio) <= {5.0, 10.0} for f in mt_phantom)


def test_the_param_figure_never_averages_across_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sslbench.report.plots import plot_param

    root = tmp_path / "r"
    for ds, base in (("acdc", 20), ("synthetic-cardiac", 60)):
        for w in ("0.1", "1.0"):
            fake_run(root, ds, "mt", 5, 0, base + float(w), tag=f"w={w}")
    seen = _captured(monkeypatch, "lineplot")
    paths = plot_param(root, tmp_path / "param", "method.consistency")
    assert len(paths) == 4                                # two figures (PNG + PDF each), one per dataset
    assert sorted(tuple(sorted(f.dataset.unique())) for f in seen) == [("acdc",), ("synthetic-cardiac",)]
    assert sorted(round(f.dsc.mean(), 2) for f in seen) == [20.55, 60.55]   # never "30 ± 18" across datasets


def test_the_classes_figure_keeps_tags_and_schedules_apart(mixed: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from sslbench.report.plots import plot_classes

    seen = _captured(monkeypatch, "boxplot")
    plot_classes(mixed, tmp_path / "classes", dataset="synthetic-cardiac", ratio=5)
    names = [sorted(f.name.unique()) for f in seen]
    assert ["MT", "UNET-L"] in names and ["MT (w=0.3)", "MT (w=1.0)"] in names   # 600 vs 40 iterations: apart
    assert len(seen) == 2


def test_the_classes_figure_without_a_ratio_draws_one_per_ratio(mixed: Path, tmp_path: Path) -> None:
    from sslbench.report.plots import plot_classes

    paths = plot_classes(mixed, tmp_path / "c", dataset="synthetic-cardiac", profile="quick")
    stems = {p.stem for p in paths}
    assert {"c-synthetic-cardiac-quick-10pct", "c-synthetic-cardiac-quick-5pct"} < stems
    assert len(stems) == 3 and any(s.startswith("c-synthetic-cardiac-quick+") for s in stems)  # the 40-iteration runs


def test_tables_split_schedules_and_state_the_protocol(mixed: Path) -> None:
    from sslbench.report.tables import tables

    text = tables(mixed, "markdown")
    captions = [line for line in text.splitlines() if line.startswith("**")]
    assert len(captions) == 3                            # acdc, phantom quick, phantom quick+<hash>
    acdc = next(c for c in captions if c.startswith("**acdc"))
    assert "evaluated on the val split (4 volumes)" in acdc and "on the same volumes it is scored on" in acdc
    assert "ASSD in voxels" in acdc and "600 iterations at 64 px, batch 8 (4 labeled)" in acdc
    tagged = next(c for c in captions if "train.iterations=40" in c)
    assert "40 iterations" in tagged and "1 seed(s) per cell" in tagged
    phantom = next(c for c in captions if c.startswith("**synthetic-cardiac, profile quick:"))
    # MT's 10 % run has seed 0 alone, its 5 % runs and UNet-L's seeds 0 and 1: named by id
    assert "seeds per cell differ (MT 5 %: 0, 1; MT 10 %: 0; UNET-L 5 %: 0, 1)" in phantom
    assert "evaluated on the test split" in phantom and "ASSD in mm" in phantom


def test_csv_tables_keep_numbers_and_spreads_apart(mixed: Path) -> None:
    import io

    from sslbench.report.tables import tables

    frame = pd.read_csv(io.StringIO(tables(mixed, "csv", dataset="acdc")))
    row = frame[frame.Method == "MT"].iloc[0]
    assert row["10% DSC mean"] == pytest.approx(20.5) and row["10% DSC sd"] == pytest.approx(0.7071, abs=1e-4)
    assert row["10% DSC n"] == 2 and row["asd_unit"] == "voxels" and row["checkpoint"] == "best"
    assert not frame.astype(str).apply(lambda c: c.str.contains("±")).any().any()


def test_the_last_checkpoint_on_request(tmp_path: Path) -> None:
    from sslbench.report.tables import tables

    root = tmp_path / "r"
    fake_run(root, "acdc", "mt", 10, 0, 70, last_dsc=64)
    assert "| MT       | 70.0" in tables(root) and "| MT       | 64.0" in tables(root, checkpoint="last")
    assert "the last weights" in tables(root, checkpoint="last")


def test_latex_tables_are_booktabs_with_caption_and_label(mixed: Path) -> None:
    from sslbench.report.cost import cost_table
    from sslbench.report.tables import paper_table, tables

    for text in (tables(mixed, "latex", dataset="acdc"), paper_table(mixed, 1, "latex", dataset="acdc"),
                 cost_table(mixed, "latex")):
        assert "\\toprule" in text and "\\midrule" in text and "\\bottomrule" in text
        assert "\\caption{" in text and "\\label{" in text and "\\begin{table}" in text


def test_vs_paper_says_when_the_protocol_is_not_the_papers(mixed: Path) -> None:
    from sslbench.report.tables import paper_table

    text = paper_table(mixed, 1, "markdown", dataset="acdc", vs_paper=True)
    caveat = next(line for line in text.splitlines() if "caveat" in line)
    assert "validation split, which also selected the model" in caveat and "600 iterations" in caveat
    assert "64 px" in caveat and "2 seed(s) per cell (the paper: 3)" in caveat
    with pytest.raises(Exception, match="2 profiles or schedules"):
        paper_table(mixed, 1, "markdown", dataset="synthetic-cardiac")


def test_the_tidy_export(mixed: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    import sslbench.report as report
    from sslbench.cli import main

    df = report.load_results(str(mixed))                # str or Path
    runs = df.groupby(["dataset", "profile_key", "method", "tag", "ratio", "seed"]).ngroups
    assert runs == 9 and len(df) == 9 * 2 * 4 * 3        # runs x checkpoints x cases x classes
    assert {"case", "class", "dsc", "assd", "hd95", "distance_unit", "eval_split", "selected_on_eval_split",
            "best_iteration", "iterations", "wall_s", "config_hash", "checkpoint"} <= set(df.columns)
    acdc = df[(df.dataset == "acdc") & (df.checkpoint == "selected")]
    assert set(acdc.distance_unit) == {"voxels"} and acdc.selected_on_eval_split.all()
    out = tmp_path / "results.csv"
    result = CliRunner().invoke(main, ["export", "--results", str(mixed), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(out)) == len(df)
    bad = CliRunner().invoke(main, ["export", "--results", str(mixed), "-o", str(tmp_path / "x.txt")])
    assert bad.exit_code == 2 and "must end in .csv or .parquet" in bad.output


def test_curves_come_from_the_training_logs(mixed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sslbench.report.plots import plot_curves

    seen = _captured(monkeypatch, "lineplot")
    paths = plot_curves(mixed, tmp_path / "curves", dataset="acdc")
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    val = next(f for f in seen if set(f.what) == {"val_dice"})
    assert val.step.max() == 600 and val.value.max() == pytest.approx(21.0)


def test_a_figure_goes_inside_an_existing_folder_never_beside_it(mixed: Path, tmp_path: Path) -> None:
    from sslbench.report.plots import plot_ratio

    folder = tmp_path / "figs"
    folder.mkdir()
    paths = plot_ratio(mixed, folder, dataset="acdc")
    assert all(p.parent == folder for p in paths) and not (tmp_path / "figs.png").exists()
