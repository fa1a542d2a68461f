"""bench/import.py at a small size: it runs end to end and its report adds up."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_import_benchmark_small_file_accounts_for_every_row() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "import.py"), "--rows", "600"],
        capture_output=True, text=True, timeout=240, check=True, cwd=ROOT,
    ).stdout
    assert re.search(r"bare calamine read: [\d.]+s \(601 rows\)", out)  # the header row and 600 rows
    assert re.search(r"read, clean and check rows, no database: [\d.]+s \([\d.]+x the read\)", out)
    assert re.search(r"ratio import/read: [\d.]+x", out)
    counts = re.search(r"imported (\d+), quarantined (\d+), duplicates (\d+), merged_cells 1", out)
    assert counts is not None, out
    imported, quarantined, duplicates = map(int, counts.groups())
    assert imported + quarantined + duplicates == 600
    assert quarantined > 0 and duplicates > 0  # the generator's dirty rows and exact repeats
