"""Fixtures of the console's browser tests: a real ``revflow serve`` and Debian's Chromium
driven by Playwright."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from revflow.db import Database
from tests.support.console import Console
from tests.support.databases import DatabaseFactory
from tests.support.servers import RevflowServers
from tests.support.tenants import make_account
from tests.support.workers import WorkerProcess

CHROMIUM = os.environ.get("REVFLOW_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"


async def _account(database_url: str, name: str) -> tuple[str, str]:
    """An account and its admin key, made in-process (``revflow accounts create`` has tests
    of its own; its process would cost ~2 s here)."""
    db = Database(database_url, pool_size=1)
    try:
        return await make_account(db, name)
    finally:
        await db.dispose()


@pytest.fixture(scope="module")
def console_server(
    backend: str,
    database_factories: dict[str, DatabaseFactory],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Console]:
    """``revflow serve`` on a fresh database, shared by a module's tests (SQLite runs its worker
    in-process; PostgreSQL gets a ``revflow worker`` beside it)."""
    # Playwright's sync API keeps an event loop running in this thread, and Alembic's
    # migration starts one of its own: the database and the account are made in another thread.
    with ThreadPoolExecutor(1) as pool:
        database_url = pool.submit(database_factories[backend].create).result()
        account_id, key = pool.submit(asyncio.run, _account(database_url, "acme")).result()
    worker = None
    if backend == "postgresql":
        worker = WorkerProcess(database_url, tmp_path_factory.mktemp("worker"))
        worker.start()
    try:
        with RevflowServers(database_url, 1) as servers:
            url = servers.urls[0]
            headers = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=url, headers=headers, timeout=30) as api:
                yield Console(url, key, account_id, api)
    finally:
        if worker is not None:
            worker.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium (Playwright's own download cannot run here). Without it the browser
    tests skip on a workstation and fail in CI (``CI`` set). Module-scoped: Playwright's loop
    must be gone before the async tests of other modules run."""
    from playwright.sync_api import Error, sync_playwright

    if not Path(CHROMIUM).exists():
        message = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
            )
        except Error as exc:
            if os.environ.get("CI"):
                pytest.fail(f"Chromium did not start: {exc}")
            pytest.skip(f"Chromium did not start: {exc}")
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\nconsole screenshots: {ARTIFACTS}")
    return ARTIFACTS
