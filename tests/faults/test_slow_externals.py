"""External systems that stall (both databases): an ``http_request`` target that never answers
and an SMTP server that accepts the connection and says nothing. The engine goes on with other
workflows meanwhile — external calls run beside the engine's batches, bounded by the bulkhead
and by their timeouts — and the stalled calls keep their leases: no other round claims their
executions again, and once the calls end each is recorded exactly once.

Real servers on loopback; every wait is bounded by a deadline (a hang fails the test), and
nothing is asserted about durations.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy import func, select

from revflow.app import create_app
from revflow.config import Settings
from revflow.db import Database
from revflow.engine.clock import ManualClock
from revflow.models import Execution, HistoryEntry
from revflow.worker import Worker
from tests.engine.test_bulkhead import GatedServer, calling
from tests.support.engine import Engine
from tests.support.tenants import make_tenant
from tests.support.waiting import until

DEADLINE_S = 60.0
STALLED = 6
OTHERS = 60


class StalledSMTP:
    """Accepts SMTP connections and sends nothing (not even the greeting) until released;
    then it closes them."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.connections = 0
        self.open = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> StalledSMTP:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        try:
            await self.release.wait()
        finally:
            self.open -= 1
            writer.close()

    async def stop(self) -> None:
        self.release.set()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


def internal_work() -> dict[str, Any]:
    return {
        "trigger": {"type": "manual"},
        "steps": [
            {
                "id": "stamp",
                "type": "update_field",
                "field": "fields.stage",
                "value": "seen",
                "next": "tag",
            },
            {"id": "tag", "type": "add_tag", "tag": "seen", "next": "end"},
            {"id": "end", "type": "end"},
        ],
    }


def mailing() -> dict[str, Any]:
    return {
        "trigger": {"type": "manual"},
        "steps": [
            {"id": "mail", "type": "send_email", "subject": "Hi", "body": "b", "next": "end"},
            {"id": "end", "type": "end"},
        ],
    }


async def rows(db: Database, ids: list[uuid.UUID]) -> list[Execution]:
    async with db.session() as session:
        found = await session.execute(select(Execution).where(Execution.id.in_(ids)))
        return list(found.scalars().all())


async def entries(db: Database, ids: list[uuid.UUID], step: str) -> dict[uuid.UUID, int]:
    async with db.session() as session:
        found = await session.execute(
            select(HistoryEntry.execution_id, func.count())
            .where(HistoryEntry.execution_id.in_(ids), HistoryEntry.step == step)
            .group_by(HistoryEntry.execution_id)
        )
        return {row[0]: row[1] for row in found.all()}


@asynccontextmanager
async def deployment(
    database_url: str, smtp_port: int
) -> AsyncIterator[tuple[Engine, Worker, Database, ManualClock]]:
    settings = Settings(
        database_url=database_url,
        log_json=False,
        egress_allow="127.0.0.0/8",
        email_channel="smtp",
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        # Long enough that the test, not the timeout, ends the stalls.
        http_timeout_seconds=DEADLINE_S * 2,
        lease_seconds=int(DEADLINE_S * 4),
        max_attempts=3,
    )
    clock = ManualClock(dt.datetime.now(dt.UTC).replace(microsecond=0))
    db = Database(database_url, pool_size=5)
    worker = Worker(db, settings, clock=clock)
    app = create_app(settings, db, clock=clock)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://revflow.test"
    ) as client:
        engine = Engine(await make_tenant(db, client, "stalls"), worker, clock)
        try:
            yield engine, worker, db, clock
        finally:
            for task in list(worker.engine._external_tasks):
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(task, DEADLINE_S)
            await worker.sender.aclose()
            await db.dispose()


async def enroll(engine: Engine, definition: dict[str, Any], name: str, n: int) -> list[uuid.UUID]:
    workflow = await engine.workflow(definition, name=name)
    contacts = [await engine.contact(email=f"{name}{i}@example.com") for i in range(n)]
    enrolled = await engine.enroll(workflow, *contacts)
    return [uuid.UUID(e) for e in enrolled["executions"]]


async def test_stalled_http_and_smtp_hold_their_leases_while_other_work_goes_on(
    fresh_database_url: str,
) -> None:
    gate = asyncio.Event()
    http = await GatedServer("127.0.0.1", gate).start()
    smtp = await StalledSMTP().start()
    try:
        async with deployment(fresh_database_url, smtp.port) as (engine, worker, db, clock):
            calls = await enroll(engine, calling(http.url), "calls", STALLED)
            mails = await enroll(engine, mailing(), "mails", STALLED)
            others = await enroll(engine, internal_work(), "others", OTHERS)
            stalled = [*calls, *mails]

            async def others_finished() -> bool:
                await worker.round()
                return {ex.status for ex in await rows(db, others)} == {"completed"}

            # Every other execution runs to its end while every external call hangs.
            await until(
                others_finished, "the other workflow's executions to finish", limit=DEADLINE_S
            )
            assert http.in_flight == STALLED and smtp.open == STALLED

            # The stalled executions keep their leases: later rounds do not claim them again.
            for _ in range(5):
                await worker.round()
            held = await rows(db, stalled)
            assert all(ex.lease_owner == worker.engine.id for ex in held), held
            assert all(ex.lease_expires_at and ex.lease_expires_at > clock.now() for ex in held)
            assert (http.most_in_flight, smtp.connections) == (STALLED, STALLED)
            assert await entries(db, stalled, "call") == {}
            assert await entries(db, stalled, "mail") == {}

            # The HTTP target answers, the SMTP server hangs up: each call is recorded once —
            # done, or a failed attempt due again — and none was made twice.
            gate.set()
            smtp.release.set()

            async def recorded() -> bool:
                await worker.round()
                done = await entries(db, calls, "call")
                return len(done) == STALLED and all(
                    ex.lease_owner is None for ex in await rows(db, stalled)
                )

            await until(recorded, "the ended calls to be recorded", limit=DEADLINE_S)
            assert sorted(http.keys) == sorted(f"{ex}:call" for ex in calls)
            assert {ex.status for ex in await rows(db, calls)} == {"completed"}
            mailed = await rows(db, mails)
            assert {ex.status for ex in mailed} <= {"active", "waiting", "failed"}
            assert all(ex.error for ex in mailed), [ex.error for ex in mailed]
            # One failed attempt each in the history (the channel's own reconnects within the
            # attempt are the channel's business).
            assert await entries(db, mails, "mail") == dict.fromkeys(mails, 1)
    finally:
        gate.set()
        await http.stop()
        await smtp.stop()
