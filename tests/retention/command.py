"""Running the real ``revflow prune`` and reading the table it prints."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from revflow.retention.service import KINDS
from tests.support.processes import revflow_command

ROW = re.compile(rf"^\W*({'|'.join(KINDS)})\W+(\d+)\W*$")


def prune_environment(batch_size: int | None = None) -> dict[str, str]:
    """This test's settings alone, not those of the environment it runs in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVFLOW_")}
    if batch_size is not None:
        env["REVFLOW_PRUNE_BATCH_SIZE"] = str(batch_size)
    return env


def prune_command(database_url: str, *flags: str) -> list[str]:
    return [*revflow_command(), "prune", "--database-url", database_url, *flags]


def run_prune(
    database_url: str, *flags: str, cwd: Path, batch_size: int | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        prune_command(database_url, *flags),
        cwd=cwd,
        env=prune_environment(batch_size),
        capture_output=True,
        text=True,
        timeout=300,
    )


def counts(output: str) -> dict[str, int]:
    """The kinds and their counts from the table ``revflow prune`` prints."""
    found = {}
    for line in output.splitlines():
        match = ROW.match(line)
        if match:
            found[match.group(1)] = int(match.group(2))
    assert set(found) == set(KINDS), output
    return found
