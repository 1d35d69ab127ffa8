"""Which training cases are labeled: the papers' fixed lists, or a seeded draw of patients."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from sslbench.base.errors import DataError

if TYPE_CHECKING:
    from sslbench.cache import PreparedDataset


def labeled_count(ratio: float, n_patients: int) -> int:
    """Number of labeled patients for a label ratio in percent: round(ratio * N / 100), at least 1.

    Halves round up (so 1.5 -> 2, as MONA's MMWHS 10 % list). ``ratio >= 100`` means every patient.
    """
    if ratio <= 0:
        raise DataError(f"label ratio must be positive, got {ratio}")
    if ratio >= 100:
        return n_patients
    return max(1, min(n_patients, math.floor(ratio * n_patients / 100 + 0.5)))


def paper_list(kind: str, name: str) -> list[str] | None:
    """A shipped fixed list (``configs/splits/<kind>/<name>.txt``), or None."""
    from sslbench.base.config import configs_dir

    path = configs_dir() / "splits" / kind / f"{name}.txt"
    if not path.is_file():
        return None
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def split_labeled(ds: PreparedDataset, ratio: float, seed: int, mode: str) -> tuple[list[str], list[str]]:
    """Labeled and unlabeled training case ids, chosen at the patient level.

    ``paper``: the shipped list ``configs/splits/<dataset>/labeled_<ratio>.txt`` when there is one,
    else the first patients in the dataset's list order (SSL4MIS's ACDC order).
    ``random``: a permutation of patients seeded by the run seed. It labels as many patients as the
    paper list of that ratio when there is one (ACDC 5 % = 3 patients, as SSL4MIS's ``labeled_num``,
    not round(5 % of 70) = 4), so random and paper splits of a ratio are comparable; otherwise
    ``labeled_count(ratio, N)``.
    """
    train = ds.split_cases("train")
    kind = ds.meta.get("kind", ds.name)
    fixed = paper_list(kind, f"labeled_{ratio:g}") if ratio < 100 else None
    chosen_patients: set[str] | None = None
    if fixed is not None:
        ids = {c.id for c in train}
        unknown = [c for c in fixed if c not in ids]
        if unknown:
            raise DataError(f"configs/splits/{kind}/labeled_{ratio:g}.txt: "
                            f"{unknown[0]} is not a training case of {ds.name}")
        chosen_patients = {c.patient for c in train if c.id in set(fixed)}
    patients = list(dict.fromkeys(c.patient for c in train))
    if mode == "random":
        n = len(chosen_patients) if chosen_patients is not None else labeled_count(ratio, len(patients))
        order = np.random.default_rng(seed).permutation(len(patients))
        chosen_patients = {patients[i] for i in order[:n]}
    elif chosen_patients is None:
        chosen_patients = set(patients[:labeled_count(ratio, len(patients))])
    return ([c.id for c in train if c.patient in chosen_patients],
            [c.id for c in train if c.patient not in chosen_patients])
