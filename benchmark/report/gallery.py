"""The report's worst-case gallery: for a worst case of a leaderboard cell whose prediction its run
saved (``--save-predictions``), a small PNG of the slice where the prediction is most wrong (the most
FP + FN voxels over the foreground classes), the image in grey with the reference's and the
prediction's contours in two colours.

Predictions are read as ``bench plot qualitative`` reads them (``plots.saved_prediction``), the image
and reference from the prepared dataset in the cache (``PreparedDataset.volume``). The dataset is
opened only where it is already prepared (never prepared for a report) and only used when its
fingerprint is the one the run's record states (``run.json`` ``data.fingerprint``): otherwise the
case gets no image and one line saying why, never an image of other data. Files are written with
``atomic_path`` (a fresh temporary file renamed into place: no link is followed) into the report's
own, freshly made folder.
"""
from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sslbench.base.atomic import atomic_path
from sslbench.base.errors import BenchError
from sslbench.base.run_files import RunFiles

SIZE_PX = 160                                   # the longer side of a gallery image
DPI = 100
FOLDER = ("figures", "worst")                   # inside the report: figures/worst/<run page>-<case>.png
REFERENCE = ("#00c8ff", "cyan")                 # contour colour, its name in the legend line
PREDICTION = ("#ff8c00", "orange")
_MESSAGE_CHARS = 240                            # of a reason quoted from an error


class Unavailable(Exception):
    """Why a saved case gets no image (one short line)."""


def worst_slice(label: np.ndarray, pred: np.ndarray) -> tuple[int, int]:
    """(slice, its wrong voxels): the slice along the first axis with the most FP + FN voxels summed
    over the foreground classes (a voxel of one foreground class predicted as another is an FN of the
    one and an FP of the other: it counts twice). Ties go to the lower index; where no voxel is wrong,
    the slice with the most reference foreground (0 wrong voxels)."""
    wrong = [int(np.count_nonzero((p != r) & (p > 0)) + np.count_nonzero((p != r) & (r > 0)))
             for r, p in zip(label, pred)]
    if wrong and max(wrong) > 0:
        z = int(np.argmax(wrong))
        return z, wrong[z]
    foreground = [int(np.count_nonzero(r)) for r in label]
    return (int(np.argmax(foreground)) if foreground else 0), 0


