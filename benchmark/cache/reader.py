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
from sslbench.base.file_kinds import not_regular
from sslbench.base.fields import FieldError, choice, integer, mapping, name, number, text
from sslbench.base.locks import FolderLock
from sslbench.base.names import check_case_id
from sslbench.data import CACHE_FORMAT, CaseInfo
from sslbench.io.resize import resize_slices
from sslbench.io.slabs import read_slabs

# bumped whenever the slice cache changes (2: scipy zoom(order=0) mapping; 3: float16 images): a
# folder of another version is never read
RESIZE_VERSION = 3


def regular_cache_file(path: Path) -> Path:
    """``path`` when it is a regular file (not followed if a link); a FIFO, device, folder or link
    inside a prepared dataset is refused, naming it (reading a FIFO would hang)."""
    problem = not_regular(path)
    if problem == "missing":
        raise DataError(f"{path}: missing from the prepared dataset; prepare it again with --force")
    if problem:
        raise DataError(f"{path}: is {problem}; a prepared dataset holds regular files only (prepare it again "
                        "with --force)")
    return path


MAX_VOXELS = 2 ** 31  # one volume, float32: 8 GiB; a meta.json that claims more is lying


def _case(raw: object, i: int, where: str) -> CaseInfo:
    """One case of ``meta.json``, every field checked (a lying shape would allocate petabytes)."""
    c = mapping(raw, f"cases[{i}]")
    shape = c.get("shape")
    if not (isinstance(shape, list) and len(shape) == 3):
        raise FieldError(f"cases[{i}].shape: expected three sizes, got {str(shape)[:60]}")
    shape = [integer(n, f"cases[{i}].shape", 1, MAX_VOXELS) for n in shape]
    if int(np.prod(shape)) > MAX_VOXELS:
        raise FieldError(f"cases[{i}].shape: {shape} is more than {MAX_VOXELS} voxels")
    spacing = c.get("spacing")
    if spacing is not None:
        if not (isinstance(spacing, list) and len(spacing) == 3):
            raise FieldError(f"cases[{i}].spacing: expected three sizes or null, got {str(spacing)[:60]}")
        spacing = tuple(number(v, f"cases[{i}].spacing", 1e-6, 1e6) for v in spacing)
    crop = c.get("crop")
    if not (isinstance(crop, list) and len(crop) == 3 and all(isinstance(b, list) and len(b) == 2 for b in crop)):
        raise FieldError(f"cases[{i}].crop: expected three (start, stop) pairs")
    box = []
    for axis, (a, b) in enumerate(crop):
        a = integer(a, f"cases[{i}].crop", 0, shape[axis])
        box.append((a, integer(b, f"cases[{i}].crop", a, shape[axis])))
    geometry = c.get("geometry")
    return CaseInfo(check_case_id(c.get("id"), where), text(c.get("patient"), f"cases[{i}].patient", 200),
                    choice(c.get("split"), f"cases[{i}].split", ("train", "val", "test")), tuple(shape), spacing,
                    _geometry(geometry, f"cases[{i}].geometry", shape) if geometry is not None else None, tuple(box),
                    number(c.get("fill"), f"cases[{i}].fill"),
                    choice(c.get("image_dtype"), f"cases[{i}].image_dtype", ("float16", "float32")))


def _geometry(raw: object, field: str, shape: list[int]) -> dict[str, object]:
    """A NIfTI source's geometry (predictions are written back in it): a finite 4 x 4 affine, the
    source's shape (the volume's, axes permuted), the axes a permutation of 0, 1, 2, positive spacing."""
    g = dict(mapping(raw, field))
    affine = g.get("affine")
    if not (isinstance(affine, list) and len(affine) == 4 and all(isinstance(r, list) and len(r) == 4 for r in affine)):
        raise FieldError(f"{field}.affine: expected a 4 x 4 matrix")
    for row in affine:
        for v in row:
            number(v, f"{field}.affine")
    axes = g.get("axes")
    if not (isinstance(axes, list) and sorted(a for a in axes if isinstance(a, int) and not isinstance(a, bool)) == [0, 1, 2]):
        raise FieldError(f"{field}.axes: expected a permutation of 0, 1, 2")
    source = g.get("shape")
    if not (isinstance(source, list) and len(source) == 3 and sorted(source) == sorted(shape)):
        raise FieldError(f"{field}.shape: expected the volume's sizes in the source's order, got {str(source)[:60]}")
    spacing = g.get("spacing")
    if not (isinstance(spacing, list) and len(spacing) == 3):
        raise FieldError(f"{field}.spacing: expected three sizes")
    for v in spacing:
        number(v, f"{field}.spacing", 1e-6, 1e6)
    if g.get("image") is not None:
        text(g["image"], f"{field}.image", 1000)
    return g


