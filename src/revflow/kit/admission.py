"""Admission: a process works on at most so many requests at once; the rest wait their turn.

Under overload an API process that starts every request at once shares its event loop and its
database connections among all of them: a transaction holding a row lock (an account's audit
chain, a workflow being changed) waits behind dozens of other requests for each of its next
statements, every request behind it waits longer, and throughput falls as clients are added.
Admitted requests run at the speed of few; the others wait, in arrival order, holding nothing
— and one that waits longer than its bound is answered 503 ``server_busy`` with
``Retry-After`` instead of an answer nobody waits for any more.

Authoring requests (new versions of large definitions, their comparisons, drafts) cost many
times what a contact upsert or an event costs. In one arrival-order queue, a burst of them holds
every turn and the cheap ingest calls queue behind seconds of authoring work; so an authoring
request first takes a turn of its own lane, which holds a part of the process's turns at most
(one unless set), and only then waits for one of the process's turns — behind every other
request waiting for one, whenever it came. Authoring then waits for authoring and for ingest,
and ingest never has more than that part of the turns taken from it nor waits behind it.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable

from prometheus_client import Gauge
from starlette.types import ASGIApp, Receive, Scope, Send

WAITING = Gauge("revflow_http_requests_waiting", "Requests waiting for their turn to run")
RUNNING = Gauge("revflow_http_requests_running", "Requests running")


class Turns:
    """At most ``limit`` holders at once; the others wait in arrival order, except that those
    that enter ``ahead`` are handed a turn before any that do not."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0
        self._ahead: collections.deque[asyncio.Future[None]] = collections.deque()
        self._behind: collections.deque[asyncio.Future[None]] = collections.deque()

    async def enter(self, wait_seconds: float, *, ahead: bool = False) -> bool:
        """Take a turn, waiting up to ``wait_seconds``; answers whether one was taken."""
        if self.running < self.limit and not self._ahead and not self._behind:
            self.running += 1
            return True
        turn = asyncio.get_running_loop().create_future()
        (self._ahead if ahead else self._behind).append(turn)
        try:
            await asyncio.wait_for(asyncio.shield(turn), wait_seconds)
        except TimeoutError:
            if turn.done() and not turn.cancelled():
                return True  # handed over just as the wait ended: the turn is ours
            turn.cancel()
            return False
        except BaseException:
            if turn.done() and not turn.cancelled():
                self.leave()  # handed over, but this request is gone: pass the turn on
            else:
                turn.cancel()
            raise
        return True

    def leave(self) -> None:
        """Give the turn to the first request still waiting (those ahead first), or free it."""
        for waiting in (self._ahead, self._behind):
            while waiting:
                turn = waiting.popleft()
                if not turn.done():
                    turn.set_result(None)
                    return
        self.running -= 1

    @property
    def waiting(self) -> int:
        return sum(1 for q in (self._ahead, self._behind) for turn in q if not turn.done())


class Admission:
    """Pure ASGI: requests whose path ``gated`` accepts take a turn of ``turns`` first; one that
    gets none within ``wait_seconds`` is answered by ``refuse`` (503 ``server_busy``). Those
    whose method and path ``authoring`` accepts take a turn of ``authoring_turns``
    (``authoring_limit``) before that, within the same ``wait_seconds``, and are handed a turn
    of ``turns`` only when no other request waits for one."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int,
        wait_seconds: float,
        gated: Callable[[str], bool],
        refuse: ASGIApp,
        authoring: Callable[[str, str], bool] | None = None,
        authoring_limit: int | None = None,
    ) -> None:
        self.app = app
        self.turns = Turns(limit)
        self.authoring_turns = Turns(min(limit, authoring_limit or limit))
        self.wait_seconds = wait_seconds
        self.gated = gated
        self.authoring = authoring
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.gated(scope["path"]):
            await self.app(scope, receive, send)
            return
        lanes = [(self.turns, True)]
        if self.authoring is not None and self.authoring(scope["method"], scope["path"]):
            lanes = [(self.authoring_turns, False), (self.turns, False)]
        WAITING.inc()
        try:
            held = await self._enter(lanes)
        finally:
            WAITING.dec()
        if held is None:
            await self.refuse(scope, receive, send)
            return
        RUNNING.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            RUNNING.dec()
            for turns in reversed(held):
                turns.leave()

    async def _enter(self, lanes: list[tuple[Turns, bool]]) -> list[Turns] | None:
        """A turn of each of ``lanes`` in order (entering ahead or not), all within
        ``wait_seconds``; None (holding nothing) when one is not had in time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_seconds
        held: list[Turns] = []
        try:
            for turns, ahead in lanes:
                if not await turns.enter(max(0.0, deadline - loop.time()), ahead=ahead):
                    break
                held.append(turns)
        except BaseException:
            for turns in reversed(held):
                turns.leave()
            raise
        if len(held) == len(lanes):
            return held
        for turns in reversed(held):
            turns.leave()
        return None
