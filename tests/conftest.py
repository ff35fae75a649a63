"""Fixtures shared by every test.

Every database-touching test runs twice: on SQLite and on PostgreSQL. Each backend gets one
database per test session; tests isolate themselves by creating their own accounts (tenancy is
the product's own isolation). On PostgreSQL the databases belong to a login that is no
superuser, so row-level security holds the tests as it holds a deployment. Tests that need a
database of their own use ``fresh_database_url`` (dropped in the background once the test is
over). Alembic migrates one template per backend; every test database is a copy of it
(``tests/support/databases.py``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from revflow.app import create_app
from revflow.config import Settings
from revflow.db import Database
from revflow.engine.clock import ManualClock
from revflow.worker import Worker
from tests.support.databases import BACKENDS, DatabaseFactory, pg_available, require_postgresql
from tests.support.engine import Engine, EngineFactory, WorkflowEngine
from tests.support.tenants import Tenant, make_tenant


@pytest.fixture(scope="session")
def database_factories(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, DatabaseFactory]]:
    factories = {b: DatabaseFactory(b, tmp_path_factory.mktemp(b)) for b in BACKENDS}
    yield factories
    if pg_available():
        factories["postgresql"].drop_all()


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name == "postgresql":
        require_postgresql()
    return name


@pytest.fixture(scope="session")
def database_url(backend: str, database_factories: dict[str, DatabaseFactory]) -> str:
    """A migrated database of ``backend`` shared by the session's tests."""
    return database_factories[backend].create()


@pytest.fixture
def fresh_database_url(
    backend: str, database_factories: dict[str, DatabaseFactory]
) -> Iterator[str]:
    """A migrated database of the test's own, dropped once the test is over."""
    factory = database_factories[backend]
    url = factory.create()
    yield url
    factory.release(url)


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


@pytest.fixture
async def tenant(db: Database, client: httpx.AsyncClient) -> Tenant:
    return await make_tenant(db, client, "tenant-a")


@pytest.fixture
async def other_tenant(db: Database, client: httpx.AsyncClient) -> Tenant:
    return await make_tenant(db, client, "tenant-b")


@pytest.fixture
def engine_settings(database_url: str) -> Settings:
    # The steps of these tests call servers on loopback: the egress policy must let them.
    return Settings(
        database_url=database_url,
        log_json=False,
        retry_base_seconds=0.01,
        max_attempts=3,
        egress_allow="127.0.0.0/8",
    )


@pytest.fixture
async def engine(engine_settings: Settings) -> AsyncIterator[Engine]:
    clock = ManualClock(dt.datetime.now(dt.UTC).replace(microsecond=0))
    db = Database(engine_settings.database_url, pool_size=5)
    app = create_app(engine_settings, db, clock=clock)
    worker = Worker(db, engine_settings, clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://revflow.test") as client:
        tenant = await make_tenant(db, client, "engine")
        yield Engine(tenant, worker, clock)
    await worker.sender.aclose()
    await db.dispose()


@pytest.fixture
def make_engine() -> EngineFactory:
    """``async with make_engine(database_url, **settings) as e:`` — an engine on those settings.

    Retries are fast (``retry_base_seconds`` 0.01, ``max_attempts`` 3) unless overridden.
    """

    @asynccontextmanager
    async def build(database_url: str, **overrides: Any) -> AsyncIterator[WorkflowEngine]:
        # Steps call servers on loopback: the egress policy must let them.
        values: dict[str, Any] = {
            "retry_base_seconds": 0.01,
            "max_attempts": 3,
            "egress_allow": "127.0.0.0/8",
            **overrides,
        }
        settings = Settings(database_url=database_url, log_json=False, **values)
        clock = ManualClock(dt.datetime.now(dt.UTC).replace(microsecond=0))
        db = Database(settings.database_url, pool_size=5)
        app = create_app(settings, db, clock=clock)
        worker = Worker(db, settings, clock=clock, worker_id="worker-1")
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(
                transport=transport, base_url="http://revflow.test"
            ) as client:
                tenant: Tenant = await make_tenant(db, client, "lifecycle")
                yield WorkflowEngine(tenant, worker, clock, db, settings)
        finally:
            await worker.sender.aclose()
            await db.dispose()

    return build
