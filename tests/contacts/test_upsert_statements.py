"""An upsert by external id and an event on PostgreSQL: few round trips (each is a wait for a
core under load, BENCHMARKS.md "Many clients at once"), and the worker's lock order kept."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import DBAPIError

from revflow.contacts import repository as repo
from revflow.models import Contact, Execution
from tests.support.engine import Engine

URL = "/api/v1/contacts/by-external-id/crm-1"
WAIT = {"trigger": {"type": "manual"}, "steps": [{"id": "w", "type": "wait", "duration": "3d"}]}
PURCHASE = {
    "trigger": {"type": "event", "event": "purchased", "reenroll": "after_finish"},
    "steps": [{"id": "w", "type": "wait", "duration": "3d"}],
}


@pytest.fixture(autouse=True)
def postgresql_only(backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite keeps a statement apiece; it has no row locks to order")


@contextmanager
def statements_of(engine: Engine) -> Iterator[list[str]]:
    """The statements sent to the database meanwhile (``BEGIN`` and ``COMMIT`` aside)."""
    sent: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    target = engine.worker.db.engine.sync_engine
    event.listen(target, "before_cursor_execute", seen)
    try:
        yield sent
    finally:
        event.remove(target, "before_cursor_execute", seen)


async def upsert(engine: Engine, body: dict[str, Any], status: int) -> list[str]:
    with statements_of(engine) as sent:
        response = await engine.tenant.request("PUT", URL, json=body)
    assert response.status_code == status, response.text
    return sent


async def test_an_upsert_is_two_statements_and_a_creation_too(engine: Engine) -> None:
    """A creation: the lookup, then the insert with the trigger lookup (no savepoint). A change: the
    contact and its executions locked, then its update with the trigger lookup. No change:
    the lookup alone."""
    await engine.tenant.request("GET", "/api/v1/contacts")  # the API key, then cached
    created = await upsert(engine, {"fields": {"a": 1}}, 201)
    assert len(created) == 2, created
    assert "SAVEPOINT" not in " ".join(created)
    assert len(await upsert(engine, {"fields": {"a": 2}}, 200)) == 2
    assert len(await upsert(engine, {"fields": {"a": 2}}, 200)) == 1
    # A live execution adds its own work only: whether its workflow is paused.
    contact = (await engine.tenant.request("PUT", URL, json={})).json()["id"]
    await engine.enroll(await engine.workflow(WAIT), contact)
    assert len(await upsert(engine, {"tags": ["x"]}, 200)) == 3


async def test_an_event_reads_its_contact_with_its_executions(engine: Engine) -> None:
    """An event that starts a workflow: the contact and its live executions locked in one
    statement (a contact it does not know answers 404), the trigger lookup, the enrollment's
    check of the contact and its insert. An execution it advanced is one the event moved."""
    await engine.workflow(PURCHASE, name="purchases")
    first = {"contact_id": await engine.contact(), "name": "purchased", "data": {}}
    # The first reads the version's definition, then kept by the process (versions never change).
    assert (await engine.tenant.request("POST", "/api/v1/events", json=first)).status_code == 202
    contact = await engine.contact(external_id="crm-1")
    body = {"contact_id": contact, "name": "purchased", "data": {}}
    with statements_of(engine) as sent:
        response = await engine.tenant.request("POST", "/api/v1/events", json=body)
    assert response.status_code == 202, response.text
    assert len(response.json()["enrolled"]) == 1
    assert response.json()["executions_advanced"] == 0
    assert len(sent) == 4, [" ".join(s.split())[:60] for s in sent]
    assert "FOR UPDATE OF contacts" in sent[0] and "FROM executions" in sent[0], sent[0]
    unknown = {**body, "contact_id": str(uuid.uuid4())}
    missing = await engine.tenant.request("POST", "/api/v1/events", json=unknown)
    assert missing.status_code == 404, missing.text
    waiting = {
        "trigger": {"type": "manual"},
        "steps": [
            {"id": "w", "type": "wait", "event": "clicked", "timeout": "3d", "next": "e"},
            {"id": "e", "type": "add_tag", "tag": "clicked"},
        ],
    }
    await engine.enroll(await engine.workflow(waiting, name="waits"), contact)
    await engine.run()  # the execution reaches its wait
    clicked = {**body, "name": "clicked"}
    response = await engine.tenant.request("POST", "/api/v1/events", json=clicked)
    assert response.status_code == 202, response.text
    assert response.json()["executions_advanced"] == 1


async def test_an_upsert_locks_the_executions_before_the_contact(engine: Engine) -> None:
    """While another transaction holds the contact, the upsert's statement waits for it
    holding every live execution of the contact already: the worker's order (executions,
    then contacts), so the two never wait for each other."""
    contact = await engine.contact(external_id="crm-1")
    executions = []
    for name in ("a", "b"):
        workflow = await engine.workflow(WAIT, name=name)
        executions += (await engine.enroll(workflow, contact))["executions"]
    account = uuid.UUID(engine.tenant.account_id)
    db = engine.worker.db
    async with db.session() as holder:
        await holder.execute(
            select(Contact.id).where(Contact.id == uuid.UUID(contact)).with_for_update()
        )
        async with db.session() as upserting:
            waiting = asyncio.create_task(repo.lock_by_external_id(upserting, account, "crm-1"))
            for _ in range(200):
                if all([await _locked(engine, ex) for ex in executions]):
                    break
                await asyncio.sleep(0.02)
            else:
                pytest.fail("the upsert did not lock the executions while waiting")
            assert not waiting.done()
            await holder.rollback()
            found = await asyncio.wait_for(waiting, 10)
            assert found is not None
            assert sorted(str(ex.id) for ex in found[1]) == sorted(executions)


async def _locked(engine: Engine, execution_id: str) -> bool:
    async with engine.worker.db.session() as session:
        try:
            await session.execute(
                select(Execution.id)
                .where(Execution.id == uuid.UUID(execution_id))
                .with_for_update(nowait=True)
            )
        except DBAPIError:
            return True
        return False
