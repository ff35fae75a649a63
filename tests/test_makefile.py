"""``make run HOST=… PORT=…`` serves on that address (README, first lines)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_make_run_takes_host_and_port() -> None:
    planned = subprocess.run(
        ["make", "-n", "run", "HOST=0.0.0.0", "PORT=8080"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert planned[-1].endswith("revflow run --host 0.0.0.0 --port 8080")
    default = subprocess.run(
        ["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert default[-1].endswith("revflow run --host 127.0.0.1 --port 8000")
