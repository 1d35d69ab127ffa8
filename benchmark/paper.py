"""The MONA paper's published numbers (every cell of Tables 1-5), shipped as package data."""
from __future__ import annotations

from functools import lru_cache

import pandas as pd

from .config import configs_dir

TABLES = {
    1: "Table 1: comparison with SSL methods on ACDC and LiTS",
    2: "Table 2: MONA component ablation (ACDC, 5 %)",
    3: "Table 3: augmentation pairs for student / teacher",
    4: "Table 4: comparison with SSL methods on MM-WHS",
    5: "Table 5: contrastive frameworks, only pre-training vs with fine-tuning (ACDC)",
}


@lru_cache(maxsize=1)
def paper_cells() -> pd.DataFrame:
    """Columns: table, dataset, method, variant, ratio, dsc, asd (DSC in %, ASD as printed)."""
    df = pd.read_csv(configs_dir() / "paper" / "mona_paper_tables.csv", keep_default_na=False)
    df["ratio"] = df["ratio"].astype(float)
    return df


def layout(table: int) -> pd.DataFrame:
    """The rows (method, variant) in the paper's order, with datasets and ratios, of one table."""
    df = paper_cells()
    return df[df.table == table]
