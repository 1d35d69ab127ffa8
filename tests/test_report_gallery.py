"""``bench report``'s worst-case gallery: under each cell's worst-case table, for a case whose
prediction the run saved, a PNG of its slice with the most wrong voxels (FP + FN over the foreground
classes), drawn from the prepared phantom; no image (and one line saying why) where the prepared data
is missing or is not the data the run was scored on. Runs are written by hand (``fake_run``) over the
session's prepared phantom, with predictions wrong on known slices only."""
from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .test_views import fake_run

WRONG_SLICE = 5            # case001's only wrong slice (neither the first nor the one of most foreground)
QUOTED = 'CCT "<i>"'        # a method name the alt text must carry escaped


def _as_phantom_run(folder: Path, cases: dict[str, float], fingerprint: str | None) -> None:
    """Give a fake run these phantom cases (case -> Dice of every class) and its record this data fingerprint."""
    data = json.loads((folder / "metrics.json").read_text())
    classes = list(data["metric_per_case"][0]["metrics"])
    data["metric_per_case"] = [{"case": c, "spacing": None,
                                "metrics": {k: {"dice": d, "assd": 2.0, "asd": 2.0, "hd95": 5.0} for k in classes}}
                               for c, d in cases.items()]
    (folder / "metrics.json").write_text(json.dumps(data))
    record = json.loads((folder / "run.json").read_text())
    if fingerprint is not None:
        record["data"] = {"name": record["dataset"], "fingerprint": fingerprint}
    (folder / "run.json").write_text(json.dumps(record))


def _save(folder: Path, case: str, pred: np.ndarray) -> None:
    (folder / "predictions").mkdir(exist_ok=True)
    np.save(folder / "predictions" / f"{case}.npy", pred.astype(np.uint8))


def _wrong_on(label: np.ndarray, z: int) -> np.ndarray:
    """``label`` with slice ``z`` wrong: its foreground dropped (FN) and a square of class 1 added (FP)."""
    pred = label.copy()
    pred[z] = 0
    pred[z, :6, :6] = 1
    return pred


