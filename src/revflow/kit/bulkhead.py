"""A bulkhead for calls to hosts that tenants choose: how many may be in flight at once.

Calls of all accounts share one worker process and one connection pool. Without compartments,
one account's calls to a slow host fill the pool and every other account's calls queue behind
them. A :class:`Bulkhead` counts the calls in flight in four compartments and admits a call
only while each of its compartments has room:

- the account and host together (one slow host holds a few of its account's slots),
- the account (one account holds a bounded part of the process),
- the host (many accounts calling one slow host hold a bounded part too),
- the process (sized like the connection pool, so that an admitted call never waits for a
  connection).

A call that finds no room waits at most a bounded time for one; the caller decides what to do
with a call that was not admitted (the engine defers its execution). The counts are this
process's own: several worker processes each have their compartments.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class BulkheadLimits:
    """Calls in flight at once, per compartment."""

    per_account_host: int
    per_account: int
    per_host: int
    total: int


class Bulkhead:
    """Counts calls in flight per (account, host), account, host and in all."""

    def __init__(self, limits: BulkheadLimits) -> None:
        self.limits = limits
        self._in_flight: Counter[tuple[Hashable, ...]] = Counter()
        self._waiters: list[asyncio.Future[None]] = []

    def _compartments(self, account: Hashable, host: str) -> list[tuple[tuple[Hashable, ...], int]]:
        host = host.lower()
        return [
            (("account-host", account, host), self.limits.per_account_host),
            (("account", account), self.limits.per_account),
            (("host", host), self.limits.per_host),
            (("total",), self.limits.total),
        ]

    def in_flight(self, account: Hashable | None = None, host: str | None = None) -> int:
        """Calls in flight: of an account, to a host, of an account to a host, or in all."""
        if account is not None and host is not None:
            return self._in_flight[("account-host", account, host.lower())]
        if account is not None:
            return self._in_flight[("account", account)]
        if host is not None:
            return self._in_flight[("host", host.lower())]
        return self._in_flight[("total",)]

    def try_enter(self, account: Hashable, host: str) -> bool:
        """Admit a call if every compartment has room (then count it); never waits."""
        compartments = self._compartments(account, host)
        if any(self._in_flight[key] >= limit for key, limit in compartments):
            return False
        for key, _limit in compartments:
            self._in_flight[key] += 1
        return True

    def leave(self, account: Hashable, host: str) -> None:
        """A call admitted by ``try_enter`` or ``enter`` has finished."""
        for key, _limit in self._compartments(account, host):
            self._in_flight[key] -= 1
            if self._in_flight[key] <= 0:
                del self._in_flight[key]
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def enter(self, account: Hashable, host: str, *, wait: float) -> bool:
        """Admit a call, waiting up to ``wait`` seconds for room; False when none came."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while not self.try_enter(account, host):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait({waiter}, timeout=remaining)
            finally:
                if not waiter.done():
                    waiter.cancel()
                    self._waiters.remove(waiter)
        return True

    @asynccontextmanager
    async def slot(self, account: Hashable, host: str, *, wait: float) -> AsyncIterator[bool]:
        """``async with bulkhead.slot(...) as admitted``: the call runs only when admitted."""
        admitted = await self.enter(account, host, wait=wait)
        try:
            yield admitted
        finally:
            if admitted:
                self.leave(account, host)
