"""``revflow versions diff`` against a real database, as an operator runs it."""

from __future__ import annotations

import json
import os
import subprocess

from tests.support.processes import revflow_command
from tests.support.tenants import Tenant
from tests.support.workflows import create_version, create_workflow, simple_definition


def run_cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REVFLOW_DATABASE_URL": database_url}
    return subprocess.run(
        [*revflow_command(), *args], env=env, capture_output=True, text=True, timeout=60
    )


async def test_versions_diff_text_and_json(tenant: Tenant, database_url: str) -> None:
    wf = await create_workflow(tenant)
    await create_version(tenant, wf["id"], simple_definition("Hello"), None)
    changed = simple_definition("Welcome aboard")
    changed["steps"] = [s for s in changed["steps"] if s["id"] != "thank_you"]
    changed["goals"] = []
    await create_version(tenant, wf["id"], changed, 1)

    text = run_cli(database_url, "versions", "diff", wf["id"], "1", "2")
    assert text.returncode == 0, text.stderr
    assert "--- v1 (1.0.0)" in text.stdout and "+++ v2 (2.0.0)" in text.stdout
    assert "thank_you" in text.stdout and "Welcome aboard" in text.stdout

    as_json = run_cli(database_url, "versions", "diff", wf["id"], "1", "2", "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    body = json.loads(as_json.stdout)
    assert body["suggested_bump"] == "major"
    assert {b["step"] for b in body["breaking"]} == {"thank_you", None}

    missing = run_cli(database_url, "versions", "diff", wf["id"], "1", "9")
    assert missing.returncode == 1 and "no version 9" in missing.stderr
