"""Row-level security, SPEC §1's second wall (PostgreSQL): the API's and the console's
transactions run as ``revflow_tenant`` with their account set, so a query that forgets its
account filter still reads and writes that account's rows only. Two real accounts with data
in every table are crossed. SQLite has no such wall: these tests skip there."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import insert, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from revflow import db as db_module
from revflow.alembic import rls
from revflow.app import create_app
from revflow.auth.service import authenticate
from revflow.config import Settings
from revflow.db import TENANT_ROLE, Database, enter_account, login_outside_tenant_role
from revflow.deps import ReadSession, Viewer, WriteSession
from revflow.engine.clock import ManualClock
from revflow.models import Contact
from revflow.ui.page import ViewerPage
from revflow.worker import Worker
from tests.support.console import console_session
from tests.support.databases import admin_psql
from tests.support.processes import free_port, revflow_command
from tests.support.routes import API, World, build_world
from tests.support.tenants import Tenant, make_tenant


@pytest.fixture
def pg(backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("row-level security is PostgreSQL's; SQLite relies on the account filters")


async def tenant_tables(session: AsyncSession) -> dict[str, str]:
    """Every table under the wall and its account column (``accounts``: its own ``id``)."""
    rows = await session.execute(
        text(
            "SELECT table_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND column_name = 'account_id'"
        )
    )
    return {"accounts": "id", **{row.table_name: "account_id" for row in rows}}


async def accounts_seen(session: AsyncSession, tables: dict[str, str]) -> dict[str, set[str]]:
    """The accounts each table shows this session, read with no WHERE at all."""
    seen = {}
    for table, column in tables.items():
        rows = await session.execute(text(f"SELECT DISTINCT {column} FROM {table}"))
        seen[table] = {str(value) for (value,) in rows}
    return seen


def probed_app(settings: Settings, db: Database, tables: dict[str, str]) -> FastAPI:
    """The real application with three more routes on its own session dependencies (API key
    and console cookie) that deliberately forget the account filter."""
    app = create_app(settings, db)

    @app.get("/probe/unfiltered")
    async def unfiltered(principal: Viewer, session: ReadSession) -> dict[str, Any]:
        del principal
        return await _report(session, tables)

    @app.post("/probe/after-a-commit")
    async def after_a_commit(principal: Viewer, session: WriteSession) -> dict[str, Any]:
        del principal
        await session.execute(text("SELECT 1"))
        await session.commit()  # the next transaction is the account's too
        return await _report(session, tables)

    @app.get("/ui/probe/unfiltered")
    async def console_unfiltered(page: ViewerPage) -> dict[str, Any]:
        return await _report(page.db, tables)

    # Ahead of the console's catch-all page (its 404).
    app.router.routes.insert(0, app.router.routes.pop())
    return app


async def _report(session: AsyncSession, tables: dict[str, str]) -> dict[str, Any]:
    user = await session.scalar(text("SELECT current_user"))
    seen = await accounts_seen(session, tables)
    return {"user": user, "seen": {table: sorted(ids) for table, ids in seen.items()}}


@dataclass
class Crossing:
    """Two accounts with rows in every table that the API and the worker write, the probed
    application and the database (its sessions are the connecting login's)."""

    a: Tenant
    b: Tenant
    worlds: list[World]
    tables: dict[str, str]
    app: FastAPI
    db: Database


@pytest.fixture
async def crossing(pg: None, fresh_database_url: str) -> AsyncIterator[Crossing]:
    settings = Settings(
        database_url=fresh_database_url, admin_token="operator-secret", log_json=False
    )
    db = Database(fresh_database_url, pool_size=3)
    async with db.session() as session:
        tables = await tenant_tables(session)
    app = probed_app(settings, db, tables)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://revflow.test") as client:
        a = await make_tenant(db, client, "tenant-a")
        b = await make_tenant(db, client, "tenant-b")
        worlds = [await build_world(a), await build_world(b)]
        for tenant in (a, b):
            created = await tenant.request(
                "POST",
                f"{API}/contacts",
                json={"email": "lead@example.com", "tags": ["lead"]},
                headers={"Idempotency-Key": "lead"},
            )
            assert created.status_code == 201, created.text
        # The worker runs the enrolled executions' first steps: history and outbox messages.
        clock = ManualClock(dt.datetime.now(dt.UTC))
        worker = Worker(db, settings, clock=clock)
        await worker.drain()
        await worker.sender.aclose()
        yield Crossing(a, b, worlds, tables, app, db)
    await db.dispose()


async def test_an_unfiltered_select_through_the_api_session_sees_only_its_account(
    crossing: Crossing,
) -> None:
    # The connecting role (the worker's path) sees both accounts in every table that both
    # accounts wrote to, so the filter below is the wall's doing, not an empty table.
    async with crossing.db.session() as session:
        everything = await accounts_seen(session, crossing.tables)
    both = {crossing.a.account_id, crossing.b.account_id}
    written = {table for table, ids in everything.items() if ids == both}
    assert {
        "accounts",
        "api_keys",
        "audit_entries",
        "contacts",
        "executions",
        "execution_history",
        "idempotency_records",
        "messages",
        "migration_items",
        "migrations",
        "versions",
        "version_tags",
        "webhook_deliveries",
        "webhook_subscriptions",
        "workflows",
        "working_drafts",
    } <= written

    for tenant, path in ((crossing.a, "/probe/unfiltered"), (crossing.b, "/probe/after-a-commit")):
        method = "GET" if path == "/probe/unfiltered" else "POST"
        response = await tenant.request(method, path)
        assert response.status_code == 200, response.text
        report = response.json()
        assert report["user"] == TENANT_ROLE
        for table in written:
            assert report["seen"][table] == [tenant.account_id], table
        for table, ids in report["seen"].items():
            assert set(ids) <= {tenant.account_id}, table


async def test_the_console_session_is_under_the_wall_too(
    crossing: Crossing,
) -> None:
    console = await console_session(crossing.app, crossing.a.key)
    try:
        response = await console.get("/ui/probe/unfiltered")
    finally:
        await console.client.aclose()
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["user"] == TENANT_ROLE
    assert report["seen"]["contacts"] == [crossing.a.account_id]
    assert report["seen"]["executions"] == [crossing.a.account_id]


@asynccontextmanager
async def entered(db: Database, tenant: Tenant) -> AsyncIterator[AsyncSession]:
    """A write session held to ``tenant``'s account as ``deps.current_principal`` does it."""
    async with db.session(write=True) as session:
        principal = await authenticate(session, tenant.key)
        assert principal is not None
        await enter_account(session, principal.account_id)
        yield session


async def test_writing_another_accounts_rows_is_refused(
    crossing: Crossing,
) -> None:
    theirs = uuid.UUID(crossing.worlds[1].contact_id)
    mine = uuid.UUID(crossing.worlds[0].contact_id)
    b = uuid.UUID(crossing.b.account_id)
    async with entered(crossing.db, crossing.a) as session:
        # A row of another account cannot be inserted (WITH CHECK) ...
        with pytest.raises(DBAPIError, match="row-level security"):
            await session.execute(
                insert(Contact).values(
                    id=uuid.uuid4(), account_id=b, email="planted@example.com", fields={}, tags=[]
                )
            )
        await session.rollback()
        # ... nor can one's own row be handed over to it ...
        with pytest.raises(DBAPIError, match="row-level security"):
            await session.execute(update(Contact).where(Contact.id == mine).values(account_id=b))
        await session.rollback()
        # ... and its rows are not there to change or delete, even named by their id.
        changed = await session.execute(
            text("UPDATE contacts SET email = 'taken@example.com' WHERE id = :id"), {"id": theirs}
        )
        deleted = await session.execute(
            text("DELETE FROM executions WHERE contact_id = :id"), {"id": theirs}
        )
        assert (changed.rowcount, deleted.rowcount) == (0, 0)  # type: ignore[attr-defined]
        await session.commit()
    async with crossing.db.session() as session:
        email = await session.scalar(
            text("SELECT email FROM contacts WHERE id = :id"), {"id": theirs}
        )
        executions = await session.scalar(
            text("SELECT count(*) FROM executions WHERE contact_id = :id"), {"id": theirs}
        )
    assert email != "taken@example.com" and executions == 1


async def test_the_account_holds_across_savepoints_and_commits_and_leaves_with_the_session(
    crossing: Crossing,
) -> None:
    async with entered(crossing.db, crossing.a) as session:
        with pytest.raises(RuntimeError):
            async with session.begin_nested():
                raise RuntimeError("rolled back")
        assert await session.scalar(text("SELECT current_user")) == TENANT_ROLE
        await session.commit()
        assert await session.scalar(text("SELECT current_user")) == TENANT_ROLE
        accounts = await session.scalars(text("SELECT DISTINCT account_id FROM contacts"))
        assert [str(a) for a in accounts] == [crossing.a.account_id]
    # The pooled connection goes back as its login role: the next session is the worker's
    # cross-account path again.
    async with crossing.db.session() as session:
        assert await session.scalar(text("SELECT current_user")) != TENANT_ROLE
        accounts = await session.scalars(text("SELECT DISTINCT account_id FROM contacts"))
        assert {str(a) for a in accounts} == {crossing.a.account_id, crossing.b.account_id}


class SimpleQueries:
    """Every statement the pooled connections send without parameters (BEGIN, COMMIT, …)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[str] = []
        plain = asyncpg.Connection.execute

        async def recorded(connection: Any, query: str, *args: Any, **kwargs: Any) -> Any:
            if not args:
                self.sent.append(query)
            return await plain(connection, query, *args, **kwargs)

        monkeypatch.setattr(asyncpg.Connection, "execute", recorded)


async def test_a_tenants_transaction_sends_its_settings_with_its_begin(
    crossing: Crossing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The role and the account travel in the BEGIN's own round trip, and hold for the
    transaction's statements."""
    queries = SimpleQueries(monkeypatch)
    async with entered(crossing.db, crossing.a) as session:
        await session.commit()  # the key's lookup: the transaction is the next one
        queries.sent.clear()
        user = await session.scalar(text("SELECT current_user"))
        account = await session.scalar(text("SELECT current_setting('app.account_id')"))
        await session.commit()
    assert (user, account) == (TENANT_ROLE, crossing.a.account_id)
    begin, commit = queries.sent
    assert begin.startswith("BEGIN") and "set_config('role', 'revflow_tenant', true)" in begin
    assert f"'{crossing.a.account_id}'" in begin
    assert commit.startswith("COMMIT")


async def test_a_tenants_transaction_that_sent_nothing_leaves_nothing_behind(
    pg: None, fresh_database_url: str
) -> None:
    """The settings wait for the transaction's first statement; a transaction that ends
    before it does not hand them to the connection's next user."""
    db = Database(fresh_database_url, pool_size=1)
    try:
        async with db.session() as session:
            await enter_account(session, uuid.uuid4())
            await session.connection()  # begun, nothing sent
            await session.commit()
        async with db.session() as session:
            await enter_account(session, uuid.uuid4())
            await session.connection()
            await session.rollback()
        async with db.session() as session:
            assert await session.scalar(text("SELECT current_user")) != TENANT_ROLE
            assert not await session.scalar(text("SELECT current_setting('app.account_id', true)"))
    finally:
        await db.dispose()


async def test_a_begin_whose_settings_fail_closes_its_connection(
    pg: None, fresh_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were the settings refused, the connection is closed rather than kept with a
    transaction half started; the pool replaces it."""
    db = Database(fresh_database_url, pool_size=1, ping_idle_s=0)
    monkeypatch.setattr(
        db_module, "_tenant_settings", lambda _account: "SELECT set_config('role', 'nobody', true)"
    )
    try:
        async with db.session() as session:
            await enter_account(session, uuid.uuid4())
            with pytest.raises(DBAPIError):
                await session.execute(text("SELECT 1"))
        async with db.session() as session:
            assert await session.scalar(text("SELECT current_user")) != TENANT_ROLE
    finally:
        await db.dispose()


async def test_the_tenant_role_cannot_bypass_row_level_security(pg: None, db: Database) -> None:
    async with db.session() as session:
        role = (
            await session.execute(
                text(
                    "SELECT rolsuper, rolbypassrls, rolcanlogin, rolcreaterole, rolinherit "
                    "FROM pg_roles WHERE rolname = :name"
                ),
                {"name": TENANT_ROLE},
            )
        ).one()
        # Nor does it gain those powers through a role it belongs to.
        powers = await session.scalar(
            text(
                "SELECT count(*) FROM pg_roles r WHERE (r.rolsuper OR r.rolbypassrls) "
                "AND pg_has_role(:name, r.oid, 'MEMBER')"
            ),
            {"name": TENANT_ROLE},
        )
    assert not role.rolsuper and not role.rolbypassrls and not role.rolcanlogin
    assert not role.rolcreaterole
    assert powers == 0


async def test_without_the_account_setting_the_tenant_role_sees_nothing(
    crossing: Crossing,
) -> None:
    """A transaction that took the role but not the account (no code does) fails closed."""
    async with crossing.db.session() as session:
        await session.execute(text(f"SET LOCAL ROLE {TENANT_ROLE}"))
        seen = await accounts_seen(session, crossing.tables)
    assert all(ids == set() for ids in seen.values()), seen


async def test_sqlite_takes_the_account_without_a_role(backend: str, db: Database) -> None:
    """On SQLite entering an account only records it on the session."""
    if backend != "sqlite":
        pytest.skip("PostgreSQL's side is the tests above")
    async with db.session() as session:
        account = uuid.uuid4()
        await session.execute(text("SELECT 1"))
        await enter_account(session, account)
        assert session.info["account_id"] == account
        assert await session.scalar(text("SELECT 1")) == 1


async def test_serve_refuses_a_login_outside_the_tenant_role(
    pg: None, fresh_database_url: str, tmp_path: Path
) -> None:
    """Every authenticated request of such a login would fail: ``revflow serve`` says so and
    what an administrator runs, in one line, before serving."""
    login = f"revflow_outsider_{uuid.uuid4().hex[:8]}"
    db = Database(fresh_database_url, pool_size=1)
    async with db.session() as session:
        await session.execute(text(f'CREATE ROLE "{login}" LOGIN'))
        await session.execute(text(f'GRANT SELECT ON alembic_version TO "{login}"'))
        await session.commit()
    url = make_url(fresh_database_url).set(username=login).render_as_string(False)
    try:
        outsider = Database(url, pool_size=1)
        try:
            assert await login_outside_tenant_role(outsider) == login
        finally:
            await outsider.dispose()
        environment = {k: v for k, v in os.environ.items() if not k.startswith("REVFLOW_")}
        served = await asyncio.to_thread(
            subprocess.run,
            [*revflow_command(), "serve", "--port", str(free_port())],
            env={**environment, "REVFLOW_DATABASE_URL": url},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert served.returncode == 1, served.stderr
        assert f"not a member of {TENANT_ROLE}" in served.stderr
        assert f'GRANT {TENANT_ROLE} TO "{login}"' in served.stderr
        assert len(served.stderr.strip().splitlines()) == 1, served.stderr
        # The login that ran the migration was made a member by it.
        assert await login_outside_tenant_role(db) is None
    finally:
        async with db.session() as session:
            await session.execute(text(f'REVOKE ALL ON alembic_version FROM "{login}"'))
            await session.execute(text(f'DROP ROLE "{login}"'))
            await session.commit()
        await db.dispose()


async def test_the_migration_makes_the_tenant_role_or_says_what_an_administrator_runs(
    pg: None, fresh_database_url: str
) -> None:
    """``ensure_tenant_role`` on roles of this test's own (the real one is the server's)."""
    tag = uuid.uuid4().hex[:8]
    made, missing, bypassing = (f"revflow_{kind}_{tag}" for kind in ("made", "missing", "bypass"))
    plain = f"revflow_plain_{tag}"  # a login that may not create roles
    admin_psql(f"CREATE ROLE {bypassing} NOLOGIN BYPASSRLS; CREATE ROLE {plain} LOGIN")
    url = make_url(fresh_database_url)
    owner = Database(fresh_database_url, pool_size=1)
    other = Database(url.set(username=plain).render_as_string(False), pool_size=1)
    try:
        # The tests' login has CREATEROLE: the role is made, safe, and the login joins it.
        async with owner.session() as session:
            await session.execute(text(rls.tenant_role_statement(made)))
            await session.commit()
            role = (
                await session.execute(
                    text(
                        "SELECT rolcanlogin, rolbypassrls, rolsuper, "
                        "pg_has_role(current_user, rolname, 'MEMBER') AS joined "
                        "FROM pg_roles WHERE rolname = :name"
                    ),
                    {"name": made},
                )
            ).one()
        assert not role.rolcanlogin and not role.rolbypassrls and not role.rolsuper
        assert role.joined
        # Without CREATEROLE the migration stops and names what to run.
        async with other.session() as session:
            with pytest.raises(DBAPIError) as refused:
                await session.execute(text(rls.tenant_role_statement(missing)))
        reason = str(refused.value.orig).splitlines()[0]
        assert f"the role {missing} does not exist and {plain} may not create roles" in reason
        assert f"CREATE ROLE {missing} NOLOGIN; GRANT {missing} TO {plain};" in reason
        # A role of that name that would slip past the policies is refused.
        async with owner.session() as session:
            with pytest.raises(DBAPIError, match="superuser or has BYPASSRLS"):
                await session.execute(text(rls.tenant_role_statement(bypassing)))
    finally:
        await owner.dispose()
        await other.dispose()
        admin_psql(f"DROP ROLE IF EXISTS {made}, {missing}, {bypassing}, {plain}")