def draw_slice(image: np.ndarray, label: np.ndarray, pred: np.ndarray, path: Path) -> tuple[int, int]:
    """One slice as a PNG at ``path`` (its longer side ``SIZE_PX``): the image in grey (1st-99th
    percentile), each foreground class's reference contour in ``REFERENCE`` and predicted contour in
    ``PREDICTION``. Returns (width, height) in pixels."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    h, w = image.shape
    scale = SIZE_PX / max(h, w, 1)
    width, height = max(1, round(w * scale)), max(1, round(h * scale))
    # every text is plain (no mathtext), as in every figure of the project
    with matplotlib.rc_context({"text.parse_math": False}), warnings.catch_warnings():
        warnings.simplefilter("ignore")          # a class filling the whole slice has no contour
        fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
        FigureCanvasAgg(fig)
        ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
        ax.set_axis_off()
        finite = image[np.isfinite(image)]
        lo, hi = (np.percentile(finite, (1, 99)) if finite.size else (0.0, 1.0))
        ax.imshow(image, cmap="gray", vmin=float(lo), vmax=float(hi) if hi > lo else float(lo) + 1.0,
                  interpolation="nearest", aspect="auto")
        for volume, (colour, _) in ((label, REFERENCE), (pred, PREDICTION)):
            for cls in np.unique(volume):
                if cls > 0:
                    ax.contour((volume == cls).astype(np.float32), levels=[0.5], colors=[colour], linewidths=0.9)
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI)
    return width, height


def _slug(text: str, most: int = 40) -> str:
    return (re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "x")[:most]


class Gallery:
    """The gallery images of one report, written under ``<report>/figures/worst/``; ``pages`` maps a
    run folder to its page name (unique per run), which names its images; ``cache`` is the
    prepared-data cache (default: ``$SSLBENCH_CACHE``, as every command reads it)."""

    def __init__(self, out: Path, pages: Mapping[str, str], cache: Path | None = None) -> None:
        self.out = out
        self.pages = pages
        self.cache = cache
        self._datasets: dict[str, Any] = {}    # name -> PreparedDataset, or the Unavailable saying why not
        self._volume: tuple[tuple[str, str], tuple[np.ndarray, np.ndarray]] | None = None  # the last one read

    def cell(self, dataset: str, method: str, rows: Sequence[Mapping[str, Any]],
             folders: Mapping[int, str]) -> tuple[list[dict[str, Any]], list[str]]:
        """The images of a cell's worst-case ``rows`` (``worst_in_cell``'s, at most its count) whose
        prediction is saved (``folders``: seed -> run folder), and one line per reason for those that
        get none, naming them."""
        images: list[dict[str, Any]] = []
        refused: dict[str, list[str]] = {}
        for row in rows:
            if not row.get("saved"):
                continue
            try:
                images.append(self._image(dataset, method, str(row["case"]), int(row["seed"]),
                                          str(folders[int(row["seed"])])))
            except Unavailable as why:
                refused.setdefault(str(why), []).append(f"{row['case']} (seed {row['seed']})")
        notes = [f"No image of {', '.join(who)}: {why}." for why, who in refused.items()]
        return images, notes

    def _dataset(self, name: str) -> Any:
        if name not in self._datasets:
            try:
                self._datasets[name] = self._open(name)
            except Unavailable as why:
                self._datasets[name] = why
        found = self._datasets[name]
        if isinstance(found, Unavailable):
            raise found
        return found

    def _open(self, name: str) -> Any:
        from sslbench.cache import PreparedDataset, dataset_folder

        try:
            folder = dataset_folder(name, self.cache)
        except BenchError as exc:
            raise Unavailable(f"no prepared dataset of that name ({str(exc)[:_MESSAGE_CHARS]})") from None
        if not (folder / "meta.json").exists():
            raise Unavailable(f"{name} is not prepared in the cache ({folder.parent})")
        try:
            return PreparedDataset(folder)
        except BenchError as exc:
            raise Unavailable(f"the prepared {name} cannot be read ({str(exc)[:_MESSAGE_CHARS]})") from None

    def _check_data(self, ds: Any, folder: str) -> None:
        """Refuse a run whose record states no fingerprint, or another one than the cache's dataset."""
        record = RunFiles(Path(folder)).record() or {}
        data = record.get("data")
        stated = data.get("fingerprint") if isinstance(data, dict) else None
        if not isinstance(stated, str) or not stated:
            raise Unavailable("its run record states no data fingerprint, so the prepared data cannot be matched "
                              "to what it was scored on")
        if stated != ds.fingerprint:
            raise Unavailable(f"the prepared {ds.name} is not the data the run was scored on (fingerprint "
                              f"{stated[:16]!r} in its record, {ds.fingerprint} in the cache)")

    def _volumes(self, ds: Any, case: str) -> tuple[np.ndarray, np.ndarray]:
        key = (str(ds.folder), case)
        if self._volume is None or self._volume[0] != key:
            self._volume = None                 # one volume in memory at a time
            try:
                image, label = (np.asarray(a) for a in ds.volume(case))
            except BenchError as exc:
                raise Unavailable(str(exc)[:_MESSAGE_CHARS]) from None
            self._volume = (key, (image, label))
        return self._volume[1]

    def _image(self, dataset: str, method: str, case: str, seed: int, folder: str) -> dict[str, Any]:
        from sslbench.report.plots import saved_prediction

        ds = self._dataset(dataset)
        self._check_data(ds, folder)
        image, label = self._volumes(ds, case)
        try:
            pred = saved_prediction(Path(folder), case, label.shape, f"{method} seed {seed}")
        except BenchError as exc:
            raise Unavailable(str(exc)[:_MESSAGE_CHARS]) from None
        z, wrong = worst_slice(label, pred)
        digest = hashlib.sha256(case.encode()).hexdigest()[:8]
        name = f"{self.pages[folder]}-{_slug(case)}-{digest}.png"
        width, height = draw_slice(image[z], label[z], pred[z], self.out.joinpath(*FOLDER, name))
        return {"src": "/".join((*FOLDER, name)), "case": case, "seed": seed, "slice": z, "wrong": wrong,
                "width": width, "height": height, "reference": REFERENCE, "prediction": PREDICTION,
                "alt": f"{method}, case {case}, seed {seed}, slice {z}: reference ({REFERENCE[1]}) and predicted "
                       f"({PREDICTION[1]}) contours",
                "caption": f"{case}, seed {seed}: slice {z} of 0-{label.shape[0] - 1}, " + (
                    f"{wrong} wrong voxels (FP + FN over the foreground classes)" if wrong else
                    "no wrong voxel in the case (the slice of most reference foreground)")}


__all__ = ["DPI", "PREDICTION", "REFERENCE", "SIZE_PX", "Gallery", "Unavailable", "draw_slice", "worst_slice"]