def check_meta(meta: object, where: str) -> tuple[str, tuple[str, ...], str, list[CaseInfo]]:
    """A prepared dataset's ``meta.json`` (a ``FieldError`` names the first bad field): its name,
    classes, interpolation and cases. The cache writer runs the same check before it writes one."""
    meta = mapping(meta, "meta.json")
    ds_name = name(meta.get("name"), "name")
    classes = meta.get("classes")
    if not (isinstance(classes, list) and 2 <= len(classes) <= 255 and len(set(map(str, classes))) == len(classes)
            and all(isinstance(c, str) and c for c in classes)):
        raise FieldError(f"classes: expected 2-255 distinct names, got {str(classes)[:60]}")
    for c in classes:
        text(c, "classes", 200)
    name(meta.get("kind", ds_name), "kind")
    interpolation = choice(meta.get("interpolation", "nearest"), "interpolation", ("nearest", "bilinear", "bicubic"))
    raw_cases = meta.get("cases")
    if not isinstance(raw_cases, list):
        raise FieldError("cases: expected a list")
    cases = [_case(c, i, where) for i, c in enumerate(raw_cases)]
    seen: set[str] = set()
    for case in cases:
        if case.id in seen:
            raise FieldError(f"cases: duplicate case id {case.id!r}")
        seen.add(case.id)
    return ds_name, tuple(classes), interpolation, cases


class PreparedDataset:
    """A prepared cache, read-only."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        if folder.is_symlink():  # resized slices are written into it: never through a link
            raise DataError(f"{folder}: is a symbolic link; a prepared dataset in the cache must be a real folder "
                            "(copy it, or point --cache at the folder that holds it)")
        try:
            meta = json.loads(regular_cache_file(folder / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:
            raise DataError(f"{folder / 'meta.json'}: unreadable prepared dataset ({type(exc).__name__}: "
                            f"{str(exc)[:200]})") from None
        if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else None
            raise DataError(f"{folder / 'meta.json'}: a prepared dataset in cache format {found}, not {CACHE_FORMAT} "
                            f"(an earlier version wrote it); rebuild it: bench prepare {folder.name} --raw PATH --force")
        where = str(folder / "meta.json")
        try:
            self.meta = meta
            self.name, self.classes, self.interpolation, self.cases = check_meta(meta, where)
            self._by_id = {c.id: c for c in self.cases}
        except FieldError as exc:
            raise DataError(f"{where}: not a valid prepared dataset ({exc}); prepare it again with --force") from None

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
        try:
            image = np.full(case.shape, case.fill, np.float32)
            label = np.zeros(case.shape, np.uint8)
        except MemoryError:
            raise DataError(f"{self.folder / 'meta.json'}: case {case_id!r} of shape {case.shape} does not fit in "
                            "memory") from None
        try:
            read_slabs(regular_cache_file(vol / f"{case_id}.image.slabs"), image[box])
            read_slabs(regular_cache_file(vol / f"{case_id}.label.slabs"), label[box])
        except (OSError, ValueError, struct.error, zlib.error) as exc:
            raise DataError(f"{vol / case_id}.*.slabs: unreadable prepared volume ({exc}); prepare the dataset "
                            "again with --force") from exc
        if label.size and int(label.max()) >= self.num_classes:
            raise DataError(f"{self.folder / 'meta.json'}: case {case_id!r} holds label {int(label.max())}, but the "
                            f"dataset names {self.num_classes} classes; prepare it again with --force")
        return image, label

    def train_slices(self, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All training slices at ``size`` x ``size``: images (N,S,S) f16, labels (N,S,S) u8 and the
        index of each slice's case in ``split_cases('train')``. Built once, memory-mapped."""
        folder = self.folder / f"slices-v{RESIZE_VERSION}-{size}"
        if folder.is_symlink():
            raise DataError(f"{folder}: is a symbolic link; remove it and the slice cache is built again")
        if not (folder / "case.npy").exists() or any(self.folder.glob(".slices-*+*")):
            with FolderLock(self.folder / ".slices.lock"):
                remove_orphans(self.folder, ".slices-*+*")  # left by a killed build
                if not (folder / "case.npy").exists():
                    self._build_slices(size, folder)
        try:
            arrays = tuple(np.load(regular_cache_file(folder / f"{n}.npy"), mmap_mode="r")
                           for n in ("image", "label", "case"))
        except (OSError, ValueError) as exc:
            raise DataError(f"{folder}: unreadable slice cache ({str(exc)[:200]}); remove the folder and it is "
                            "built again") from None
        self._check_slices(folder, size, *arrays)
        return arrays  # type: ignore[return-value]

    def _check_slices(self, folder: Path, size: int, image: np.ndarray, label: np.ndarray, case: np.ndarray) -> None:
        """The slice cache as ``_build_slices`` writes it: shapes, types, case indices and labels in range."""
        cases = self.split_cases("train")
        n = sum(int(c.shape[0]) for c in cases)
        expected = ((image, (n, size, size), np.float16), (label, (n, size, size), np.uint8), (case, (n,), np.int32))
        bad = [a for a, shape, dtype in expected if a.shape != shape or a.dtype != dtype]
        if not bad and n and (int(case.min()) < 0 or int(case.max()) >= len(cases) or int(label.max()) >= self.num_classes):
            bad = [case]
        if bad:
            raise DataError(f"{folder}: a slice cache that does not match meta.json (shapes, types, case indices or "
                            "labels); remove the folder and it is built again")

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


