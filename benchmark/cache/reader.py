"""Reading a prepared cache back: its cases, full volumes and the resized training slices."""
from __future__ import annotations

import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np

from sslbench.base.atomic import make_temp_folder, remove_orphans
from sslbench.base.errors import DataError
from sslbench.base.locks import FolderLock
from sslbench.base.names import NAME, check_case_id
from sslbench.data import CACHE_FORMAT, CaseInfo
from sslbench.io.resize import resize_slices
from sslbench.io.slabs import read_slabs

# bumped whenever the slice cache changes (2: scipy zoom(order=0) mapping; 3: float16 images): a
# folder of another version is never read
RESIZE_VERSION = 3


class PreparedDataset:
    """A prepared cache, read-only."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        try:
            meta = json.loads((folder / "meta.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"{folder / 'meta.json'}: unreadable prepared dataset ({exc})") from exc
        if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else None
            raise DataError(f"{folder / 'meta.json'}: a prepared dataset in cache format {found}, not {CACHE_FORMAT} "
                            f"(an earlier version wrote it); rebuild it: bench prepare {folder.name} --raw PATH --force")
        try:
            self.meta = meta
            self.name: str = meta["name"]
            self.classes: tuple[str, ...] = tuple(meta["classes"])
            kind = meta.get("kind", self.name)
            if not isinstance(kind, str) or not NAME.fullmatch(kind) or not NAME.fullmatch(str(self.name)):
                raise DataError(f"{folder / 'meta.json'}: name {self.name!r} / kind {kind!r} is not a plain name "
                                "(letters, digits, '.', '_', '-')")
            self.interpolation: str = meta.get("interpolation", "nearest")
            self.cases = [CaseInfo(check_case_id(c["id"], str(folder / "meta.json")), c["patient"], c["split"],
                                   tuple(c["shape"]), tuple(c["spacing"]) if c["spacing"] is not None else None,
                                   c.get("geometry"), tuple((int(a), int(b)) for a, b in c["crop"]),
                                   float(c["fill"]), str(c["image_dtype"]))
                          for c in meta["cases"]]
            self._by_id = {c.id: c for c in self.cases}
        except (KeyError, TypeError, AttributeError) as exc:
            raise DataError(f"{folder / 'meta.json'}: not a prepared dataset's meta.json ({exc!r}); "
                            "prepare it again with --force") from exc

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def split_cases(self, split: str) -> list[CaseInfo]:
        return [c for c in self.cases if c.split == split]

    def eval_cases(self, split: str) -> list[CaseInfo]:
        """The cases of an evaluation split; a clear error when the raw data had none."""
        cases = self.split_cases(split)
        if not cases:
            why = self.meta.get("missing", {}).get(split, "it has no cases")
            hint = " (use --eval-split val)" if split == "test" else ""
            raise DataError(f"{self.name}: no '{split}' volumes: {why}{hint}")
        return cases

    def volume(self, case_id: str) -> tuple[np.ndarray, np.ndarray]:
        """The full (D, H, W) image (float32) and label (uint8) of a case: the stored crop pasted into
        the fill value."""
        vol = self.folder / "volumes"
        case = self._by_id.get(case_id)
        if case is None:
            raise DataError(f"{self.folder / 'meta.json'}: no case '{case_id}'")
        box = tuple(slice(a, b) for a, b in case.crop)
        image = np.full(case.shape, case.fill, np.float32)
        label = np.zeros(case.shape, np.uint8)
        try:
            read_slabs(vol / f"{case_id}.image.slabs", image[box])
            read_slabs(vol / f"{case_id}.label.slabs", label[box])
        except (OSError, ValueError, struct.error, zlib.error) as exc:
            raise DataError(f"{vol / case_id}.*.slabs: unreadable prepared volume ({exc}); prepare the dataset "
                            "again with --force") from exc
        return image, label

    def train_slices(self, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All training slices at ``size`` x ``size``: images (N,S,S) f16, labels (N,S,S) u8 and the
        index of each slice's case in ``split_cases('train')``. Built once, memory-mapped."""
        folder = self.folder / f"slices-v{RESIZE_VERSION}-{size}"
        if not (folder / "case.npy").exists() or any(self.folder.glob(".slices-*+*")):
            with FolderLock(self.folder / ".slices.lock"):
                remove_orphans(self.folder, ".slices-*+*")  # left by a killed build
                if not (folder / "case.npy").exists():
                    self._build_slices(size, folder)
        return tuple(np.load(folder / f"{n}.npy", mmap_mode="r") for n in ("image", "label", "case"))  # type: ignore[return-value]

    def _build_slices(self, size: int, folder: Path) -> None:
        """Resize every training slice into preallocated memory maps (one volume in memory at a time,
        never a list of the whole cache), then move the folder into place."""
        from numpy.lib.format import open_memmap

        cases = self.split_cases("train")
        total = sum(int(c.shape[0]) for c in cases)
        tmp = make_temp_folder(self.folder, folder.name)
        try:
            images = open_memmap(tmp / "image.npy", "w+", np.float16, (total, size, size))
            labels = open_memmap(tmp / "label.npy", "w+", np.uint8, (total, size, size))
            owner = open_memmap(tmp / "case.npy", "w+", np.int32, (total,))
            at = 0
            for i, case in enumerate(cases):
                img, lab = self.volume(case.id)
                n = img.shape[0]
                images[at:at + n] = resize_slices(np.asarray(img), size, self.interpolation)
                labels[at:at + n] = resize_slices(np.asarray(lab), size, "nearest")
                owner[at:at + n] = i
                at += n
            for array in (images, labels, owner):
                array.flush()
            del images, labels, owner
            os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


