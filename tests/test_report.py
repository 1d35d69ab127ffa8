"""``bench report``: a static HTML report of a results folder, checked as files (every link and image
resolves, the leaderboard holds the records' numbers) and in a real browser (headless Chromium: the
page loads, its script runs without a console error, every image decodes; a screenshot is saved).
``.ci/run`` installs Debian's chromium, so CI runs the browser half; without it that half is skipped."""
from __future__ import annotations

import html.parser
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .test_views import fake_run


class _Page(html.parser.HTMLParser):
    """Links, image sources and leaderboard cells of one page."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.rows: list[list[str]] = []
        self._in_board = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("a", "img") and (a.get("href") or a.get("src")):
            self.refs.append(a.get("href") or a.get("src") or "")
        if tag == "table" and "leaderboard" in (a.get("class") or ""):
            self._in_board = True
        if self._in_board and tag == "tr":
            self.rows.append([])
        if self._in_board and tag == "td":
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_board = False
        if tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sslbench.report.html import write_report

    base = tmp_path_factory.mktemp("lab")
    root = base / "results"
    for seed, (mt, unet) in enumerate(((62.0, 55.0), (64.0, 57.0))):
        fake_run(root, "acdc", "mt", 10, seed, mt, paper_name="MT", units="voxels", eval_split="val")
        fake_run(root, "acdc", "unet-l", 10, seed, unet, paper_name="UNet-L", units="voxels", eval_split="val")
    fake_run(root, "acdc", "mt", 10, 0, 40.0, paper_name="MT", tag="w=1.0", units="voxels", eval_split="val")
    out = base / "report"
    here = Path.cwd()
    os.chdir(base)                                   # a relative results path, as a user types it
    try:
        write_report(Path("results"), Path("report"))
    finally:
        os.chdir(here)
    return out


def _pages(out: Path) -> dict[Path, _Page]:
    pages = {}
    for path in [out / "index.html", *sorted((out / "runs").glob("*.html"))]:
        page = _Page()
        page.feed(path.read_text())
        pages[path] = page
    return pages


def test_the_report_has_a_leaderboard_with_the_records_numbers(report: Path) -> None:
    index = _pages(report)[report / "index.html"]
    board = {row[0]: row for row in index.rows if row}
    assert set(board) == {"UNet-L", "MT", "MT (w=1.0)"}
    # † : differs from the strongest other row (paired Wilcoxon over 2 seeds x 4 volumes); one seed: too few pairs
    assert board["MT"][1] == "63.0 ± 1.4†" and board["UNet-L"][1] == "56.0 ± 1.4†" and board["MT (w=1.0)"][1] == "40.0"
    assert board["MT"][5] == "2" and board["MT (w=1.0)"][5] == "1"
    assert re.fullmatch(r"\[\d+\.\d, \d+\.\d\]", board["MT"][2])                       # the bootstrap interval
    text = (report / "index.html").read_text()
    assert "on the same volumes it is scored on" in text and "ASSD in voxels" in text     # the protocol caption
    assert re.search(r'<td class="best">63\.0 ± 1\.4', text)                               # best in bold


def test_every_link_and_image_of_the_report_resolves(report: Path) -> None:
    pages = _pages(report)
    assert len(pages) == 1 + 5                                                             # index + one page a run
    for path, page in pages.items():
        for ref in page.refs:
            assert not re.match(r"[a-z]+://", ref), f"{path.name}: {ref} leaves the folder"
            assert (path.parent / ref.split("#")[0]).resolve().is_file(), f"{path.name}: {ref} does not resolve"
    assert any(ref.endswith(".png") for ref in pages[report / "index.html"].refs)


def test_each_run_page_draws_its_curves_inline_from_its_log(report: Path) -> None:
    """Two inline SVG charts a run (loss, validation DSC), one polyline point per logged value, the
    validation points dotted; no plotting library image per run."""
    page = next((report / "runs").glob("*mt-w-1.0*.html")).read_text()
    charts = re.findall(r"<svg class=\"chart\".*?</svg>", page, re.S)
    assert len(charts) == 2 and "training loss" in charts[0] and "validation DSC" in charts[1]
    for chart in charts:
        points = re.search(r'<polyline points="([^"]+)"', chart).group(1).split()
        assert len(points) == 6                                         # fake_run logs 100, 200, ..., 600
        xs = [float(p.split(",")[0]) for p in points]
        assert xs == sorted(xs) and xs[0] < xs[-1]
    assert charts[1].count("<circle") == 6 and charts[0].count("<circle") == 0
    assert not list((report / "figures").glob("curves-*"))               # the per-run PNGs are gone
    assert "<td>validation Dice [%]</td><td>40.00</td>" in page          # the page's unit, not a fraction


def test_chart_geometry_and_ticks() -> None:
    from sslbench.report.run_charts import LEFT, RIGHT, WIDTH, chart, nice_ticks

    assert nice_ticks(0, 1) == [0, 0.25, 0.5, 0.75, 1.0]
    assert nice_ticks(3, 997) == [250, 500, 750]
    assert nice_ticks(5, 5) == [5] and nice_ticks(0, float("nan")) == []
    c = chart([0, 50, 100, 150], [1.0, float("nan"), 3.0, 2.0], "t", "y", True, [100.0])
    pts = [tuple(map(float, p.split(","))) for p in c["points"].split()]
    assert len(pts) == 3                                                # the NaN is skipped, not drawn as 0
    assert pts[0][0] == LEFT and pts[-1][0] == WIDTH - RIGHT            # x spans the box
    assert pts[1][1] < pts[2][1] < pts[0][1]                            # larger values higher (SVG y points down)
    assert c["stages"] == [round(LEFT + 100 / 150 * (WIDTH - LEFT - RIGHT), 1)]
    assert chart([0, 1], [float("inf"), float("nan")], "t", "y", False, []) is None
    assert chart([0, 1], [-1e308, 1e308], "t", "y", False, []) is None        # a span beyond the float range
    assert nice_ticks(0, 5e-324) == [0]                                         # a span below a power of ten
    big = chart([0, 150_000], [1.0, 2.0], "t", "y", False, [])
    assert [label for _, label in big["xticks"]] == ["0", "50000", "100000", "150000"]


def test_a_log_line_with_an_absurd_iteration_is_skipped(tmp_path: Path) -> None:
    import pandas as pd

    from sslbench.base.run_files import RunFiles
    from sslbench.report.plots import curve_frame

    files = RunFiles(tmp_path / "run")
    files.create()
    files.append_log({"stage": "train", "iteration": 10, "loss": 0.5})
    files.append_log({"stage": "train", "iteration": 10**400, "loss": 0.4})
    files.append_log({"stage": "train", "iteration": True, "loss": 0.3})
    long = curve_frame(pd.DataFrame([{"dir": str(files.folder), "name": "mt", "seed": 0}]))
    assert long.step.tolist() == [10]


def test_a_two_stage_run_marks_where_its_pretraining_ends() -> None:
    import pandas as pd

    from sslbench.report.run_charts import LEFT, RIGHT, WIDTH, run_charts

    rows = [{"stage": "pretrain", "step": it, "what": "loss", "value": 1.0} for it in range(50, 301, 50)]
    rows += [{"stage": "train", "step": 300 + it, "what": "loss", "value": 0.5} for it in range(50, 601, 50)]
    (loss,) = run_charts(pd.DataFrame(rows))                            # no validation rows: one chart
    assert loss["stages"] == [round(LEFT + (300 - 50) / (900 - 50) * (WIDTH - LEFT - RIGHT), 1)]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(_chromium() is None, reason="no Chromium here (.ci/run installs Debian's chromium)")
def test_the_report_in_a_real_browser(report: Path, tmp_path: Path) -> None:
    browser = _chromium()
    assert browser is not None
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files", "--enable-logging=stderr",
             "--v=0", "--virtual-time-budget=5000", f"--user-data-dir={tmp_path / 'profile'}"]
    for page in [report / "index.html", next((report / "runs").glob("*.html"))]:
        probe = page.with_name(f".probe-{page.name}")
        # an inline check after load: every image decoded (its natural size > 0)
        probe.write_text(page.read_text().replace("</body>", """<script>
