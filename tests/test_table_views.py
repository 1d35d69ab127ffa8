"""Tables, marks, the export and the cost table never mix what they must keep apart, and every
option of `bench table` acts or is refused (records written by hand with ``fake_run``)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from .test_views import fake_run


def bench(*args: str) -> tuple[int, str, str]:
    from sslbench.cli import main

    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def _rows(text: str) -> dict[str, list[str]]:
    return {line.split("|")[1].strip().strip("*"): [c.strip() for c in line.split("|")[2:-1]]
            for line in text.splitlines() if line.startswith("| ") and "Method" not in line}


def test_marks_come_from_the_weights_the_table_shows(tmp_path: Path) -> None:
    """MT's selected weights beat UNet-L on every case (marked †); its last weights equal UNet-L's per
    case, so with --checkpoint last neither row may be marked."""
    from sslbench.report.tables import paper_table

    root = tmp_path / "r"
    for seed in (0, 1):
        fake_run(root, "synthetic-cardiac", "mt", 5, seed, 60, last_dsc=55, paper_name="MT")
        fake_run(root, "synthetic-cardiac", "unet-l", 5, seed, 55, paper_name="UNet-L")
    best = paper_table(root, 1, dataset="synthetic-cardiac")
    last = paper_table(root, 1, dataset="synthetic-cardiac", checkpoint="last")
    assert "†" in _rows(best)["MT"][0]
    assert "†" not in _rows(last)["MT"][0] and "†" not in _rows(last)["UNet-L"][0]


def test_vs_paper_compares_asd_of_one_definition_and_only_the_same_dataset(tmp_path: Path) -> None:
    from sslbench.report.tables import paper_table

    root = tmp_path / "r"
    fake_run(root, "acdc", "mt", 5, 0, 80, paper_name="MT", units="voxels")
    fake_run(root, "synthetic-liver", "mt", 5, 0, 70, paper_name="MT")
    text = paper_table(root, 1, fmt="csv", dataset="acdc", vs_paper=True)
    row = pd.read_csv(io.StringIO(text)).set_index("Method").loc["MT"]
    # ACDC MT 5 % published: 58.3 / 11.2 (directed ASD, voxels); the record's asd_legacy is 3.0, its ASSD 3.5
    assert row["5% ASD paper"] == pytest.approx(11.2) and row["5% ASD Δ"] == pytest.approx(3.0 - 11.2)
    md = paper_table(root, 1, dataset="acdc", vs_paper=True)
    assert "directed asd(pred, gt) in voxels" in md and "never with the ASSD" in md
    liver = paper_table(root, 1, dataset="synthetic-liver", vs_paper=True)
    assert "(published: acdc)" not in liver and "no published numbers for synthetic-liver" in liver
    assert _rows(liver)["MT"][1] == "—"                           # no ACDC number beside a phantom
    asked = paper_table(root, 1, dataset="synthetic-liver", vs_paper=True, paper_dataset="lits")
    assert "(published: lits)" in asked and _rows(asked)["MT"][1] != "—"


def test_the_caption_names_the_seeds_of_each_cell(tmp_path: Path) -> None:
    from sslbench.report.tables import tables

    root = tmp_path / "r"
    fake_run(root, "synthetic-cardiac", "mt", 5, 2, 60)
    fake_run(root, "synthetic-cardiac", "unet-l", 5, 0, 50)
    text = tables(root)
    assert "1 seed(s) per cell" not in text
    assert "seeds per cell differ (MT 5 %: 2; UNET-L 5 %: 0)" in text
    fake_run(root, "synthetic-cardiac", "mt", 5, 0, 60)
    fake_run(root, "synthetic-cardiac", "unet-l", 5, 2, 50)
    assert "2 seed(s) per cell (0, 2)" in tables(root)


def test_a_paper_table_as_csv_holds_numbers_with_their_protocol(tmp_path: Path) -> None:
    from sslbench.report.tables import paper_table

    root = tmp_path / "r"
    for seed in (0, 1):
        fake_run(root, "acdc", "mt", 5, seed, 60 + seed, paper_name="MT", units="voxels", eval_split="val")
    frame = pd.read_csv(io.StringIO(paper_table(root, 1, fmt="csv", dataset="acdc", checkpoint="last")))
    row = frame.set_index("Method").loc["MT"]
    assert row["5% DSC mean"] == pytest.approx(60.5) and row["5% DSC sd"] == pytest.approx(0.7071, abs=1e-4)
    assert row["5% DSC n"] == 2 and row["5% ASD mean"] == pytest.approx(3.5)
    assert row.asd_unit == "voxels" and row.dsc_unit == "%" and row.checkpoint == "last"
    assert row.profile_key == "quick" and row.eval_split == "val" and row.dataset == "acdc"
    for column in frame.columns:
        if column.endswith(("mean", "sd", "n", "paper", "Δ")):
            assert frame[column].dtype.kind in "fi", column      # numbers, never "34.8 ± 17.6"


def test_the_export_names_an_untagged_run_and_the_recipe_groups_as_the_tables(tmp_path: Path) -> None:
    """An empty tag read back from CSV is NaN, which a groupby drops; the documented recipe pools
    exactly a table's cell (not the tagged variants, another schedule or a val-split run)."""
    import sslbench.report as report
    from sslbench.report.tables import tables

    root = tmp_path / "r"
    for seed in (0, 1):
        fake_run(root, "synthetic-cardiac", "mt", 5, seed, 30 + seed)
    fake_run(root, "synthetic-cardiac", "mt", 5, 0, 70, tag="ema")
    fake_run(root, "synthetic-cardiac", "mt", 5, 1, 80, eval_split="val", profile="other")
    out = tmp_path / "results.csv"
    code, _, err = bench("export", "--results", str(root), "-o", str(out))
    assert code == 0, err
    df = pd.read_csv(out)
    assert df.tag.notna().all() and set(df.tag) == {report.NO_TAG, "ema"}
    per_run = df.groupby([*report.CELL_KEYS, "seed"]).dsc.mean()
    cells = per_run.groupby(level=list(report.CELL_KEYS)).agg(["mean", "std", "count"])
    plain = cells.loc[("synthetic-cardiac", "quick", "test", "selected", "mt", report.NO_TAG, 5.0)]
    assert plain["count"] == 2 and f"{plain['mean']:.1f}" == "30.5"
    assert "30.5 ± 0.7" in tables(root, profile="quick")            # the table's cell, the same number
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "report.CELL_KEYS" in readme and 'groupby(["dataset", "method", "ratio"])' not in readme
    with pytest.raises(Exception, match="reserved"):
        from sslbench.run.specs import slug

        slug(report.NO_TAG)


