"""Admission (kit.admission): at most so many requests run at once, the others wait their turn
in arrival order, and one that waits too long is answered 503 ``server_busy``; authoring
requests hold a part of the turns at most and are handed one only when nothing else waits, so
that ingest does not queue behind them."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from revflow import problems
from revflow.app import admitted_in_turn, authoring, create_app
from revflow.config import Settings
from revflow.db import Database
from revflow.errors import ServerBusy
from revflow.kit.admission import Admission, Turns
from tests.support.waiting import until


async def test_turns_go_in_arrival_order_and_a_timed_out_wait_loses_nothing() -> None:
    turns = Turns(2)
    assert await turns.enter(1) and await turns.enter(1)
    order: list[str] = []

    async def wait(name: str, seconds: float) -> bool:
        taken = await turns.enter(seconds)
        order.append(name if taken else f"{name} gave up")
        return taken

    first = asyncio.create_task(wait("first", 5))
    gives_up = asyncio.create_task(wait("impatient", 0.05))
    second = asyncio.create_task(wait("second", 5))
    await asyncio.sleep(0)
    assert turns.waiting == 3
    assert not await gives_up
    turns.leave()
    assert await first
    turns.leave()
    assert await second
    assert order == ["impatient gave up", "first", "second"]
    assert (turns.running, turns.waiting) == (2, 0)
    turns.leave()
    turns.leave()
    assert turns.running == 0


async def test_turns_go_to_those_ahead_before_earlier_ones_behind() -> None:
    turns = Turns(1)
    assert await turns.enter(1)
    order: list[str] = []

    async def wait(name: str, ahead: bool) -> None:
        assert await turns.enter(5, ahead=ahead)
        order.append(name)

    behind = [asyncio.create_task(wait(f"behind {i}", False)) for i in range(2)]
    await asyncio.sleep(0)
    ahead = [asyncio.create_task(wait(f"ahead {i}", True)) for i in range(2)]
    await asyncio.sleep(0)
    assert turns.waiting == 4
    for _ in range(4):
        turns.leave()
        await asyncio.sleep(0)
    await asyncio.gather(*behind, *ahead)
    assert order == ["ahead 0", "ahead 1", "behind 0", "behind 1"]
    assert (turns.running, turns.waiting) == (1, 0)


async def test_a_waiter_that_goes_away_takes_no_turn_with_it() -> None:
    turns = Turns(1)
    assert await turns.enter(1)
    gone = asyncio.create_task(turns.enter(5))
    after = asyncio.create_task(turns.enter(5))
    await asyncio.sleep(0)
    gone.cancel()  # the client went away while waiting
    with pytest.raises(asyncio.CancelledError):
        await gone
    turns.leave()
    assert await after
    assert (turns.running, turns.waiting) == (1, 0)


async def test_a_turn_handed_over_as_its_waiter_is_cancelled_is_used_or_passed_on() -> None:
    turns = Turns(1)
    assert await turns.enter(1)
    raced = asyncio.create_task(turns.enter(5))
    after = asyncio.create_task(turns.enter(5))
    await asyncio.sleep(0)
    turns.leave()  # handed to ``raced`` …
    raced.cancel()  # … cancelled before it runs again: it keeps the turn or passes it on
    try:
        kept = await raced
    except asyncio.CancelledError:
        kept = False
    if kept:
        turns.leave()
    assert await after
    assert (turns.running, turns.waiting) == (1, 0)


def gated_app(
    release: asyncio.Event,
    started: list[str],
    limit: int = 1,
    authoring_limit: int | None = None,
    wait_seconds: float = 0.2,
) -> Admission:
    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        started.append(scope["path"])
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    refuse = problems.problem_response(ServerBusy("busy"), headers={"Retry-After": "1"})
    return Admission(
        inner,
        limit=limit,
        wait_seconds=wait_seconds,
        gated=admitted_in_turn,
        refuse=refuse,
        authoring=authoring,
        authoring_limit=authoring_limit,
    )


async def test_a_request_that_waits_too_long_is_answered_503_server_busy() -> None:
    release, started = asyncio.Event(), []
    transport = httpx.ASGITransport(app=gated_app(release, started))
    async with httpx.AsyncClient(transport=transport, base_url="http://revflow.test") as client:
        running = asyncio.create_task(client.get("/api/v1/workflows"))
        await until(lambda: asyncio.sleep(0, bool(started)), "the first request to run")
        refused = await client.get("/api/v1/contacts")
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "1"
        assert refused.json()["code"] == "server_busy"
        probe = asyncio.create_task(client.get("/healthz"))  # not gated: runs beside it
        await until(lambda: asyncio.sleep(0, len(started) == 2), "the probe to run")
        release.set()
        assert (await running).status_code == 200 and (await probe).status_code == 200
    assert started == ["/api/v1/workflows", "/healthz"]


@pytest.mark.parametrize(
    ("path", "gated"),
    [
        ("/api/v1/workflows", True),
        ("/ui/workflows", True),
        ("/ui/static/app.css", False),
        ("/healthz", False),
        ("/readyz", False),
        ("/metrics", False),
        ("/docs", False),
    ],
)
def test_what_takes_a_turn(path: str, gated: bool) -> None:
    assert admitted_in_turn(path) is gated


async def test_ingest_runs_beside_authoring_that_waits_for_its_lane() -> None:
    release, started = asyncio.Event(), []
    admission = gated_app(release, started, limit=2, authoring_limit=1, wait_seconds=5)
    transport = httpx.ASGITransport(app=admission)
    async with httpx.AsyncClient(transport=transport, base_url="http://revflow.test") as client:
        first = asyncio.create_task(client.post("/api/v1/workflows/w1/versions"))
        second = upsert = first
        try:
            await until(lambda: asyncio.sleep(0, len(started) == 1), "the first to run", limit=5)
            second = asyncio.create_task(client.get("/api/v1/workflows/w2/versions/compare"))
            await asyncio.sleep(0.05)
            # In one queue the compare would have taken the last turn, and the upsert waited
            # for the version create to finish.
            upsert = asyncio.create_task(client.put("/api/v1/contacts/by-external-id/x"))
            await until(lambda: asyncio.sleep(0, len(started) == 2), "a second to run", limit=5)
            assert started[1] == "/api/v1/contacts/by-external-id/x"
            assert admission.authoring_turns.waiting == 1
        finally:
            release.set()
        for answer in await asyncio.gather(first, second, upsert):
            assert answer.status_code == 200
    assert started[2] == "/api/v1/workflows/w2/versions/compare"
    assert (admission.turns.running, admission.authoring_turns.running) == (0, 0)


async def test_ingest_that_comes_later_runs_before_authoring_waiting_for_a_turn() -> None:
    release, started = asyncio.Event(), []
    admission = gated_app(release, started, limit=1, authoring_limit=1, wait_seconds=5)
    transport = httpx.ASGITransport(app=admission)
    async with httpx.AsyncClient(transport=transport, base_url="http://revflow.test") as client:
        event = asyncio.create_task(client.post("/api/v1/events"))
        create = upsert = event
        try:
            await until(lambda: asyncio.sleep(0, len(started) == 1), "the event to run", limit=5)
            create = asyncio.create_task(client.post("/api/v1/workflows/w1/versions"))
            await until(
                lambda: asyncio.sleep(0, admission.turns.waiting == 1),
                "the create to wait",
                limit=5,
            )
            upsert = asyncio.create_task(client.put("/api/v1/contacts/by-external-id/x"))
            await until(
                lambda: asyncio.sleep(0, admission.turns.waiting == 2),
                "the upsert to wait",
                limit=5,
            )
        finally:
            release.set()
        for answer in await asyncio.gather(event, create, upsert):
            assert answer.status_code == 200
    # In arrival order the version create, which came first, would have run second.
    assert started == [
        "/api/v1/events",
        "/api/v1/contacts/by-external-id/x",
        "/api/v1/workflows/w1/versions",
    ]
    assert (admission.turns.running, admission.authoring_turns.running) == (0, 0)


async def test_authoring_that_waits_too_long_for_its_lane_is_answered_503_holding_nothing() -> None:
    release, started = asyncio.Event(), []
    admission = gated_app(release, started, limit=3, authoring_limit=1, wait_seconds=0.1)
    transport = httpx.ASGITransport(app=admission)
    async with httpx.AsyncClient(transport=transport, base_url="http://revflow.test") as client:
        running = asyncio.create_task(client.post("/api/v1/workflows"))
        await until(lambda: asyncio.sleep(0, len(started) == 1), "the first to run")
        refused = await client.put("/api/v1/workflows/w1/draft")  # the lane is taken
        assert refused.status_code == 503 and refused.json()["code"] == "server_busy"
        assert (admission.turns.running, admission.authoring_turns.running) == (1, 1)
        release.set()
        assert (await running).status_code == 200
    assert (admission.turns.running, admission.authoring_turns.running) == (0, 0)


async def test_authoring_cancelled_while_waiting_for_a_turn_gives_its_lane_back() -> None:
    release, started = asyncio.Event(), []
    admission = gated_app(release, started, limit=1, authoring_limit=1, wait_seconds=5)
    transport = httpx.ASGITransport(app=admission)
    async with httpx.AsyncClient(transport=transport, base_url="http://revflow.test") as client:
        ingest = asyncio.create_task(client.post("/api/v1/events"))
        await until(lambda: asyncio.sleep(0, len(started) == 1), "the event to run")
        waiting = asyncio.create_task(client.post("/api/v1/workflows/w1/versions"))
        await until(lambda: asyncio.sleep(0, admission.turns.waiting == 1), "the version to wait")
        assert admission.authoring_turns.running == 1  # its lane's turn, held while it waits
        waiting.cancel()  # the client went away
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert (admission.authoring_turns.running, admission.turns.waiting) == (0, 0)
        release.set()
        assert (await ingest).status_code == 200
    assert (admission.turns.running, admission.authoring_turns.running) == (0, 0)


@pytest.mark.parametrize(
    ("method", "path", "lane"),
    [
        ("POST", "/api/v1/workflows", True),
        ("POST", "/api/v1/workflows/w1/versions", True),
        ("GET", "/api/v1/workflows/w1/versions/compare", True),
        ("POST", "/api/v1/workflows/w1/versions/3/publish", True),
        ("PUT", "/api/v1/workflows/w1/draft", True),
        ("POST", "/api/v1/migrations/m1/pause", True),
        ("GET", "/api/v1/workflows", False),
        ("GET", "/api/v1/workflows/w1", False),
        ("GET", "/api/v1/workflows/w1/versions", False),
        ("POST", "/api/v1/workflows/w1/enrollments", False),
        ("GET", "/api/v1/workflows/w1/executions", False),
        ("PUT", "/api/v1/contacts/by-external-id/x", False),
        ("POST", "/api/v1/events", False),
        ("POST", "/api/v1/executions/e1/cancel", False),
        ("POST", "/ui/workflows", False),
    ],
)
def test_what_takes_the_authoring_lane(method: str, path: str, lane: bool) -> None:
    assert authoring(method, path) is lane


async def test_reads_of_workflows_run_beside_authoring_that_waits_for_its_lane() -> None:
    release, started = asyncio.Event(), []
    admission = gated_app(release, started, limit=3, authoring_limit=1, wait_seconds=5)
    transport = httpx.ASGITransport(app=admission)
    async with httpx.AsyncClient(transport=transport, base_url="http://revflow.test") as client:
        writes = [client.post("/api/v1/workflows/w1/versions") for _ in range(3)]
        creating = asyncio.gather(*writes)
        read = asyncio.create_task(client.get("/api/v1/workflows/w1"))
        try:
            # One create runs and two wait for the authoring lane; the read does not wait.
            await until(lambda: asyncio.sleep(0, len(started) == 2), "two to run", limit=5)
            assert sorted(started) == ["/api/v1/workflows/w1", "/api/v1/workflows/w1/versions"]
            assert admission.authoring_turns.waiting == 2
        finally:
            release.set()
        assert all(answer.status_code == 200 for answer in await creating)
        assert (await read).status_code == 200


def admission_of(app: Any) -> dict[str, Any]:
    found = [m for m in app.user_middleware if m.cls is Admission]
    assert len(found) == 1
    return dict(found[0].kwargs)


async def test_the_api_takes_turns_as_configured(database_url: str) -> None:
    db = Database(database_url)
    try:
        default = admission_of(create_app(Settings(database_url=database_url, db_pool_size=7), db))
        assert (default["limit"], default["wait_seconds"]) == (7, 10.0)
        assert default["authoring_limit"] == 1
        assert default["authoring"] is authoring
        configured = Settings(
            database_url=database_url,
            api_concurrent_requests=12,
            api_queue_seconds=2.5,
        )
        chosen = admission_of(create_app(configured, db))
        assert (chosen["limit"], chosen["wait_seconds"], chosen["authoring_limit"]) == (12, 2.5, 1)
        wider = Settings(
            database_url=database_url, api_concurrent_requests=12, api_authoring_requests=3
        )
        assert admission_of(create_app(wider, db))["authoring_limit"] == 3
        lane = Settings(
            database_url=database_url, api_concurrent_requests=4, api_authoring_requests=9
        )
        assert admission_of(create_app(lane, db))["authoring_limit"] == 4  # never more than all
    finally:
        await db.dispose()
