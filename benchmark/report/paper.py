"""Published numbers, shipped as package data: the MONA paper's (every cell of Tables 1-5), and tables of
our own (``beyond``: methods that lead ACDC today; ``la``: the 3-D Left Atrium benchmark), each row of
those with its source."""
from __future__ import annotations

import re
from functools import lru_cache

import pandas as pd

from sslbench.base.config import configs_dir

TABLES = {
    1: "Table 1: comparison with SSL methods on ACDC and LiTS",
    2: "Table 2: MONA component ablation (ACDC, 5 %)",
    3: "Table 3: augmentation pairs for student / teacher",
    4: "Table 4: comparison with SSL methods on MM-WHS",
    5: "Table 5: contrastive frameworks, only pre-training vs with fine-tuning (ACDC)",
    6: "Beyond the paper: methods that lead ACDC today, beside MONA (published numbers from each method's "
       "own paper; `bench table --table beyond --vs-paper`; sources in configs/paper/beyond_published.csv)",
    7: "Left Atrium (UA-MT's LA release, 3-D: 80 training and 20 test volumes; 5 / 10 / 20 % = 4 / 8 / 16 labeled "
       "cases): published numbers of UA-MT, SASSNet, DTC and MC-Net beside the suite's runs (`bench table --table la "
       "--vs-paper`; sources in configs/paper/la_published.csv); published Dice in %, 95HD and ASD in voxels, "
       "ASD = medpy's directed asd(pred, gt)",
}
TABLE_NAMES = {"beyond": 6, "la": 7}  # --table beyond, --table la
# our own tables' published numbers, one file each, every row with its source (the MONA paper's Tables 1-5
# come from the paper itself: configs/paper/mona_paper_tables.csv)
SOURCE_FILES = {6: "beyond_published.csv", 7: "la_published.csv"}
# what a table's published numbers were run with, where it is not the MONA paper's protocol (section 4:
# test split, 30k iterations, 256 px, 3 seeds; ``sslbench.report.tables.PAPER_PROTOCOL``): the LA rows
# follow UA-MT's release (yulequan/UA-MT, train_LA_meanteacher_certainty_unlabel.py: 6000 iterations on
# 112 x 112 x 80 crops, i.e. 80 x 112 x 112 as (D, H, W) here; scored on the 20 test volumes); their
# sources state no seed count, so none is checked
PROTOCOLS = {7: {"who": "UA-MT's LA release", "eval_split": "test", "iterations": 6000, "image_size": "80x112x112",
                 "seeds": None}}


def table_number(name: str | int) -> int:
    """``--table`` value: a paper table's number, or a name of ours (``beyond``, ``la``)."""
    from sslbench.base.errors import BenchError

    text = str(name).strip().lower()
    if text in TABLE_NAMES:
        return TABLE_NAMES[text]
    if text.isdigit() and int(text) in TABLES:
        return int(text)
    raise BenchError(f"unknown table {name!r} (known: {', '.join([*map(str, TABLES), *TABLE_NAMES])})")


def _own_rows(table: int) -> pd.DataFrame:
    """The rows of one of our own tables' source file (``SOURCE_FILES``), with their ``source`` column."""
    rows = pd.read_csv(configs_dir() / "paper" / SOURCE_FILES[table], keep_default_na=False)
    return rows[rows.table == table]


@lru_cache(maxsize=1)
def paper_cells() -> pd.DataFrame:
    """Columns: table, dataset, method, variant, ratio, dsc, asd (DSC in %, ASD as printed), and
    jaccard, hd95 where a source file gives them (the LA rows; NaN elsewhere)."""
    main = pd.read_csv(configs_dir() / "paper" / "mona_paper_tables.csv", keep_default_na=False)
    own = [_own_rows(t).drop(columns=["source"]) for t in SOURCE_FILES]
    df = pd.concat([main, *own], ignore_index=True)
    df["ratio"] = df["ratio"].astype(float)
    for key in ("dsc", "asd", "jaccard", "hd95"):  # a value a paper does not give (UniMatch's ASD) is empty: NaN
        df[key] = pd.to_numeric(df[key], errors="coerce")
    return df


def sources(table: int) -> list[tuple[str, str]]:
    """(method, where its published numbers come from) of our own tables (``beyond``, ``la``), in the
    file's order, one line per method and source; the paper's Tables 1-5 all come from the paper itself."""
    if table not in SOURCE_FILES:
        return []
    rows = _own_rows(table)
    seen: dict[str, list[str]] = {}
    for method, source in zip(rows.method, rows.source):
        if not source.startswith("same,") and source not in seen.setdefault(method, []):
            seen[method].append(source)
    return [(m, s) for m, srcs in seen.items() for s in srcs]


def layout(table: int) -> pd.DataFrame:
    """The rows (method, variant) in the paper's order, with datasets and ratios, of one table."""
    df = paper_cells()
    return df[df.table == table]


# Table 3 prints its columns as "Student Aug. / Teacher Aug.", but its "Weak / Strong" row equals
# Table 1's MONA number on both datasets (ACDC 88.8 / 0.62, LiTS 67.3 / 16.4), and the released code
# that produced Table 1 feeds the teacher the weak batch and the student the strong view (ISD's
# ``weak_strong`` order). The headers are therefore read in teacher / student order: our run with
# student S and teacher T is compared with the published row labelled "student T / teacher S", so
# the default run meets one published number (Table 1's), not two.
TABLE3_NOTE = ("Table 3's published rows are matched with the columns read as teacher / student (its "
               "'student weak / teacher strong' row equals Table 1's MONA, which the released code ran "
               "with a weak teacher and a strong student: our default).")


def published_variant(table: int, variant: str) -> str:
    """The published row a run's variant is compared with (see ``TABLE3_NOTE``)."""
    if table != 3:
        return variant
    m = re.fullmatch(r"student (\w+) / teacher (\w+)", variant)
    return f"student {m.group(2)} / teacher {m.group(1)}" if m else variant