def test_the_cost_table_gives_each_stage_its_own_rate(tmp_path: Path) -> None:
    root = tmp_path / "r"
    folder = fake_run(root, "synthetic-cardiac", "mona", 5, 0, 60, paper_name="MONA")
    record = json.loads((folder / "run.json").read_text())
    record["timing"]["iters_per_s"] = {"pretrain": 1.40, "train": 0.35}
    (folder / "run.json").write_text(json.dumps(record))
    fake_run(root, "synthetic-cardiac", "mt", 5, 0, 60, paper_name="MT")
    code, text, err = bench("table", "--results", str(root), "--cost", "--format", "csv")
    assert code == 0, err
    cost = pd.read_csv(io.StringIO(text)).set_index("Method")
    assert cost.loc["MONA", "it/s per stage"] == "pretrain 1.40 / train 0.35"
    assert str(cost.loc["MT", "it/s per stage"]) == "10.00"
    code, _, err = bench("table", "--results", str(root), "--cost", "--profile", "xyz")
    assert code == 2 and "--profile xyz: no completed runs" in err and "quick" in err


def test_keys_list_each_schedule_with_its_overrides(tmp_path: Path) -> None:
    root = tmp_path / "r"
    fake_run(root, "synthetic-cardiac", "mt", 5, 0, 60)
    fake_run(root, "synthetic-cardiac", "mt", 5, 0, 40, tag="w=0.3", iterations=40,
             overrides=("train.iterations=40", "method.consistency=0.3"))
    code, text, err = bench("table", "--results", str(root), "--keys", "--format", "csv")
    assert code == 0, err
    keys = pd.read_csv(io.StringIO(text))
    assert len(keys) == 2 and "(the profile as it is)" in set(keys["schedule overrides"])
    tagged = keys[keys["schedule overrides"] == "train.iterations=40"].iloc[0]
    assert tagged["profile key"].startswith("quick+") and "method.consistency=0.3" in tagged["tags (their --set)"]


