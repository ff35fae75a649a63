"""``make run HOST=… PORT=…`` serves on that address (README, first lines)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def planned_run(*variables: str) -> str:
    """The ``revflow run`` line ``make run`` would execute (``make -n``, even under make)."""
    lines = subprocess.run(
        ["make", "--no-print-directory", "-n", "run", *variables],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    [line] = [line for line in lines if "revflow run" in line]
    return line


def test_make_run_takes_host_and_port() -> None:
    assert planned_run("HOST=0.0.0.0", "PORT=8080").endswith(
        "revflow run --host 0.0.0.0 --port 8080"
    )
    assert planned_run().endswith("revflow run --host 127.0.0.1 --port 8000")
