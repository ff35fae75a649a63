"""Fixtures of the console's tests: a real ``revflow serve`` for the browser, signed-in httpx
clients for the page tests, and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import DatabaseFactory, revflow_command
from tests.servers import RevflowServers
from tests.workers import WorkerProcess

CHROMIUM = os.environ.get("REVFLOW_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert found, "the page carries no CSRF token"
    return found.group(1)


def sign_in(client: httpx.Client | Any, key: str) -> httpx.Response:
    """Sign a client in through the form, as a browser does (sync or async client)."""
    page = client.get("/ui/sign-in")
    token = re.search(r'name="sign_in_token" value="([^"]+)"', page.text)
    assert token, page.text
    return client.post(
        "/ui/sign-in",
        data={"api_key": key, "sign_in_token": token.group(1), "next": "/ui/workflows"},
    )


@dataclass
class Console:
    """A running server, an account on it and an API client with its admin key."""

    url: str
    key: str
    account_id: str
    api: httpx.Client

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.api.request(method, path, **kwargs)
        assert response.status_code < 300, f"{method} {path}: {response.text}"
        return response.json() if response.content else None


def _account(database_url: str, name: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVFLOW_")}
    env["REVFLOW_DATABASE_URL"] = database_url
    out = subprocess.run(
        [*revflow_command(), "accounts", "create", name],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    created: dict[str, Any] = json.loads(out.stdout)
    return created


@pytest.fixture(scope="module")
def console_server(
    backend: str,
    database_factories: dict[str, DatabaseFactory],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Console]:
    """``revflow serve`` on a fresh database, shared by a module's tests (SQLite runs its worker
    in-process; PostgreSQL gets a ``revflow worker`` beside it)."""
    # Playwright's sync API keeps an event loop running in this thread, and Alembic's
    # migration starts one of its own: the database is made in another thread.
    with ThreadPoolExecutor(1) as pool:
        database_url = pool.submit(database_factories[backend].create).result()
    created = _account(database_url, "acme")
    worker = None
    if backend == "postgresql":
        worker = WorkerProcess(database_url, tmp_path_factory.mktemp("worker"))
        worker.start()
    try:
        with RevflowServers(database_url, 1) as servers:
            url = servers.urls[0]
            headers = {"Authorization": f"Bearer {created['api_key']}"}
            with httpx.Client(base_url=url, headers=headers, timeout=30) as api:
                yield Console(url, created["api_key"], created["account"]["id"], api)
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


@dataclass
class Browserless:
    """A console session over the in-process app (httpx keeps the cookies)."""

    client: httpx.AsyncClient
    csrf: str

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.client.get(url, **kwargs)

    async def post(self, url: str, data: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        return await self.client.post(url, data={"csrf_token": self.csrf, **(data or {})}, **kw)

    async def send_json(self, method: str, url: str, body: Any) -> httpx.Response:
        headers = {"X-CSRF-Token": self.csrf, "Accept": "application/json"}
        return await self.client.request(method, url, json=body, headers=headers)


async def console_session(app: Any, key: str) -> Browserless:
    """Sign in with ``key`` through the form; the session's CSRF token from the next page."""
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://revflow.test"
    )
    form = await client.get("/ui/sign-in")
    token = re.search(r'name="sign_in_token" value="([^"]+)"', form.text)
    assert token, form.text
    signed = await client.post(
        "/ui/sign-in", data={"api_key": key, "sign_in_token": token.group(1), "next": ""}
    )
    assert signed.status_code == 303, signed.text
    page = await client.get("/ui/workflows")
    assert page.status_code == 200, page.text
    return Browserless(client, csrf_of(page.text))
