"""`bench speed` runs on tiny sizes and reports what it promises (a benchmark, not a timed test)."""
from __future__ import annotations

import json

from .test_cli import bench

TINY = ("--steps", "2", "--warmup", "1", "--set", "train.image_size=32", "--set", "train.batch_size=4",
        "--set", "train.labeled_bs=2", "--set", "train.base_width=4", "--set", "train.pretrain_iterations=4")


def test_bench_speed_reports_every_stage_against_unet_l() -> None:
    code, out, err = bench("speed", "--methods", "mt,glcon,mona", "--format", "json", "--device", "cpu", *TINY)
    assert code == 0, err
    report = json.loads(out)
    rows = {(r["method"], r["stage"]): r for r in report["rows"]}
    assert set(rows) == {("mt", "train"), ("glcon", "train"), ("mona", "pretrain"), ("mona", "train")}
    for row in rows.values():
        for key in ("step_s", "it_s", "peak_mem_mb", "ratio_to_unet_l", "outside_share"):
            assert row[key] > 0 or key == "outside_share", key
        assert abs(row["it_s"] * row["step_s"] - 1) < 1e-9
        assert abs(row["ratio_to_unet_l"] - row["step_s"] / report["baseline"]["step_s"]) < 1e-9
        assert 0 <= row["outside_share"] <= 1 and row["batch"] == 4 and row["image_size"] == 32
    assert report["evaluation"]["eval_slices_per_s"] > 0 and report["evaluation"]["metrics_s_per_volume"] > 0
    code, out, _ = bench("speed", "--methods", "unet-l", "--device", "cpu", *TINY)
    assert code == 0 and "| unet-l" in out and "x UNet-L" in out and "slices/s" in out
