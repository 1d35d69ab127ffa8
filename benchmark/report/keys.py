"""``bench table --keys``: which schedules (profile keys) a results folder holds, and what each means.

A profile key (``quick+1a2b3c``) names a profile plus the ``train.*`` / ``data.*`` values a run's
``--set`` changed; tables and figures are split by it. The hash alone says nothing to a person, so
this lists each key with its overrides, and with the tags (and their own ``--set`` items) run under it.
"""
from __future__ import annotations

from pathlib import Path

from sslbench.report.tables import render, select_records


def keys_table(root: Path, fmt: str = "markdown", dataset: str | None = None) -> str:
    """One row per (dataset, profile key): the profile, the schedule values its runs changed, the
    number of runs, the methods, and each tag with the ``--set`` items that define it."""
    df = select_records(root, dataset)
    rows = []
    for (ds, key), sub in df.groupby(["dataset", "profile_key"], sort=True):
        overrides = "; ".join(dict.fromkeys(o for o in sub.protocol_overrides if o)) or "(the profile as it is)"
        tags = sub[sub.tag != ""].drop_duplicates(["tag", "overrides"])
        tagged = "; ".join(f"{t}: {o or 'no --set'}" for t, o in zip(tags.tag, tags.overrides)) or "—"
        rows.append([ds, key, str(sub.profile.iloc[0]), overrides, str(len(sub)),
                     ", ".join(sorted(set(sub.method))), tagged])
    headers = ["dataset", "profile key", "profile", "schedule overrides", "runs", "methods", "tags (their --set)"]
    return render(headers, rows, fmt, "Profile keys: each schedule the records hold and what it changed", "tab:keys")