@pytest.fixture(scope="module")
def gallery(cardiac: Any, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """synthetic-cardiac at 10 %: MT seed 0 saved 6 cases (case001 wrong on one slice only, the others
    right; the 6th best is not among the 5 worst), MT seed 1 saved nothing, CCT saved cases but its
    record states another fingerprint, UNet-L states none; ACDC (not prepared) MT saved one case."""
    from sslbench.report.html import write_report

    base = tmp_path_factory.mktemp("gallery")
    root = base / "results"
    ids = [c.id for c in cardiac.cases[:6]]
    mt0 = fake_run(root, "synthetic-cardiac", "mt", 10, 0, 60, paper_name="MT")
    _as_phantom_run(mt0, {c: 0.30 + 0.1 * i for i, c in enumerate(ids)}, cardiac.fingerprint)
    for case in ids:
        label = cardiac.volume(case)[1]
        _save(mt0, case, _wrong_on(label, WRONG_SLICE) if case == ids[1] else label)
    mt1 = fake_run(root, "synthetic-cardiac", "mt", 10, 1, 62, paper_name="MT")
    _as_phantom_run(mt1, {ids[0]: 0.05, ids[1]: 0.06}, cardiac.fingerprint)          # the worst two, nothing saved
    cct = fake_run(root, "synthetic-cardiac", "cct", 10, 0, 50, paper_name=QUOTED)
    _as_phantom_run(cct, {ids[0]: 0.4, ids[1]: 0.5}, "0123456789abcdef")
    _save(cct, ids[0], cardiac.volume(ids[0])[1])
    unet = fake_run(root, "synthetic-cardiac", "unet-l", 10, 0, 40, paper_name="UNet-L")
    _as_phantom_run(unet, {ids[2]: 0.4}, None)
    _save(unet, ids[2], cardiac.volume(ids[2])[1])
    acdc = fake_run(root, "acdc", "mt", 10, 0, 60, paper_name="MT")
    _as_phantom_run(acdc, {"patient001": 0.5}, "0123456789abcdef")
    _save(acdc, "patient001", np.zeros((2, 4, 4), np.uint8))
    out = base / "report"
    write_report(root, out, cache=cache_dir)
    return {"out": out, "ids": ids, "index": (out / "index.html").read_text(), "mt0": mt0}


def _cell(index: str, dataset: str, method: str) -> str:
    """The worst-case block (table, gallery, notes) of ``method``'s cell in ``dataset``'s section."""
    section = re.search(rf'<section id="{dataset}-quick">(.*?)</section>', index, re.DOTALL).group(1)
    blocks = re.split(r"<h4>", section)
    found = [b for b in blocks if html.unescape(b).startswith(f"{method} (")]
    assert len(found) == 1, (method, len(found))
    return found[0].split("</details>")[0]


def _figures(block: str) -> list[dict[str, str]]:
    return [dict(re.findall(r'([a-z-]+)="([^"]*)"', f)) for f in
            re.findall(r'<figure class="worst-slice" (.*?)</figure>', block, re.DOTALL)]


def test_a_saved_worst_case_gets_an_image_of_its_most_wrong_slice(gallery: dict[str, Any]) -> None:
    out, ids = gallery["out"], gallery["ids"]
    block = _cell(gallery["index"], "synthetic-cardiac", "MT")
    figures = _figures(block)
    # the 5 worst of the cell: seed 1's two (nothing saved), then seed 0's three lowest; each saved one imaged
    assert [(f["data-case"], f["data-seed"]) for f in figures] == [(ids[0], "0"), (ids[1], "0"), (ids[2], "0")]
    wrong = figures[1]
    assert wrong["data-slice"] == str(WRONG_SLICE)
    png = out / html.unescape(wrong["src"])
    assert png.is_file() and png.resolve().is_relative_to(out.resolve()) and not Path(wrong["src"]).is_absolute()
    import matplotlib.image as mpimg

    pixels = mpimg.imread(png)
    assert max(pixels.shape[:2]) == 160 and (pixels.shape[1], pixels.shape[0]) == (int(wrong["width"]),
                                                                                   int(wrong["height"]))
    alt = html.unescape(wrong["alt"])
    for words in ("MT", f"case {ids[1]}", "seed 0", f"slice {WRONG_SLICE}"):
        assert words in alt, (words, alt)
    caption = html.unescape(re.findall(r"<figcaption[^>]*>(.*?)</figcaption>", block, re.DOTALL)[1])
    assert "reference (cyan)" in caption and "prediction (orange)" in caption and f"slice {WRONG_SLICE}" in caption
    # the cell's 6th case is not among its 5 worst: no image of it
    assert not list((out / "figures" / "worst").glob(f"*-{ids[5]}-*.png"))
    assert len(list((out / "figures" / "worst").glob("*.png"))) == 3


def _wrong_voxels(label: np.ndarray, pred: np.ndarray) -> list[int]:
    """Per slice, FP + FN summed over the foreground classes, class by class (the definition, spelled out)."""
    return [sum(int(np.count_nonzero((p == c) & (r != c)) + np.count_nonzero((r == c) & (p != c)))
                for c in range(1, 4)) for r, p in zip(label, pred)]


def test_the_chosen_slice_is_the_one_with_most_wrong_voxels(cardiac: Any) -> None:
    from sslbench.report.gallery import worst_slice

    label = cardiac.volume(cardiac.cases[1].id)[1]
    fg = (label > 0).reshape(label.shape[0], -1).sum(1)
    assert int(np.argmax(fg)) != WRONG_SLICE != 0
    pred = _wrong_on(label, WRONG_SLICE)
    assert [z for z, n in enumerate(_wrong_voxels(label, pred)) if n] == [WRONG_SLICE]
    assert worst_slice(label, pred) == (WRONG_SLICE, _wrong_voxels(label, pred)[WRONG_SLICE])
    pred = label.copy()
    pred[1, :3, :3] = 1                                        # 9 FP on slice 1
    pred[4][label[4] == 1] = 0                                 # RV missed on slice 4: FN only
    pred[6][label[6] == 3] = 2                                 # LV called Myo on slice 6: an FN and an FP per voxel
    counts = _wrong_voxels(label, pred)
    assert counts[6] == 2 * int(np.count_nonzero(label[6] == 3)) and counts[1] == 9
    assert worst_slice(label, pred) == (int(np.argmax(counts)), max(counts))
    assert worst_slice(label, label) == (int(np.argmax(fg)), 0)      # nothing wrong: the most foreground


def test_no_image_where_the_run_saved_nothing(gallery: dict[str, Any]) -> None:
    block = _cell(gallery["index"], "synthetic-cardiac", "MT")
    seeds = [f["data-seed"] for f in _figures(block)]
    assert "1" not in seeds and "no-image" not in block
    rows = [re.findall(r"<td>(.*?)</td>", row) for row in re.findall(r"<tr><td>.*?</tr>", block)]
    assert [(r[1], r[-1]) for r in rows] == [("1", "—"), ("1", "—"), ("0", "saved"), ("0", "saved"), ("0", "saved")]


def test_other_data_gets_a_line_instead_of_an_image(gallery: dict[str, Any]) -> None:
    index, ids = gallery["index"], gallery["ids"]
    cct = _cell(index, "synthetic-cardiac", QUOTED)
    assert "<img" not in cct
    line = html.unescape(re.search(r'<p class="caption no-image">(.*?)</p>', cct).group(1))
    assert line.startswith(f"No image of {ids[0]} (seed 0): the prepared synthetic-cardiac is not the data") \
        and "'0123456789abcdef'" in line
    unet = _cell(index, "synthetic-cardiac", "UNet-L")
    assert "<img" not in unet and "states no data fingerprint" in unet
    acdc = _cell(index, "acdc", "MT")
    assert "<img" not in acdc and "No image of patient001 (seed 0): acdc is not prepared in the cache" in acdc
    assert 'CCT &#34;&lt;i&gt;&#34;' in index and '"<i>"' not in index


def test_the_chosen_slice_is_drawn(gallery: dict[str, Any], cardiac: Any, tmp_path: Path) -> None:
    """The gallery's PNG is the slice it names: drawn again from that slice it is the same picture."""
    from sslbench.report.gallery import draw_slice

    ids, out = gallery["ids"], gallery["out"]
    figure = _figures(_cell(gallery["index"], "synthetic-cardiac", "MT"))[1]
    image, label = cardiac.volume(ids[1])
    pred = np.load(gallery["mt0"] / "predictions" / f"{ids[1]}.npy")
    import matplotlib.image as mpimg

    shown = mpimg.imread(out / html.unescape(figure["src"]))
    for z, same in ((WRONG_SLICE, True), (0, False)):
        draw_slice(image[z], label[z], pred[z], tmp_path / f"{z}.png")
        again = mpimg.imread(tmp_path / f"{z}.png")
        assert (again.shape == shown.shape and np.array_equal(again, shown)) is same
