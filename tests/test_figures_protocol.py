"""`bench plot` states what its figures show and nothing else: a point pools seeds only, a column names
its ratio, every option acts or is refused, a filter that leaves nothing says which one, each figure
has a caption file with its protocol, and the curves and paired kinds draw what they promise. Records
are written by hand (``fake_run``), so each figure is checked on known numbers without training."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from .test_cli import bench
from .test_views import _captured, fake_run


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """ACDC, profile quick: MT at 5 % (3 seeds, consistency 0.1) and 10 % (2 seeds), an EMA variant of MT
    and a consistency sweep point (w=0.5) at 5 %, UNet-L at 5 %; and MT on a 40-iteration schedule."""
    root = tmp_path / "results"
    for seed in (0, 1, 2):
        fake_run(root, "acdc", "mt", 5, seed, 60 + seed, paper_name="MT")
        fake_run(root, "acdc", "unet-l", 5, seed, 50 + seed, paper_name="UNet-L")
    for seed in (0, 1):
        fake_run(root, "acdc", "mt", 10, seed, 70 + seed, paper_name="MT")
        fake_run(root, "acdc", "mt", 5, seed, 64 + seed, paper_name="MT", tag="ema",
                 overrides=("method.ema_decay=0.9",))
        fake_run(root, "acdc", "mt", 5, seed, 66 + seed, paper_name="MT", tag="w=0.5",
                 overrides=("method.consistency=0.5",))
        fake_run(root, "acdc", "mt", 5, seed, 40 + seed, paper_name="MT", tag="short", iterations=200,
                 overrides=("train.iterations=200",))
    return root


def _err_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: ") and not any(line.startswith("Traceback") for line in lines), err
    assert sum(line.startswith("error:") for line in lines) == 1, err
    return lines[-1]


# ---------------------------------------------------------------------------------------- 1: param
def test_a_param_point_pools_seeds_only(sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sslbench.report.plots import plot_param

    seen = _captured(monkeypatch, "lineplot")
    paths = plot_param(sweep, tmp_path / "p", "method.consistency", profile="quick", methods=["mt"])
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    assert len(seen) == 2                                  # a panel per ratio: 5 % and 10 %
    for frame in seen:
        assert frame.ratio.nunique() == 1
        for _, point in frame.groupby(["line", "value"]):
            assert point.tag.nunique() == 1 and point.method.nunique() == 1 and point.seed.is_unique
    five = next(f for f in seen if set(f.ratio) == {5.0})
    plain = five[(five.line == "MT") & (five.value == 0.1)]
    assert sorted(plain.seed) == [0, 1, 2] and plain.dsc.mean() == pytest.approx(61.0)   # never with MT (ema)
    assert set(five[five.line == "MT"].value) == {0.1, 0.5}          # the sweep's tagged point joins MT's line
    assert set(five[five.line != "MT"].tag) == {"ema"}                # the EMA variant: a line of its own


def test_param_skips_schedules_that_do_not_vary_the_key(sweep: Path, tmp_path: Path) -> None:
    code, out, err = bench("plot", "param", "--param", "method.consistency", "--results", str(sweep),
                           "-o", str(tmp_path / "p"))
    assert code == 0, err
    assert "skipping acdc, quick (train.iterations=200): its runs do not vary it" in err
    assert [Path(p).name for p in out.split()] == [f"p-acdc-quick.{e}" for e in ("png", "pdf", "txt")]
    code, _, err = bench("plot", "param", "--param", "train.lr", "--results", str(sweep), "-o", str(tmp_path / "q"))
    assert code == 2 and "do not vary it in any dataset and schedule" in _err_line(err)


# ---------------------------------------------------------------------------------- 2: qualitative
class _Phantom:
    """What plot_qualitative reads of a prepared dataset: its classes and one case's volumes."""
    classes = ("background", "RV", "Myo", "LV")

    def volume(self, case: str) -> tuple[np.ndarray, np.ndarray]:
        label = np.zeros((4, 16, 16), np.uint8)
        label[:, 4:12, 4:12] = 1
        label[1, 6:10, 6:10] = 3
        return np.linspace(0, 1, 4 * 16 * 16, dtype=np.float32).reshape(4, 16, 16), label


def _predict(folder: Path, *cases: str) -> None:
    (folder / "predictions").mkdir()
    for case in cases:
        np.save(folder / "predictions" / f"{case}.npy", _Phantom().volume(case)[1])


