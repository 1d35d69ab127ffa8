"""``bench table --cost``: what each method costs, from the run records."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from sslbench.report.frame import code_note, variant_name
from sslbench.report.tables import paper_order, render, select_records


def stage_rates(rates: pd.Series) -> str:
    """Iterations per second per stage, averaged over runs, in the order the stages ran
    ("pretrain 1.40 / train 0.35"): a two-stage method's rates are never averaged into one."""
    stages: dict[str, list[float]] = {}
    for by_stage in rates:
        for stage, value in (by_stage or {}).items():
            stages.setdefault(stage, []).append(value)
    if len(stages) == 1:
        return f"{sum(next(iter(stages.values()))) / len(next(iter(stages.values()))):.2f}"
    return " / ".join(f"{stage} {sum(v) / len(v):.2f}" for stage, v in stages.items()) or "—"


def cost_table(root: Path, fmt: str = "markdown", dataset: str | None = None, profile: str | None = None,
               methods: list[str] | None = None) -> str:
    """What each method costs: precision, iterations per stage (pre-training + training: two-stage
    rows take more steps, as the paper's protocol), wall time, iterations per second per stage,
    device-hours, peak memory, parameters (means over the runs of each dataset, profile and method)."""
    df = select_records(root, dataset, profile, methods)
    df = df.assign(row=[variant_name(n, t) for n, t in zip(df.paper_name, df.tag)])
    rows = []
    for (ds, prof, name), sub in sorted(df.groupby(["dataset", "profile_key", "row"]),
                                        key=lambda kv: (kv[0][0], kv[0][1], paper_order(kv[0][2]))):
        gpu = sub.device.astype(str).str.startswith("cuda").any()
        hours = sub.wall_s.sum() / 3600
        params = sub.params.astype(float).mean()
        prec = "/".join(sorted(set(sub.precision.astype(str))))
        iters = "/".join(sorted(set(sub.stage_iterations.astype(str))))
        rows.append([ds, prof, str(sub.profile_text.iloc[0]), name, str(len(sub)), prec, iters, f"{sub.wall_s.mean() / 60:.1f}",
                     stage_rates(sub.iters_per_s_by_stage), f"{hours:.3f} {'GPU' if gpu else 'CPU'}-h", f"{sub.peak_mem_mb.mean():.0f}",
                     "—" if params != params else f"{params / 1e6:.2f}"])
    headers = ["dataset", "profile key", "schedule", "Method", "runs", "precision", "iterations", "wall [min/run]", "it/s per stage", "device-hours",
               "peak mem [MB]", "params [M]"]
    caption = ("Cost per method: precision, iterations per stage, wall time per run, it/s per stage, device-hours, peak memory, "
               "parameters; means over the runs of each dataset, profile key and method")
    code = code_note(df)
    return render(headers, rows, fmt, caption + (f"; {code}" if code else ""), "tab:cost")
