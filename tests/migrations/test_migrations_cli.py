"""``revflow migrations start / watch`` against a real server and worker."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from typing import Any

import httpx

from tests.support.processes import revflow_command
from tests.support.servers import RevflowServers


def definition(subject: str, wait_step: str) -> dict[str, Any]:
    return {
        "trigger": {"type": "manual"},
        "steps": [
            {
                "id": "hello",
                "type": "send_email",
                "subject": subject,
                "body": "b",
                "next": wait_step,
            },
            {"id": wait_step, "type": "wait", "duration": "3d"},
        ],
    }


def cli(url: str, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REVFLOW_URL": url, "REVFLOW_API_KEY": key}
    return subprocess.run(
        [*revflow_command(), "migrations", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_start_dry_run_then_follow(backend: str, fresh_database_url: str) -> None:
    accounts = subprocess.run(
        [*revflow_command(), "accounts", "create", "cli"],
        capture_output=True,
        text=True,
        env={**os.environ, "REVFLOW_DATABASE_URL": fresh_database_url},
        check=True,
    )
    key = json.loads(accounts.stdout)["api_key"]
    worker = None
    if backend == "postgresql":  # `serve` runs no worker on PostgreSQL by default
        worker = subprocess.Popen(
            [*revflow_command(), "worker"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={
                **os.environ,
                "REVFLOW_DATABASE_URL": fresh_database_url,
                "REVFLOW_WORKER_POLL_SECONDS": "0.1",
            },
        )
    try:
        async with RevflowServers(fresh_database_url, 1) as servers:
            url = servers.urls[0]
            async with httpx.AsyncClient(
                base_url=url + "/api/v1", headers={"Authorization": f"Bearer {key}"}, timeout=30
            ) as api:
                wf = (
                    await api.post(
                        "/workflows",
                        json={
                            "name": "cli",
                            "definition": definition("v1", "hold"),
                            "change_summary": "v1",
                        },
                    )
                ).json()["id"]
                await api.post(f"/workflows/{wf}/versions/1/publish")
                contacts = [
                    (await api.post("/contacts", json={"email": f"c{i}@example.com"})).json()["id"]
                    for i in range(5)
                ]
                await api.post(f"/workflows/{wf}/enrollments", json={"contact_ids": contacts})
                for _ in range(200):
                    page = (
                        await api.get(f"/workflows/{wf}/executions", params={"status": "waiting"})
                    ).json()
                    if len(page["items"]) == 5:
                        break
                    await asyncio.sleep(0.1)
                await api.post(
                    f"/workflows/{wf}/versions",
                    json={
                        "definition": definition("v2", "rest"),
                        "change_summary": "v2",
                        "base_version": 1,
                    },
                )

            dry = cli(url, key, "start", wf, "2", "--from", "1", "--dry-run")
            assert dry.returncode == 0, dry.stderr
            assert "0 of 5 executions can move" in dry.stdout and "step_removed" in dry.stdout

            bad = cli(url, key, "start", wf, "2", "--from", "1", "--map", "nope=rest")
            assert bad.returncode == 1 and "/mapping/nope" in bad.stderr

            assert "never published or canaried" in dry.stderr  # version 2 is a draft
            refused = cli(url, key, "start", wf, "2", "--from", "1", "--map", "hold=rest")
            assert refused.returncode == 1 and "not_released" in refused.stderr
            run = cli(
                url,
                key,
                "start",
                wf,
                "2",
                "--from",
                "1",
                "--map",
                "hold=rest",
                "--allow-unreleased",
                "--follow",
            )
            assert run.returncode == 0, run.stderr
            started = json.loads(run.stdout.splitlines()[0])
            assert started["total"] == 5
            assert "completed" in run.stderr and "migrated 5" in run.stderr

            watched = cli(url, key, "watch", started["id"])
            assert watched.returncode == 0 and "migrated 5" in watched.stderr
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
