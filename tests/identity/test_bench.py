"""bench/identity.py at a small size: runs end to end and meets the correctness target."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_benchmark_small_population_has_no_false_merges() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "identity.py"), "--people", "300", "--seed", "3"],
        capture_output=True, text=True, timeout=240, check=True, cwd=ROOT,
    ).stdout
    hub_line = next(line for line in out.splitlines() if line.startswith("hub (pipeline)"))
    precision, recall, recall_allowed, false_merges, false_pairs, _ = hub_line.split()[2:]
    assert float(precision) == 1.0 and int(false_merges) == 0 and int(false_pairs) == 0
    assert float(recall_allowed) == 1.0 and 0 < float(recall) <= 1.0
    assert "throughput ratio hub/baseline" in out
