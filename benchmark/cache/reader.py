"""Reading a prepared cache back: its cases, full volumes and the resized training slices."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np

from sslbench.base.atomic import make_temp_folder, remove_orphans
from sslbench.base.errors import BenchError, DataError
from sslbench.base.fields import FieldError
from sslbench.base.file_kinds import not_regular
from sslbench.base.locks import FolderLock
from sslbench.base.run_files import read_bounded
from sslbench.data import CACHE_FORMAT, CaseInfo, check_meta
from sslbench.io.resize import resize_slices
from sslbench.io.slabs import read_slabs

# bumped whenever the slice cache changes (2: scipy zoom(order=0) mapping; 3: float16 images): a
# folder of another version is never read
RESIZE_VERSION = 3
FINGERPRINT = re.compile(r"[0-9a-f]{16}")
META_LIMIT = 64 * 2**20  # bytes of a prepared dataset's meta.json (a large CT set's is well under 1 MB)
NAME_MAX = 255  # bytes in one file name (ext4, xfs, btrfs, NFS)
# every file name the tool derives from a case id, temporary ones included (``XXXXXXXX``: the eight
# characters ``tempfile`` adds): the slab files, and a prediction (.npy through ``atomic_path``, NIfTI
# through ``io.nifti.save_volume``)
CASE_FILE_NAMES = ("{}.image.slabs", "{}.label.slabs", "{}.npy", ".{}.npy.XXXXXXXX.tmp", "{}.nii.gz",
                   ".tmp-XXXXXXXX-{}.nii.gz")


def check_case_name_length(case_id: str, where: str) -> str:
    """``case_id`` when every file name derived from it fits in ``NAME_MAX`` bytes; else one line
    naming the case (a longer one would prepare, train, and then fail to save its prediction)."""
    longest = max(len(os.fsencode(pattern.format(case_id))) for pattern in CASE_FILE_NAMES)
    if longest > NAME_MAX:
        room = NAME_MAX - (longest - len(os.fsencode(case_id)))
        raise DataError(f"{where}: case id {case_id!r} is {len(os.fsencode(case_id))} bytes long; the file names "
                        f"made from it (predictions, their temporary files) allow at most {room} (rename the case)")
    return case_id


def fingerprint_of(text: str, meta: dict[str, object]) -> str:
    """A prepared dataset's fingerprint: the one preparation stored in ``meta.json`` (its content and
    every volume's bytes), else (a dataset prepared before fingerprints) a hash of ``meta.json``."""
    stored = meta.get("fingerprint")
    if isinstance(stored, str) and FINGERPRINT.fullmatch(stored):
        return stored
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def current_fingerprint(folder: Path) -> str:
    """The fingerprint of the dataset in ``folder`` now (its ``meta.json`` read again): what a run
    compares with the fingerprint it started with."""
    path = folder / "meta.json"
    try:
        text = read_meta(path)
        meta = json.loads(text)
    except (OSError, ValueError, RecursionError) as exc:
        raise DataError(f"{path}: unreadable prepared dataset ({type(exc).__name__}: {str(exc)[:200]})") from None
    return fingerprint_of(text, meta if isinstance(meta, dict) else {})


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


def read_meta(path: Path) -> str:
    """A prepared dataset's ``meta.json`` as text, read within ``META_LIMIT`` bytes (a planted huge or
    sparse file is refused, naming it, instead of filling memory)."""
    regular_cache_file(path)
    try:
        text = read_bounded(path, META_LIMIT).decode("utf-8")
    except BenchError as exc:
        raise DataError(f"{exc}; prepare it again with --force") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")  # universal newlines, as read_text (its hash)


class PreparedDataset:
    """A prepared cache, read-only."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        if folder.is_symlink():  # resized slices are written into it: never through a link
            raise DataError(f"{folder}: is a symbolic link; a prepared dataset in the cache must be a real folder "
                            "(copy it, or point --cache at the folder that holds it)")
        try:
            text = read_meta(folder / "meta.json")
            meta = json.loads(text)
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
        for case in self.cases:  # prepared before the check: fail now, not after training
            check_case_name_length(case.id, f"{where} (prepare it again)")
        self.fingerprint = fingerprint_of(text, meta)

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