def test_qualitative_columns_name_their_ratio_and_every_run_must_hold_the_case(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.axes

    import sslbench.cache
    from sslbench.base.errors import BenchError
    from sslbench.report.plots import caption_file, plot_qualitative

    root = tmp_path / "r"
    _predict(fake_run(root, "acdc", "mt", 5, 0, 60, paper_name="MT"), "case0", "case1")
    _predict(fake_run(root, "acdc", "mt", 10, 0, 70, paper_name="MT"), "case0")
    fake_run(root, "acdc", "unet-l", 5, 0, 50, paper_name="UNet-L")               # no predictions: left out
    monkeypatch.setattr(sslbench.cache, "prepare", lambda *a, **k: _Phantom())
    titles: list[str] = []
    original = matplotlib.axes.Axes.set_title
    monkeypatch.setattr(matplotlib.axes.Axes, "set_title",
                        lambda self, text, *a, **k: (titles.append(text), original(self, text, *a, **k))[1])
    paths = plot_qualitative(root, tmp_path / "q", "acdc")
    assert titles[:4] == ["Image", "Ground truth", "MT 5 %", "MT 10 %"]
    caption = caption_file(paths[0]).read_text()
    assert "case case0" in caption and "column MT 10 %: " in caption and "seed 0" in caption
    with pytest.raises(BenchError, match=r"--case case1: not among the saved predictions of MT 10 % \(saved by "
                                         r"every run shown: case0\)"):
        plot_qualitative(root, tmp_path / "q", "acdc", case="case1")
    titles.clear()
    plot_qualitative(root, tmp_path / "q5", "acdc", ratio=5, case="case1")       # one ratio: in the title
    assert titles[2] == "MT"


# ------------------------------------------------------------------------------- 3: every option
@pytest.mark.parametrize("args, flag", [
    (("ratio", "--ratio", "5"), "--ratio"), (("ratio", "--seed", "3"), "--seed"), (("classes", "--case", "x"), "--case"),
    (("curves", "--slices", "1,2"), "--slices"), (("param", "--param", "method.consistency", "--cache", "c"), "--cache"),
    (("classes", "--param", "train.lr"), "--param"), (("curves", "--checkpoint", "last"), "--checkpoint"),
    (("qualitative", "--dataset", "acdc", "--checkpoint", "last"), "--checkpoint"), (("ratio", "--keys", "lr"), "--keys"),
])
def test_an_option_the_kind_does_not_use_is_refused(sweep: Path, tmp_path: Path, args: tuple[str, ...],
                                                     flag: str) -> None:
    code, out, err = bench("plot", *args, "--results", str(sweep), "-o", str(tmp_path / "f"))
    line = _err_line(err)
    assert code == 2 and not out and flag in line and f"bench plot {args[0]} does not use" in line
    assert not list(tmp_path.glob("f*"))


def test_methods_filter_every_kind_and_a_typo_gets_a_suggestion(sweep: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    lines, boxes = _captured(monkeypatch, "lineplot"), _captured(monkeypatch, "boxplot")
    code, _, err = bench("plot", "ratio", "--methods", "mt", "--results", str(sweep), "-o", str(tmp_path / "r"))
    assert code == 0, err
    assert sorted(sorted(set(f.name)) for f in lines) == [["MT", "MT (ema)", "MT (w=0.5)"]] * 2 + [["MT (short)"]] * 2
    code, _, err = bench("plot", "classes", "--methods", "unet-l,mt@ema", "--ratio", "5", "--results", str(sweep),
                         "-o", str(tmp_path / "c"))
    assert code == 0, err
    assert len(boxes) == 1 and set(boxes[0].name) == {"UNet-L", "MT (ema)"}
    code, _, err = bench("plot", "curves", "--methods", "mtt", "--results", str(sweep), "-o", str(tmp_path / "x"))
    assert code == 2 and "--methods mtt: no finished run of it here; did you mean 'mt'?" in _err_line(err)
    code, _, err = bench("plot", "ratio", "--methods", "mt@nope", "--results", str(sweep), "-o", str(tmp_path / "x"))
    assert code == 2 and "runs of mt: mt, mt@ema, mt@short, mt@w=0.5" in _err_line(err)


# ------------------------------------------------------------------------- 4: a filter leaves nothing
@pytest.mark.parametrize("args, message", [
    (("curves", "--ratio", "7"), "no finished runs at 7 % labels (ratios with runs: 5, 10 %)"),
    (("classes", "--ratio", "7"), "no finished runs at 7 % labels (ratios with runs: 5, 10 %)"),
    (("ratio", "--dataset", "lits"), "--dataset lits: no finished runs of it (datasets with runs: acdc)"),
    (("ratio", "--profile", "full"), ("--profile full: no finished runs of it (profiles with runs: quick; quick "
                                     "(train.iterations=200) [quick+")),
    (("qualitative", "--dataset", "acdc", "--seed", "9"), ("--seed 9: no finished runs of acdc with it (seeds with "
                                                          "runs: 0, 1, 2)")),
])
def test_a_filter_that_leaves_nothing_names_what_there_is(sweep: Path, tmp_path: Path, args: tuple[str, ...],
                                                           message: str) -> None:
    code, _, err = bench("plot", *args, "--results", str(sweep), "-o", str(tmp_path / "f"))
    assert code == 2 and message in _err_line(err)


# -------------------------------------------------------------------------------------- 5: no kind
def test_plot_without_a_kind_is_one_line_listing_the_kinds() -> None:
    code, out, err = bench("plot")
    assert code == 2 and not out and err.count("\n") == 1
    assert err.startswith("error: bench plot needs a KIND: one of ratio, classes, qualitative, param, curves, paired")


# ------------------------------------------------------------------------------ 6: captions, names
def test_each_figure_has_a_caption_file_and_default_names_say_the_dataset_once(
        sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.figure

    record = next(sweep.glob("acdc/quick/mt/ratio-10/seed-0/run.json"))
    rec = json.loads(record.read_text())
    record.write_text(json.dumps({**rec, "code": {"core": "0123456789ab", "method": ""}}))   # another code version
    titles: list[str] = []
    original = matplotlib.figure.Figure.suptitle
    monkeypatch.setattr(matplotlib.figure.Figure, "suptitle",
                        lambda self, text, *a, **k: (titles.append(text), original(self, text, *a, **k))[1])
    monkeypatch.chdir(tmp_path)
    code, out, err = bench("plot", "ratio", "--dataset", "acdc", "--results", str(sweep))
    assert code == 0, err
    written = out.split()
    key = next(p for p in written if "quick+" in p).split("quick+", 1)[1].split(".")[0]
    assert written == [f"figures/ratio-acdc-quick.{e}" for e in ("png", "pdf", "txt")] + \
        [f"figures/ratio-acdc-quick+{key}.{e}" for e in ("png", "pdf", "txt")]
    assert all((tmp_path / p).is_file() for p in written)
    assert sorted(titles) == ["acdc, quick (train.iterations=200): mean ± sd over seeds",
                              "acdc, quick: mean ± sd over seeds"]                  # never the bare hash
    caption = (tmp_path / "figures/ratio-acdc-quick.txt").read_text()
    for text in ("evaluated on: the test split (4 volumes), the weights with the best validation Dice",
                 "seeds per point: 2-3 (MT 10 %: 2, MT (ema) 5 %: 2, MT (w=0.5) 5 %: 2)", "schedule: quick\n",
                 "units: DSC [%], ASD = ASSD in mm", "code: runs from 2 code versions"):
        assert text in caption, caption
    hashed = (tmp_path / f"figures/ratio-acdc-quick+{key}.txt").read_text()
    assert f"schedule: quick (train.iterations=200) (profile key quick+{key}: the profile plus a hash" in hashed
    assert "training: 200 iterations" in hashed and "code:" not in hashed
    assert "warning: runs from 2 code versions" in err


# --------------------------------------------------------------------------- 7: curves and paired
def test_curves_draw_any_logged_key_and_mark_where_a_stage_begins(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.axes

    from sslbench.base.errors import BenchError
    from sslbench.report.plots import caption_file, plot_curves

    root = tmp_path / "r"
    for seed in (0, 1):
        folder = fake_run(root, "acdc", "mona", 5, seed, 60, paper_name="MONA")
        lines = [{"stage": "pretrain", "iteration": it, "loss": 2.0, "lr": 0.01} for it in range(50, 301, 50)]
        lines += [{"stage": "train", "iteration": it, "loss": 1.0, "lr": 0.001} for it in range(50, 201, 50)]
        lines += [{"stage": "train", "iteration": 200, "val_dice": 0.5}]
        (folder / "train_log.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    seen = _captured(monkeypatch, "lineplot")
    marks: list[float] = []
    original = matplotlib.axes.Axes.axvline
    monkeypatch.setattr(matplotlib.axes.Axes, "axvline",
                        lambda self, x=0, *a, **k: (marks.append(x), original(self, x, *a, **k))[1])
    paths = plot_curves(root, tmp_path / "c", keys=["lr", "loss"])
    assert [sorted(set(f.what)) for f in seen] == [["lr"], ["loss"]]
    lr = seen[0]
    assert lr[lr.stage == "train"].step.min() == 350 and lr[lr.stage == "pretrain"].step.max() == 300
    assert marks == [300, 300]                                          # one dashed line per panel
    assert "stage boundaries (dashed): MONA: train from iteration 300" in caption_file(paths[0]).read_text()
    with pytest.raises(BenchError, match=r"--keys grad: not in the training logs of these runs \(logged: loss, lr, "
                                         r"val_dice\)"):
        plot_curves(root, tmp_path / "c", keys=["loss", "grad"])
    for record in root.glob("acdc/quick/mona/ratio-5/seed-*/run.json"):      # the record states the lengths
        rec = json.loads(record.read_text())
        record.write_text(json.dumps({**rec, "stage_iterations": {"pretrain": 320, "train": 200}}))
    seen.clear()
    marks.clear()
    plot_curves(root, tmp_path / "c2", keys=["lr"])
    assert seen[0][seen[0].stage == "train"].step.min() == 370 and marks == [320]


def test_paired_scatters_two_methods_by_seed_and_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sslbench.report.plots import caption_file, plot_paired

    root = tmp_path / "r"
    for seed in (0, 1):
        fake_run(root, "acdc", "unet-l", 5, seed, 50 + seed, paper_name="UNet-L", last_dsc=40)
        fake_run(root, "acdc", "mt", 5, seed, 60 + 2 * seed, paper_name="MT", last_dsc=45)
    fake_run(root, "acdc", "mt", 5, 2, 99, paper_name="MT")                       # no UNet-L partner
    fake_run(root, "acdc", "mt", 5, 0, 10, paper_name="MT", tag="ema")             # another variant: not MT
    seen = _captured(monkeypatch, "scatterplot")
    paths = plot_paired(root, tmp_path / "pair", ["unet-l", "mt"])
    (pairs,) = seen
    assert len(pairs) == 8 and sorted(set(pairs.seed)) == ["0", "1"]              # 2 seeds x 4 cases
    gap = (pairs.b - pairs.a).groupby(pairs.seed).agg(["min", "max"])
    assert gap.loc["0"].tolist() == pytest.approx([10, 10]) and gap.loc["1"].tolist() == pytest.approx([11, 11])
    caption = caption_file(paths[0]).read_text()
    assert "pairs: 8 (4 cases x seeds 0, 1); seeds without a partner, left out: 2" in caption
    assert "MT better on 8 of 8 pairs, mean difference +10.50 points" in caption
    seen.clear()
    plot_paired(root, tmp_path / "last", ["unet-l", "mt"], checkpoint="last")
    assert (seen[0].b - seen[0].a).round(6).unique().tolist() == [5.0]            # metrics-last.json
    code, out, err = bench("plot", "paired", "--methods", "unet-l,mt@ema", "--results", str(root),
                           "-o", str(tmp_path / "e"))
    assert code == 0 and out.split()[-1].endswith("e.txt"), err
    code, _, err = bench("plot", "paired", "--methods", "mt", "--results", str(root))
    assert code == 2 and "two methods" in _err_line(err)


def test_the_caption_lines_of_a_figure_come_from_its_own_runs(sweep: Path, tmp_path: Path) -> None:
    """The classes figure's caption counts volumes and seeds per box from the runs it drew."""
    from sslbench.report.plots import caption_file, plot_classes

    paths = plot_classes(sweep, tmp_path / "c", profile="quick", ratio=10)
    caption = caption_file(paths[0]).read_text()
    assert "volumes x seeds per box: MT: 4 x 2" in caption and "UNet-L" not in caption
    assert [p.suffix for p in paths] == [".png", ".pdf"]
