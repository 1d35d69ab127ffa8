"""The GPU check's performance half runs its CPU path (tiny sizes): every section is written."""
from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_perf_report_cpu_smoke(tmp_path: Path, cache_dir: Path) -> None:
    from sslbench.run.perf_report import report

    path = report(tmp_path, cpu_smoke=True)
    text = path.read_text()
    for heading in ("## ssl4mis, fp32", "## ssl4mis, bf16 autocast", "## paper, fp32", "## paper, bf16 autocast",
                    "## Concurrent MT runs"):
        assert heading in text, heading
    assert "| mona | train |" in text and "| 4 |" in text
