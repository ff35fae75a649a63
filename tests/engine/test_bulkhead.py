"""A slow host costs its own account only (the bulkhead of ``http_request`` steps, both
databases).

One account's many executions call a host that answers only when the test lets it; another
account's execution, and the first account's own call to another host, go through meanwhile
— through a connection pool smaller than the slow calls — while the slow account's calls beyond
its compartment are deferred (due again later, not failed), and all of them complete once the
host answers. Real HTTP servers on loopback; every wait is bounded by a deadline (a hang fails
the test), and nothing is asserted about durations.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy import select

from revflow.app import create_app
from revflow.config import Settings
from revflow.db import Database
from revflow.engine.clock import ManualClock
from revflow.models import Execution, HistoryEntry
from revflow.worker import Worker
from tests.support.engine import Engine
from tests.support.tenants import make_tenant
from tests.support.waiting import until

DEADLINE_S = 30.0
PER_ACCOUNT_HOST = 3
DEFER = dt.timedelta(seconds=5)


class GatedServer:
    """An HTTP/1.1 server that answers each request once ``gate`` is open; it counts the
    requests in flight and the most there ever were at once."""

    def __init__(self, host: str, gate: asyncio.Event) -> None:
        self.host = host
        self.gate = gate
        self.keys: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"

    async def start(self) -> GatedServer:
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while request_line := await reader.readline():
                if not request_line.strip():
                    return
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                await reader.readexactly(int(headers.get("content-length", "0")))
                self.keys.append(headers.get("idempotency-key", ""))
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
                try:
                    await self.gate.wait()
                finally:
                    self.in_flight -= 1
                payload = json.dumps({"ok": True}).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def servers() -> AsyncIterator[tuple[GatedServer, GatedServer, asyncio.Event]]:
    """A slow host (127.0.0.1, answering when the event is set) and a fast one (127.0.0.2)."""
    gate, open_gate = asyncio.Event(), asyncio.Event()
    open_gate.set()
    slow = await GatedServer("127.0.0.1", gate).start()
    fast = await GatedServer("127.0.0.2", open_gate).start()
    try:
        yield slow, fast, gate
    finally:
        gate.set()
        await slow.stop()
        await fast.stop()


def calling(url: str) -> dict[str, Any]:
    return {
        "trigger": {"type": "manual"},
        "steps": [
            {"id": "call", "type": "http_request", "url": url, "method": "POST", "next": "after"},
            {"id": "after", "type": "add_tag", "tag": "called"},
        ],
    }


async def enroll_many(engine: Engine, url: str, count: int, name: str) -> list[uuid.UUID]:
    workflow = await engine.workflow(calling(url), name=name)
    contacts = [await engine.contact(email=f"{name}{i}@example.com") for i in range(count)]
    enrolled = await engine.enroll(workflow, *contacts)
    return [uuid.UUID(ex) for ex in enrolled["executions"]]


async def statuses(db: Database, ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    async with db.session() as session:
        rows = await session.execute(
            select(Execution.id, Execution.status).where(Execution.id.in_(ids))
        )
        return {row.id: row.status for row in rows.all()}


async def calls_done(db: Database, ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """The executions whose call is recorded as done."""
    async with db.session() as session:
        rows = await session.execute(
            select(HistoryEntry.execution_id).where(
                HistoryEntry.execution_id.in_(ids),
                HistoryEntry.step == "call",
                HistoryEntry.result == "done",
            )
        )
        return [row.execution_id for row in rows.all()]


async def test_a_slow_host_costs_only_its_own_account(fresh_database_url: str) -> None:
    settings = Settings(
        database_url=fresh_database_url,
        log_json=False,
        egress_allow="127.0.0.0/8",
        max_attempts=1,
        http_concurrency=PER_ACCOUNT_HOST + 2,  # the pool: fewer than the slow calls
        http_concurrency_per_account_host=PER_ACCOUNT_HOST,
        http_slot_wait_seconds=0,
        http_defer_seconds=DEFER.total_seconds(),
    )
    clock = ManualClock(dt.datetime.now(dt.UTC).replace(microsecond=0))
    db = Database(fresh_database_url, pool_size=5)
    worker = Worker(db, settings, clock=clock)
    app = create_app(settings, db, clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with (
        servers() as (slow, fast, gate),
        httpx.AsyncClient(transport=transport, base_url="http://revflow.test") as client,
    ):
        noisy = Engine(await make_tenant(db, client, "noisy"), worker, clock)
        quiet = Engine(await make_tenant(db, client, "quiet"), worker, clock)
        slow_calls = await enroll_many(noisy, slow.url, 10, "slow")
        own_other_host = await enroll_many(noisy, fast.url, 1, "elsewhere")
        neighbour = await enroll_many(quiet, fast.url, 1, "neighbour")
        try:
            batch = asyncio.create_task(worker.engine.run_once(wait_external=True))

            async def others_done() -> bool:
                return len(await calls_done(db, [*own_other_host, *neighbour])) == 2

            # The neighbour's call, and the noisy account's call to another host, are made
            # and recorded while the slow host holds the noisy account's compartment.
            await until(others_done, "the calls to the fast host to be recorded", limit=DEADLINE_S)
            assert not gate.is_set() and not batch.done()
            assert slow.in_flight == slow.most_in_flight == PER_ACCOUNT_HOST

            # The slow account's other calls were not made: deferred, not failed.
            async with db.session() as session:
                rows = (
                    (await session.execute(select(Execution).where(Execution.id.in_(slow_calls))))
                    .scalars()
                    .all()
                )

            deferred = [ex for ex in rows if ex.wake_at == clock.now() + DEFER]
            assert len(deferred) == len(slow_calls) - PER_ACCOUNT_HOST
            assert {ex.status for ex in rows} == {"active"}
            assert all(ex.lease_owner is None for ex in deferred)
            assert await calls_done(db, slow_calls) == []

            gate.set()
            await batch
            # The deferred calls go in turns of the compartment's size (no slot wait here).
            for _ in range(len(slow_calls) // PER_ACCOUNT_HOST + 1):
                clock.advance(DEFER)
                await worker.drain()
            done = await statuses(db, [*slow_calls, *own_other_host, *neighbour])
            assert set(done.values()) == {"completed"}, done
            # Every slow call made exactly once; never more than the compartment at once.
            assert sorted(slow.keys) == sorted(f"{ex}:call" for ex in slow_calls)
            assert slow.most_in_flight == PER_ACCOUNT_HOST
            assert worker.engine.bulkhead.in_flight() == 0
        finally:
            gate.set()
            for task in list(worker.engine._external_tasks):
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(task, DEADLINE_S)
            await worker.sender.aclose()
            await db.dispose()
