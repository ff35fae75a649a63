"""Starting revflow as its operators do (SPEC §9 "Running it"; README "Command line"):
``revflow run`` (one command on SQLite) and ``revflow serve --with-worker`` (PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from revflow.db import Database
from tests.support.processes import free_port, revflow_command
from tests.support.servers import RevflowServers
from tests.support.tenants import make_tenant

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


def _wait_for_key(process: subprocess.Popen[bytes], log: Path) -> tuple[str, str]:
    """The URL and the admin key ``revflow run`` prints, once it answers on that URL."""
    deadline = time.monotonic() + START_TIMEOUT_S
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            assert process.poll() is None, f"revflow run exited:\n{log.read_text()[-3000:]}"
            out = log.read_text(errors="replace")
            url = re.search(r"on (http://127\.0\.0\.1:\d+)", out)
            key = re.search(r"admin key: (\S+)", out)
            if url and key:
                try:
                    if client.get(f"{url.group(1)}/readyz").status_code == 200:
                        return url.group(1), key.group(1)
                except httpx.HTTPError:
                    pass
            time.sleep(0.1)
    pytest.fail(f"revflow run did not start:\n{log.read_text()[-3000:]}")


def test_revflow_run_prints_a_url_and_a_key_that_works(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "run.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVFLOW_")}
    env.update({"REVFLOW_LOG_JSON": "false", "PYTHONUNBUFFERED": "1"})
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*revflow_command(), "run", "--port", str(port)],
            cwd=tmp_path,  # the default database is ./revflow.db of the working folder
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            url, key = _wait_for_key(process, log)
            assert url == f"http://127.0.0.1:{port}"
            assert (tmp_path / "revflow.db").exists()
            with httpx.Client(base_url=url, timeout=10.0) as client:
                headers = {"Authorization": f"Bearer {key}"}
                created = client.post(
                    "/api/v1/workflows", json={"name": "From run"}, headers=headers
                )
                assert created.status_code == 201, created.text
                listed = client.get("/api/v1/workflows", headers=headers)
                assert [w["name"] for w in listed.json()["items"]] == ["From run"]
                assert client.get("/api/v1/workflows").status_code == 401
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)  # Ctrl-C in the terminal of `make run`
            try:
                code = process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise
    output = log.read_text(errors="replace")
    assert code == 0, output[-3000:]
    assert "worker_stopped" in output and "Traceback" not in output, output[-3000:]


async def test_serve_with_worker_runs_executions_on_postgresql(
    backend: str, fresh_database_url: str
) -> None:
    if backend != "postgresql":
        pytest.skip("on SQLite the server always runs its worker; this is about PostgreSQL")
    db = Database(fresh_database_url, pool_size=2)
    try:
        async with (
            RevflowServers(fresh_database_url, 1, serve_args=["--with-worker"]) as servers,
            httpx.AsyncClient(base_url=servers.urls[0], timeout=30.0) as client,
        ):
            tenant = await make_tenant(db, client, "served")
            definition = {
                "trigger": {"type": "manual"},
                "steps": [
                    {
                        "id": "hello",
                        "type": "send_email",
                        "subject": "Hi",
                        "body": "b",
                        "next": "mark",
                    },
                    {"id": "mark", "type": "add_tag", "tag": "welcomed"},
                ],
            }
            created = await tenant.request(
                "POST",
                "/api/v1/workflows",
                json={"name": "served", "definition": definition, "change_summary": "first"},
            )
            assert created.status_code == 201, created.text
            wf = created.json()["id"]
            published = await tenant.request("POST", f"/api/v1/workflows/{wf}/versions/1/publish")
            assert published.status_code == 200, published.text
            contact = await tenant.request(
                "POST", "/api/v1/contacts", json={"email": "served@example.com"}
            )
            enrolled = await tenant.request(
                "POST",
                f"/api/v1/workflows/{wf}/enrollments",
                json={"contact_ids": [contact.json()["id"]]},
            )
            assert enrolled.status_code == 201, enrolled.text
            execution_id = enrolled.json()["executions"][0]

            deadline = time.monotonic() + 30
            while True:
                ex = (await tenant.request("GET", f"/api/v1/executions/{execution_id}")).json()
                if ex["status"] == "completed" or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert ex["status"] == "completed", ex
            assert [(h["step"], h["result"]) for h in ex["history"]] == [
                ("hello", "sent"),
                ("mark", "done"),
            ]
            tags = (await tenant.request("GET", f"/api/v1/contacts/{contact.json()['id']}")).json()
            assert tags["tags"] == ["welcomed"]
    finally:
        await db.dispose()
