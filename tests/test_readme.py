"""The README's first workflow, pasted into a shell as a newcomer would, creates, publishes and
runs the example workflow against a real server (SQLite, with its in-process worker)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import revflow_command
from tests.support.servers import RevflowServers

README = Path(__file__).resolve().parents[1] / "README.md"


def block_after(text: str, marker: str, language: str) -> str:
    """The first fenced ``language`` block after ``marker``."""
    start = text.index(marker)
    match = re.compile(rf"```{language}\n(.*?)```", re.S).search(text, start)
    assert match is not None, f"no {language} block after {marker!r}"
    return match.group(1)


def test_the_readme_first_workflow_runs_as_written(
    backend: str, fresh_database_url: str, tmp_path: Path
) -> None:
    if backend != "sqlite":
        pytest.skip("the README's first run is the embedded mode: SQLite with its own worker")
    text = README.read_text()
    script = block_after(text, "<!-- first-workflow:", "sh")
    (tmp_path / "welcome.json").write_text(block_after(text, "## Workflow definitions", "json"))
    env = {**os.environ, "REVFLOW_DATABASE_URL": fresh_database_url}
    account = subprocess.run(
        [*revflow_command(), "accounts", "create", "readme"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    key = json.loads(account.stdout)["api_key"]
    with RevflowServers(fresh_database_url, 1) as servers:
        # What a newcomer changes: the key make run printed, and the server's address.
        filled = script.replace("KEY=rf_...", f"KEY={key}").replace(
            "URL=http://127.0.0.1:8000", f"URL={servers.urls[0]}"
        )
        assert filled != script
        run = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", filled],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert run.returncode == 0, run.stderr
    messages = json.loads(run.stdout)["items"]
    assert [(m["kind"], m["to"], m["subject"]) for m in messages] == [
        ("email", "ada@example.com", "Welcome, Ada!")
    ]
