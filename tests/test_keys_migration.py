"""Revision 0013 on a database in use (both databases): every table's rows come through the
move of the keys to ``(account_id, …)`` and back unchanged, and the product works on the moved
schema — the engine steps, held reactions are released, a deleted contact takes its
executions and their history with it through the new foreign keys."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from sqlalchemy import delete, func, select, text

from revflow.db import Database
from revflow.migrate import downgrade, upgrade
from revflow.models import Base, Contact, HistoryEntry
from tests.support.engine import EngineFactory, WorkflowEngine
from tests.support.schema import read_keys
from tests.support.workflows import manual_workflow

KEYS_REVISION = "0013"
API = "/api/v1"

WAITING = manual_workflow(
    {"id": "hi", "type": "send_email", "subject": "s", "body": "b", "next": "long"},
    {"id": "long", "type": "wait", "duration": "400d", "next": "bye"},
    {"id": "bye", "type": "send_email", "subject": "bye", "body": "b"},
)
TAGGED = manual_workflow(
    {"id": "hi", "type": "send_email", "subject": "s", "body": "b", "next": "long"},
    {"id": "long", "type": "wait", "duration": "300d", "next": "bye"},
    {"id": "bye", "type": "add_tag", "tag": "done"},
)


async def populate(e: WorkflowEngine) -> dict[str, Any]:
    """Rows in every tenant table: versions with tags, executions with history and messages,
    a migration with its items, a draft, a held reaction, a webhook with deliveries, an
    idempotency record and the audit entries of it all."""
    await e.post(
        f"{API}/webhooks",
        {"url": "http://127.0.0.1:9/hook", "events": ["version.published", "workflow.paused"]},
        201,
    )
    moving = await e.workflow(WAITING, name="moving")
    contacts = [await e.contact(email=f"c{i}@example.com") for i in range(4)]
    executions = (await e.enroll(moving, *contacts[:3]))["executions"]
    await e.run()
    tagged = await e.tenant.request(
        "POST",
        f"{API}/workflows/{moving}/versions",
        json={"definition": TAGGED, "change_summary": "tagged", "base_version": 1},
    )
    assert tagged.status_code == 201, tagged.text
    labels = await e.tenant.request(
        "PUT", f"{API}/workflows/{moving}/versions/2/tags", json={"tags": ["b"]}
    )
    assert labels.status_code == 200, labels.text
    await e.post(f"{API}/workflows/{moving}/versions/2/publish")
    await e.post(
        f"{API}/workflows/{moving}/versions/2/migrate",
        {"from_version": 1, "mapping": {}, "batch_size": 1},
        202,
    )
    await e.run()
    draft = await e.tenant.request(
        "PUT",
        f"{API}/workflows/{moving}/draft",
        json={"definition": WAITING, "base_version": 2, "revision": None},
    )
    assert draft.status_code == 200, draft.text
    held = await e.workflow(WAITING, name="held")
    await e.enroll(held, contacts[3])
    await e.run()
    await e.post(f"{API}/workflows/{held}/pause")
    await e.post(f"{API}/events", {"contact_id": contacts[3], "name": "ping"}, 202)
    keyed = await e.tenant.request(
        "POST", f"{API}/contacts", json={"email": "k@example.com"}, headers={"Idempotency-Key": "k"}
    )
    assert keyed.status_code == 201, keyed.text
    return {"held": held, "executions": executions, "contacts": contacts}


# Columns added after the keys' revision, which its downgrade leaves out: (table, column).
LATER_COLUMNS = {("migrations", "picked_through")}


async def snapshot(db: Database, *, later_columns: bool = True) -> dict[str, list[str]]:
    """Every row of every table, as sorted text (without ``LATER_COLUMNS`` if not
    ``later_columns``)."""
    rows = {}
    async with db.session() as session:
        for table in Base.metadata.sorted_tables:
            columns = [
                c.name
                for c in table.c
                if later_columns or (table.name, c.name) not in LATER_COLUMNS
            ]
            listed = ", ".join(f'"{name}"' for name in columns)
            result = await session.execute(text(f'SELECT {listed} FROM "{table.name}"'))
            rows[table.name] = sorted(repr(tuple(row)) for row in result.all())
    return rows


async def test_the_keys_move_on_a_populated_database_and_back(
    make_engine: EngineFactory, fresh_database_url: str
) -> None:
    async with make_engine(fresh_database_url) as e:
        made = await populate(e)
        before = await snapshot(e.db, later_columns=False)
        tenant_tables = {t.name for t in Base.metadata.sorted_tables if "account_id" in t.c}
        empty = [table for table in sorted(tenant_tables) if not before[table]]
        assert empty == [], f"tables left empty: {empty}"
        await e.db.dispose()

        # Alembic starts event loops of its own: run it beside this test's loop.
        await asyncio.to_thread(downgrade, fresh_database_url, "0012")
        old = await read_keys(fresh_database_url)
        assert old["executions"]["primary"] == ["id"]
        assert old["migration_items"]["primary"] == ["migration_id", "execution_id"]
        assert await snapshot(e.db, later_columns=False) == before
        await e.db.dispose()

        await asyncio.to_thread(upgrade, fresh_database_url, KEYS_REVISION)
        new = await read_keys(fresh_database_url)
        assert new["executions"]["primary"] == ["account_id", "id"]
        assert new["version_tags"]["primary"] == ["account_id", "version_id", "tag"]
        assert await snapshot(e.db, later_columns=False) == before
        await asyncio.to_thread(upgrade, fresh_database_url)  # the later revisions too

        # The product on the moved schema: the held event is released on resume, the migrated
        # executions finish their wait on version 2, a contact's deletion cascades.
        await e.post(f"{API}/workflows/{made['held']}/resume")
        await e.advance(days=401)
        for execution_id in made["executions"]:
            finished = await e.execution(execution_id)
            assert (finished["status"], finished["version"]) == ("completed", 2)
            assert finished["history"][-1]["step"] == "bye"
        account = uuid.UUID(e.tenant.account_id)
        gone = uuid.UUID(made["contacts"][0])
        async with e.db.session(write=True) as session:
            await session.execute(
                delete(Contact).where(Contact.account_id == account, Contact.id == gone)
            )
            await session.commit()
        async with e.db.session() as session:
            left = await session.scalar(
                select(func.count())
                .select_from(HistoryEntry)
                .where(
                    HistoryEntry.account_id == account,
                    HistoryEntry.execution_id == uuid.UUID(made["executions"][0]),
                )
            )
        assert left == 0
