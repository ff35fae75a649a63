"""The retention benchmark (BENCHMARKS.md, "Retention") runs end to end on a small workload
and measures the same aged rows both ways."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.databases import require_postgresql

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_retention.py"


def test_the_retention_benchmark_deletes_and_drops_the_same_rows(tmp_path: Path) -> None:
    require_postgresql()
    small = ["--executions", "300", "--entries", "3", "--batch-size", "100"]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *small, "--baseline-seconds", "0.2", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["batched_delete"]["rows"] == 900
    # Whole executions a batch: 33 of 3 entries make 99 rows, so ten batches.
    assert result["batched_delete"]["batches"] == 10
    assert result["partition_drop"]["rows"] == 900
    for way in ("batched_delete", "partition_drop"):
        assert result[way]["probe_quiet"]["n"] > 0
