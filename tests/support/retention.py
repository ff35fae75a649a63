"""Aged data for the pruning tests, written straight to the tables (both databases): an
account with executions that finished long ago and live ones that started as long ago, each
with its history entries and one message."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, func, insert, select

from revflow.audit.service import Actor
from revflow.auth import service as auth_service
from revflow.db import Database
from revflow.models import Contact, Execution, HistoryEntry, Message, Workflow

CHUNK = 5000


@dataclass
class Aged:
    account_id: uuid.UUID
    old: set[uuid.UUID]  # finished ``age`` ago
    live: set[uuid.UUID]  # waiting since ``age`` ago
    history: int  # entries per execution


async def _insert(db: Database, model: Any, rows: list[dict[str, Any]]) -> None:
    table = cast(Table, model.__table__)
    for start in range(0, len(rows), CHUNK):
        async with db.session(write=True) as session:
            await session.execute(insert(table), rows[start : start + CHUNK])
            await session.commit()


async def seed_aged(db: Database, *, old: int, live: int, history: int, age: dt.timedelta) -> Aged:
    now = dt.datetime.now(dt.UTC)
    then = now - age
    async with db.session(write=True) as session:
        account, _key = await auth_service.create_account(session, "aged", Actor(user="t"), now)
        workflow = Workflow(account_id=account.id, name="aged", current_version=1, version_count=1)
        session.add(workflow)
        await session.commit()
    a = account.id
    ids = [uuid.uuid4() for _ in range(old + live)]
    await _insert(db, Contact, [{"id": i, "account_id": a, "fields": {}, "tags": []} for i in ids])
    executions = [
        {
            "id": i,
            "account_id": a,
            "workflow_id": workflow.id,
            "version": 1,
            "contact_id": i,
            "status": "completed" if n < old else "waiting",
            "current_step": None if n < old else "long",
            "started_at": then,
            "finished_at": then if n < old else None,
            "wake_at": None if n < old else now + dt.timedelta(days=400),
            "fired_goals": [],
        }
        for n, i in enumerate(ids)
    ]
    await _insert(db, Execution, executions)
    entries = [
        {
            "account_id": a,
            "execution_id": i,
            "at": then,
            "step": f"s{k}",
            "result": "ok",
            "detail": {},
        }
        for i in ids
        for k in range(history)
    ]
    await _insert(db, HistoryEntry, entries)
    messages = [
        {
            "id": uuid.uuid4(),
            "account_id": a,
            "channel": "outbox",
            "kind": "email",
            "to": "x@example.com",
            "subject": "s",
            "body": "b",
            "contact_id": i,
            "execution_id": i,
            "step": "s0",
            "created_at": then,
        }
        for i in ids
    ]
    await _insert(db, Message, messages)
    return Aged(a, set(ids[:old]), set(ids[old:]), history)


async def history_state(db: Database, aged: Aged) -> dict[uuid.UUID, tuple[bool, int]]:
    """Each execution of ``aged``: (history marked pruned, entries left)."""
    entries = (
        select(HistoryEntry.execution_id, func.count().label("n"))
        .where(HistoryEntry.account_id == aged.account_id)
        .group_by(HistoryEntry.execution_id)
        .subquery()
    )
    async with db.session() as session:
        rows = await session.execute(
            select(Execution.id, Execution.history_pruned_at.is_not(None), entries.c.n)
            .outerjoin(entries, entries.c.execution_id == Execution.id)
            .where(Execution.account_id == aged.account_id)
        )
        return {row[0]: (bool(row[1]), int(row[2] or 0)) for row in rows.all()}


async def messages_left(db: Database, aged: Aged) -> set[uuid.UUID]:
    async with db.session() as session:
        found = await session.scalars(
            select(Message.execution_id).where(Message.account_id == aged.account_id)
        )
        return {i for i in found if i is not None}


def check_consistent(state: dict[uuid.UUID, tuple[bool, int]], aged: Aged) -> int:
    """No execution is half-pruned and no live one is touched; answers how many are pruned."""
    for execution_id, (pruned, left) in state.items():
        if execution_id in aged.live:
            assert (pruned, left) == (False, aged.history), execution_id
        else:
            assert (pruned, left) in ((True, 0), (False, aged.history)), execution_id
    return sum(1 for pruned, _ in state.values() if pruned)