window.addEventListener("load", function () {
  var bad = Array.prototype.filter.call(document.images, function (i) { return !i.complete || !i.naturalWidth; });
  document.body.dataset.brokenImages = String(bad.length);
  var drawn = Array.prototype.filter.call(document.querySelectorAll("svg.chart polyline"),
                                          function (l) { return l.getBBox().width > 0; });
  document.body.dataset.charts = String(drawn.length);
});
</script></body>"""))
        done = subprocess.run([browser, *flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True,
                              timeout=120, env={**os.environ, "HOME": str(tmp_path)})
        probe.unlink()
        assert done.returncode == 0, done.stderr[-2000:]
        dom = done.stdout
        assert 'data-ready="yes"' in dom, "the page's script did not run"
        assert 'data-broken-images="0"' in dom, "an image did not load"
        if page.parent.name == "runs":
            assert 'data-charts="2"' in dom, "the run's two curve charts were not drawn"
        errors = [line for line in done.stderr.splitlines() if "CONSOLE" in line and ("Error" in line or "error" in line)]
        assert not errors, errors
    shot = tmp_path / "report.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1280,1400", (report / "index.html").as_uri()],
                   capture_output=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)})
    assert shot.is_file() and shot.stat().st_size > 10_000
    if os.environ.get("SSLBENCH_REPORT_SCREENSHOT"):                      # README's screenshot, on purpose only
        shutil.copy(shot, os.environ["SSLBENCH_REPORT_SCREENSHOT"])