@pytest.mark.parametrize(("args", "message"), [
    (("--table", "1", "--methods", "mt"), "--methods would be ignored"),
    (("--table", "1", "--per-class"), "--per-class would be ignored"),
    (("--cost", "--checkpoint", "last"), "--checkpoint would be ignored"),
    (("--cost", "--per-class"), "--per-class would be ignored"),
    (("--vs-paper",), "--vs-paper would be ignored"),
    (("--table", "1", "--paper-dataset", "acdc"), "--paper-dataset needs --vs-paper"),
    (("--table", "1", "--vs-paper", "--paper-dataset", "lvier"), "table 1 publishes acdc, lits"),
    (("--table", "1", "--dataset", "synthetic-cardiax"), "did you mean 'synthetic-cardiac'"),
    (("--dataset", "synthetic-cardiax"), "did you mean 'synthetic-cardiac'"),
    (("--table", "1", "--profile", "quik"), "did you mean 'quick'"),
    (("--keys", "--methods", "mt"), "--methods would be ignored"),
])
def test_table_options_act_or_are_refused(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    root = tmp_path / "r"
    fake_run(root, "synthetic-cardiac", "mt", 5, 0, 60, paper_name="MT")
    code, out, err = bench("table", "--results", str(root), *args)
    assert code == 2 and message in err and err.count("\n") == 1 and out == ""


def test_a_missing_results_folder_is_an_error_not_an_empty_layout(tmp_path: Path) -> None:
    code, out, err = bench("table", "--results", str(tmp_path / "resluts"), "--table", "1")
    assert code == 2 and "no such results folder" in err and out == ""


def test_a_pre_training_length_never_makes_a_schedule_of_its_own() -> None:
    """`bench run --methods mona --set train.pretrain_iterations=7` beside a sweep of the baselines
    changes MONA's pre-training, not the schedule every row of Table 1 shares: MONA keeps the one-stage
    baselines' key (its iterations per stage are in the caption), and a one-stage method ignores it."""
    from sslbench.run.specs import expand, overrides_hash, protocol_overrides

    specs = expand(["mona"], ["synthetic-cardiac"], [5], [0], "quick",
                   ["train.pretrain_iterations=7", "train.iterations=40"])
    specs += expand(["unet-l"], ["synthetic-cardiac"], [5], [0], "quick", ["train.iterations=40"])
    keys = {s.method: protocol_overrides(s) for s in specs}
    assert keys == {"mona": ["train.iterations=40"], "unet-l": ["train.iterations=40"]}
    assert len({overrides_hash(k) for k in keys.values()}) == 1
    assert next(s for s in specs if s.method == "mona").resolved().train.pretrain_iterations == 7


def test_status_shows_the_whole_running_sweep_and_what_keys_and_tags_mean(tmp_path: Path) -> None:
    from sslbench.base.run_files import run_dir
    from sslbench.run.status import collect, render
    from sslbench.run.sweep_plan import sweep_plan

    root = tmp_path / "r"
    fake_run(root, "synthetic-cardiac", "mt", 5, 0, 40, tag="w=0.3", iterations=40,
             overrides=("train.iterations=40", "method.consistency=0.3"))
    planned = [run_dir(root, "synthetic-cardiac", "quick", "mt@w=0.3", 5, 0)] + \
        [run_dir(root, "synthetic-cardiac", "quick", "mt", 5, s) for s in (0, 1, 2)]
    with sweep_plan(root, planned):
        states = collect(root)
        text = render(states)
        assert len(states) == 4 and sum(s.state == "pending" for s in states) == 3
        assert "not started; planned by the sweep of pid" in text and text.splitlines()[-1].startswith("4 run(s)")
        assert "schedule quick (train.iterations=40)" in text and "--set train.iterations=40; method.consistency=0.3" in text
    assert len(collect(root)) == 1 and not list((root / ".sweeps").iterdir())   # the sweep ended: its plan is gone


def test_a_plan_of_a_killed_sweep_or_a_damaged_one_is_ignored(tmp_path: Path) -> None:
    from sslbench.run.status import collect

    root = tmp_path / "r"
    fake_run(root, "synthetic-cardiac", "mt", 5, 0, 40)
    plans = root / ".sweeps"
    plans.mkdir()
    (plans / "host-1.json").write_text(json.dumps({"runs": ["synthetic-cardiac/quick/mt/ratio-5/seed-9"]}))
    (plans / "host-1.lock").write_text('{"host": "h", "pid": 1, "since": "x"}')   # nobody holds it
    assert [s.run for s in collect(root)] == ["synthetic-cardiac/quick/mt/ratio-5/seed-0"]


def test_dry_run_says_which_datasets_are_not_prepared(tmp_path: Path) -> None:
    code, out, err = bench("run", "--methods", "mt", "--dataset", "acdc", "--ratios", "5", "--seeds", "0",
                           "--results", str(tmp_path / "r"), "--cache", str(tmp_path / "cache"), "--dry-run")
    assert code == 0, err
    assert "acdc: not prepared in" in out and "bench prepare acdc --raw PATH" in out
    assert "about 0 min" not in out


def test_run_inputs_that_used_to_crash_or_collide_are_one_line_each(tmp_path: Path) -> None:
    """Reliability III 2, 5, 15, 16: ratios that name one folder, tags that slug alike, a 400-digit
    ratio, a value nested 3000 deep, a plugin that fails on import, a file as --results, a huge sweep."""
    from sslbench.base.errors import BenchError
    from sslbench.run.specs import check_ratio, expand, slug

    assert check_ratio(3.75) == 3.75
    with pytest.raises(BenchError, match="at most 6 significant digits"):
        check_ratio(3.7499999)
    with pytest.raises(BenchError, match="an integer of 400 digits"):
        check_ratio(int("9" * 400))
    tags = ["w/0.3", "w 0.3", "w-0.3", "w=0.3", "w+0.3", "w:0.3"]
    assert len({slug(t) for t in tags}) == len(tags) and slug("w-0.3") == "w-0.3"
    assert "~" in slug("w/0.3") and "/" not in slug("w/0.3")
    sweep = tmp_path / "big.toml"
    sweep.write_text('[sweep]\nmethods = ["mt"]\ndatasets = ["synthetic-cardiac"]\nratios = [' + "9" * 400 + "]\n")
    deep = "[" * 3000 + "]" * 3000
    plugin = tmp_path / "plug"
    plugin.mkdir()
    (plugin / "fails_on_import.py").write_text("raise RuntimeError('boom')\n")
    (plugin / "bad_syntax.py").write_text("def f(:\n")
    (tmp_path / "afile").write_text("")
    cases = [
        (("run", "--sweep", str(sweep), "--dry-run"), "an integer of 400 digits"),
        (("run", "--methods", "mt", "--ratios", "5", "--dry-run", "--set", f"method.consistency={deep}"), "nested too deep"),
        (("run", "--methods", "mt", "--ratios", "3.75,3.7499999", "--dry-run"), "at most 6 significant digits"),
        (("methods", "--plugin", "fails_on_import"), "failed on import: RuntimeError: boom"),
        (("methods", "--plugin", "bad_syntax"), "bad_syntax.py:1: invalid syntax"),
        (("run", "--methods", "mt", "--ratios", "5", "--results", str(tmp_path / "afile")), "names a file"),
        (("run", "--methods", "mt", "--ratios", "5", "--seeds", ",".join(map(str, range(100_001))), "--dry-run"),
         "at most 100000"),
    ]
    import sys
    sys.path.insert(0, str(plugin))
    try:
        for args, message in cases:
            code, out, err = bench(*args)
            errors = [line for line in err.splitlines() if line.startswith("error:")]
            assert code == 2 and len(errors) == 1 and message in errors[0] and "Traceback" not in err, (args, err[-300:])
    finally:
        sys.path.remove(str(plugin))
    assert len(expand(["mt"], ["synthetic-cardiac"], [5], list(range(20_000)), "quick")) == 20_000   # linear


def test_captions_say_what_each_tag_means(tmp_path: Path) -> None:
    from sslbench.report.tables import tables

    root = tmp_path / "r"
    fake_run(root, "synthetic-cardiac", "mt", 5, 0, 60, paper_name="MT")
    fake_run(root, "synthetic-cardiac", "mt", 5, 0, 40, tag="ema", paper_name="MT", overrides=("method.ema_decay=0.9",))
    assert "tags: MT (ema) = method.ema_decay=0.9" in tables(root)


def test_a_dry_run_never_estimates_a_refused_run_and_summarises_a_large_sweep(tmp_path: Path) -> None:
    from sslbench.run.plan import LIST_AT_MOST, plan_text
    from sslbench.run.specs import RunOptions, expand

    root = tmp_path / "r"
    fake_run(root, "synthetic-cardiac", "mt", 5, 0, 60)      # a run of another configuration in mt's folder
    fake_run(root, "synthetic-cardiac", "unet-l", 10, 0, 60)
    opts = RunOptions(results=root)
    text = plan_text(expand(["mt"], ["synthetic-cardiac"], [5], [0], "quick"), opts)
    assert "refused" in text and "1 refused" in text and "min from finished runs" not in text
    seeds = list(range(LIST_AT_MOST // 2 + 1))
    big = plan_text(expand(["mt", "unet-l"], ["synthetic-cardiac"], [5], seeds, "quick"), opts)
    assert big.splitlines()[0].startswith("| dataset") and len(big.splitlines()) < 10
    assert f"{2 * len(seeds)} run(s)" in big


def test_figure_captions_say_what_each_tag_means(tmp_path: Path) -> None:
    from sslbench.report.plots import caption_file, plot_ratio

    root = tmp_path / "r"
    fake_run(root, "synthetic-cardiac", "mt", 5, 0, 60, paper_name="MT")
    fake_run(root, "synthetic-cardiac", "mt", 5, 0, 40, tag="ema", paper_name="MT", overrides=("method.ema_decay=0.9",))
    (png, _) = plot_ratio(root, tmp_path / "f")
    assert "tags: MT (ema) = method.ema_decay=0.9" in caption_file(png).read_text()


def test_status_names_the_schedule_of_a_run_still_training(tmp_path: Path) -> None:
    from sslbench.run.status import collect, render

    folder = tmp_path / "r" / "synthetic-cardiac" / "quick" / "mt" / "ratio-5" / "seed-0"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({
        "hash": "x", "spec": {"method": "mt", "profile": "quick", "overrides": ["train.iterations=40"]},
        "schedule_key": {"protocol_overrides": ["train.iterations=40"], "profile_key": "quick+abcdef"}}))
    text = render(collect(tmp_path / "r"))
    assert "schedule quick (train.iterations=40)" in text and "--set train.iterations=40" in text


def test_a_tag_of_letters_outside_ascii_gets_a_folder_of_its_own() -> None:
    from sslbench.base.errors import BenchError
    from sslbench.run.specs import slug

    names = [slug(t) for t in ("ééé", "äöü", "///", "w/0.3")]
    assert len(set(names)) == 4 and names[0].startswith("tag~") and names[3].startswith("w-0.3~")
    with pytest.raises(BenchError, match="at most 100 characters"):
        slug("é" * 101)
    with pytest.raises(BenchError, match="visible character"):
        slug("   ")
