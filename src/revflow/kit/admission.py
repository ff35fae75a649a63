"""Admission: a process works on at most so many requests at once; the rest wait their turn.

Under overload an API process that starts every request at once shares its event loop and its
database connections among all of them: a transaction holding a row lock (an account's audit
chain, a workflow being changed) waits behind dozens of other requests for each of its next
statements, every request behind it waits longer, and throughput falls as clients are added.
Admitted requests run at the speed of few; the others wait, in arrival order, holding nothing
— and one that waits longer than its bound is answered 503 ``server_busy`` with
``Retry-After`` instead of an answer nobody waits for any more.
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
    """At most ``limit`` holders at once; the others wait in arrival order."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    async def enter(self, wait_seconds: float) -> bool:
        """Take a turn, waiting up to ``wait_seconds``; answers whether one was taken."""
        if self.running < self.limit and not self._waiting:
            self.running += 1
            return True
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
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
        """Give the turn to the first request still waiting, or free it."""
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self.running -= 1

    @property
    def waiting(self) -> int:
        return sum(1 for turn in self._waiting if not turn.done())


class Admission:
    """Pure ASGI: requests whose path ``gated`` accepts take a turn of ``turns`` first; one that
    gets none within ``wait_seconds`` is answered by ``refuse`` (503 ``server_busy``)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int,
        wait_seconds: float,
        gated: Callable[[str], bool],
        refuse: ASGIApp,
    ) -> None:
        self.app = app
        self.turns = Turns(limit)
        self.wait_seconds = wait_seconds
        self.gated = gated
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.gated(scope["path"]):
            await self.app(scope, receive, send)
            return
        WAITING.inc()
        try:
            admitted = await self.turns.enter(self.wait_seconds)
        finally:
            WAITING.dec()
        if not admitted:
            await self.refuse(scope, receive, send)
            return
        RUNNING.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            RUNNING.dec()
            self.turns.leave()
