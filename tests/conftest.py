"""Fixtures shared by every test.

Every database-touching test runs twice: on SQLite and on PostgreSQL. Each backend gets one
database per test session, migrated with Alembic; tests isolate themselves by creating their own
accounts (tenancy is the product's own isolation). Tests that need a database of their own use
``fresh_database_url``.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from revflow.app import create_app
from revflow.audit.service import Actor
from revflow.auth import service as auth_service
from revflow.config import Settings
from revflow.db import Database
from revflow.migrate import upgrade

PG_ADMIN_DSN = os.environ.get("REVFLOW_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ["sqlite", "postgresql"]


def _pg_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=2):
            return True
    except OSError:
        return False


def _psql(sql: str) -> None:
    subprocess.run(
        ["psql", PG_ADMIN_DSN, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql],
        check=True,
        capture_output=True,
    )


class DatabaseFactory:
    """Creates migrated databases on one backend and drops them at the end of the session."""

    def __init__(self, backend: str, tmp: Path) -> None:
        self.backend = backend
        self.tmp = tmp
        self.created: list[str] = []

    def create(self) -> str:
        name = f"revflow_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        if self.backend == "sqlite":
            url = f"sqlite+aiosqlite:///{self.tmp / (name + '.db')}"
        else:
            _psql(f'CREATE DATABASE "{name}"')
            self.created.append(name)
            url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
        upgrade(url)
        return url

    def drop_all(self) -> None:
        for name in self.created:
            _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_factories(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, DatabaseFactory]]:
    factories = {b: DatabaseFactory(b, tmp_path_factory.mktemp(b)) for b in BACKENDS}
    yield factories
    if _pg_available():
        factories["postgresql"].drop_all()


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name == "postgresql" and not _pg_available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432 and CI is set")
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    return name


@pytest.fixture(scope="session")
def database_url(backend: str, database_factories: dict[str, DatabaseFactory]) -> str:
    """A migrated database of ``backend`` shared by the session's tests."""
    return database_factories[backend].create()


@pytest.fixture
def fresh_database_url(backend: str, database_factories: dict[str, DatabaseFactory]) -> str:
    """A migrated database of the test's own."""
    return database_factories[backend].create()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, admin_token="operator-secret", log_json=False)


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings.database_url, pool_size=5)
    yield database
    await database.dispose()


@pytest.fixture
async def client(settings: Settings, db: Database) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, db)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://revflow.test") as c:
        yield c


@dataclass
class Tenant:
    """An account and an admin key, with helpers for authenticated calls."""

    account_id: str
    key: str
    client: httpx.AsyncClient

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    async def request(self, method: str, url: str, **kwargs: object) -> httpx.Response:
        headers = {**self.headers, **dict(kwargs.pop("headers", {}) or {})}  # type: ignore[call-overload]
        return await self.client.request(method, url, headers=headers, **kwargs)  # type: ignore[arg-type]

    async def key_for(self, role: str, user: str = "someone@example.com") -> str:
        response = await self.request("POST", "/api/v1/api-keys", json={"user": user, "role": role})
        assert response.status_code == 201, response.text
        key: str = response.json()["api_key"]
        return key


async def make_tenant(db: Database, client: httpx.AsyncClient, name: str = "acme") -> Tenant:
    async with db.session(write=True) as session:
        account, clear = await auth_service.create_account(
            session, name, Actor(user="test"), dt.datetime.now(dt.UTC)
        )
        await session.commit()
    return Tenant(str(account.id), clear, client)


@pytest.fixture
async def tenant(db: Database, client: httpx.AsyncClient) -> Tenant:
    return await make_tenant(db, client, "tenant-a")


@pytest.fixture
async def other_tenant(db: Database, client: httpx.AsyncClient) -> Tenant:
    return await make_tenant(db, client, "tenant-b")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def revflow_command() -> list[str]:
    return [sys.executable, "-m", "revflow"]
