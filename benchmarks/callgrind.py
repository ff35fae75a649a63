"""What ``count_create.py`` and ``count_list.py`` share: a script that runs itself again under
valgrind's callgrind, switches the instrumentation on around the requests it counts, and
reads the total back; and the application of one account in process, which
``cpu_per_request.py`` uses too.

Timings on a shared two-core machine move by 30-60 % from run to run; instruction counts do
not: callgrind counts the same total for the same code and inputs whatever else the machine is
doing, so two revisions compare in one run each.
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from revflow.app import create_app
from revflow.audit.service import Actor
from revflow.auth import service as auth_service
from revflow.config import Settings
from revflow.db import Database
from revflow.definition.samples import make_definition

# Set in the process that valgrind runs: the one that makes the requests.
COUNTING = "REVFLOW_CALLGRIND_COUNTING"


def counting() -> bool:
    """Whether this process is the one valgrind runs."""
    return os.environ.get(COUNTING) == "1"


def instrument(on: bool) -> None:
    """Switch callgrind's instrumentation of this process on or off."""
    if not counting():
        return
    subprocess.run(
        ["callgrind_control", "--instr=on" if on else "--instr=off", str(os.getpid())],
        check=True,
        capture_output=True,
    )


def settle_collector() -> None:
    """What ``revflow serve`` does to the collector once the app is loaded, where the
    revision has it; older revisions froze only."""
    try:
        from revflow.kit import collector
    except ImportError:
        gc.collect()
        gc.freeze()
    else:
        collector.settle()


@asynccontextmanager
async def app_of_one_account(
    url: str, **settings: Any
) -> AsyncIterator[tuple[Any, dict[str, str]]]:
    """revflow's app in this process on the database of ``url`` with ``settings``, and one
    account: the ASGI app and the account's headers. The standard library's logging is
    switched off; structlog is left as the caller has it (unconfigured: its default console
    renderer, not ``revflow serve``'s JSON, the same work in every revision). The collector is
    settled as ``revflow serve`` settles it."""
    db = Database(url, pool_size=2)
    app = create_app(Settings(database_url=url, log_json=False, **settings), db)
    async with db.session(write=True) as session:
        _account, key = await auth_service.create_account(
            session, "count", Actor(user="bench"), dt.datetime.now(dt.UTC)
        )
        await session.commit()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    logging.disable(logging.CRITICAL)
    settle_collector()
    try:
        yield app, headers
    finally:
        await db.dispose()


@asynccontextmanager
async def client_of_one_account(
    url: str, **settings: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """:func:`app_of_one_account` behind a client (httpx's ASGI transport: no server, no
    socket): the client and the account's headers."""
    async with app_of_one_account(url, **settings) as (app, headers):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://count") as client:
            yield client, headers


async def workflow_of_small_versions(
    client: httpx.AsyncClient, headers: dict[str, str], versions: int
) -> tuple[str, str]:
    """A workflow of ``versions`` versions of a three-step definition, each the one before with
    its first step's tag changed: the workflow's id and the path of its versions."""
    definition = make_definition(3, 1)
    first = {"name": "measured", "definition": definition, "change_summary": "1"}
    made = await client.post("/api/v1/workflows", headers=headers, json=first)
    made.raise_for_status()
    workflow = str(made.json()["id"])
    path = f"/api/v1/workflows/{workflow}/versions"
    for number in range(2, versions + 1):
        definition["steps"][0]["tag"] = f"customer-{number}"
        body = {"definition": definition, "change_summary": "edit", "base_version": number - 1}
        (await client.post(path, headers=headers, json=body)).raise_for_status()
    return workflow, path


def count(script: str, keep: Path | None = None) -> int:
    """Run ``script`` with this process's arguments under callgrind, instrumentation off at
    the start; the instructions it counted (``keep``: where to copy callgrind's output)."""
    with tempfile.TemporaryDirectory() as workdir:
        out = Path(workdir) / "callgrind.out"
        command = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            sys.executable,
            script,
            *sys.argv[1:],
        ]
        done = subprocess.run(
            command, env={**os.environ, COUNTING: "1"}, capture_output=True, text=True
        )
        collected = re.search(r"Collected : (\d+)", done.stderr)
        if done.returncode != 0 or collected is None:
            sys.exit(f"the counted run failed ({done.returncode}):\n{done.stderr[-3000:]}")
        if keep is not None:
            keep.write_bytes(out.read_bytes())
    return int(collected.group(1))
