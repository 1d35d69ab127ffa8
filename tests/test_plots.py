"""`bench plot`: every figure kind is produced from a small synthetic sweep, as PNG and PDF with a caption
file, and is not blank."""
from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import pytest

from .conftest import TINY_RUN
from .test_cli import bench

pytestmark = pytest.mark.slow


def assert_figure(paths_text: str) -> None:
    paths = [Path(p) for p in paths_text.split()]
    assert {p.suffix for p in paths} == {".png", ".pdf", ".txt"}
    caption = next(p for p in paths if p.suffix == ".txt").read_text()
    assert caption.startswith("figure: ") and "dataset: synthetic-cardiac" in caption and "schedule: " in caption
    png = next(p for p in paths if p.suffix == ".png")
    assert png.stat().st_size > 10_000
    assert mpimg.imread(png).std() > 0.01                                   # not a blank canvas
    assert next(p for p in paths if p.suffix == ".pdf").stat().st_size > 5_000


@pytest.fixture(scope="module")
def plot_runs(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("plot-results")
    assert bench("run", "--methods", "unet-l,mt", "--ratios", "5,10", "--seeds", "0,1", "--results", str(root),
                 "--quiet", "--no-table", "--save-predictions", *TINY_RUN)[0] == 0
    for weight in ("0.05", "0.5"):
        code, _, err = bench("run", "--methods", "mt", "--ratios", "5", "--results", str(root), "--quiet",
                             "--no-table", "--tag", f"w={weight}", *TINY_RUN, "--set", f"method.consistency={weight}")
        assert code == 0, err
    return root


@pytest.mark.parametrize("kind, extra", [
    ("ratio", ()), ("classes", ("--ratio", "5")), ("qualitative", ("--dataset", "synthetic-cardiac", "--ratio", "5")),
    ("param", ("--param", "method.consistency", "--methods", "mt")), ("curves", ("--keys", "loss,lr,val_dice")),
    ("paired", ("--methods", "unet-l,mt", "--ratio", "10")), ("qualitative", ("--dataset", "synthetic-cardiac")),
])
def test_every_figure(plot_runs: Path, tmp_path: Path, kind: str, extra: tuple[str, ...]) -> None:
    code, out, err = bench("plot", kind, "--results", str(plot_runs), "-o", str(tmp_path / kind), *extra)
    assert code == 0, err
    assert_figure(out)


def test_tagged_variants_get_their_own_rows(plot_runs: Path) -> None:
    code, out, _ = bench("table", "--results", str(plot_runs))
    assert code == 0 and "| MT (w=0.05)" in out and "| MT (w=0.5)" in out and "| MT  " in out


def test_plot_errors(plot_runs: Path, tmp_path: Path) -> None:
    assert bench("plot", "param", "--results", str(plot_runs))[0] == 2
    code, _, err = bench("plot", "param", "--results", str(plot_runs), "--param", "train.lr")
    assert code == 2 and "do not vary it" in err
    assert bench("plot", "ratio", "--results", str(tmp_path / "none"))[0] == 2
