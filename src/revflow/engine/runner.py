"""The engine's batch runner: claims due executions in batches and runs them.

One batch is one transaction: executions are claimed with ``FOR UPDATE SKIP LOCKED`` (so any
number of workers share the work on PostgreSQL) and so are their contacts (an execution whose
contact another transaction holds stays due for a later batch), run in memory, and their
history, messages, contact changes and new positions are written before the commit — after a
crash a batch is either wholly done or not done at all. A step that calls the outside world is
handed a lease, committed, performed outside any transaction, and recorded in a second
transaction fenced by that lease. While its calls are being made (retries and their backoff
included, which may take longer than one lease) the worker extends their leases every third of a
lease; a worker that dies mid-call stops extending them, loses them when they expire, and another
worker repeats the call (at least once, with the same idempotency key). Each call is
recorded as soon as it is done, so a slow call holds up no other execution; ``http_request``
calls run only with a slot of the bulkhead (``revflow.kit.bulkhead``: per account and host,
account, host and in all), and one that finds no slot within ``http_slot_wait_seconds`` is not
made: its execution is due again ``http_defer_seconds`` later (deferred, not failed).

The engine knows no feature: what a batch sets off elsewhere (triggers and goals of changed
contacts, canary judgement) is done by the hooks it is handed (``revflow.worker`` lists them),
inside the batch's transaction.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from revflow.config import Settings
from revflow.db import Database
from revflow.engine import store
from revflow.engine.channels import ExternalSender
from revflow.engine.clock import Clock, SystemClock
from revflow.engine.interpreter import (
    Channels,
    ContactState,
    Effects,
    ExecutionState,
    ExternalCall,
    advance,
    external_done,
    fail,
)
from revflow.kit.bulkhead import Bulkhead, BulkheadLimits
from revflow.logging import get_logger


class Deferred:
    """An ``http_request`` that found no slot in the bulkhead: it was not made."""


DEFERRED = Deferred()
log = get_logger("revflow.engine")
# What one external call came to: (error or None, detail for the history), or deferred.
CallResult = tuple[str | None, dict[str, Any]] | Deferred

DEFERRED_CALLS = Counter(
    "revflow_http_calls_deferred_total",
    "http_request calls deferred because their account, host or worker had no free slot",
)


@dataclass
class BatchResult:
    executions: int = 0
    steps: int = 0
    external: int = 0


@dataclass
class Outcome:
    """What one transaction of the engine wrote: the executions (with their accounts) and the
    contacts it loaded, some changed by steps. Hooks read it before the commit."""

    executions: Sequence[ExecutionState]
    accounts: dict[uuid.UUID, uuid.UUID]
    contacts: dict[uuid.UUID, ContactState] = field(default_factory=dict)

    def finished_workflows(self, *statuses: str) -> set[tuple[uuid.UUID, uuid.UUID]]:
        """(account, workflow) of the executions that finished with one of ``statuses``."""
        wanted = statuses or ("completed", "failed")
        return {
            (self.accounts[ex.id], ex.workflow_id) for ex in self.executions if ex.status in wanted
        }


Hook = Callable[[AsyncSession, Outcome, dt.datetime], Awaitable[None]]


class EngineRunner:
    """Runs batches of due executions; ``hooks`` run in each batch's transaction."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        hooks: Sequence[Hook] = (),
        clock: Clock | None = None,
        sender: ExternalSender | None = None,
        worker_id: str | None = None,
        on_recorded: Callable[[], None] | None = None,
        bulkhead: Bulkhead | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.hooks = list(hooks)
        self.clock = clock or SystemClock()
        self.sender = sender or ExternalSender(settings)
        self.bulkhead = bulkhead or Bulkhead(
            BulkheadLimits(
                per_account_host=settings.http_concurrency_per_account_host,
                per_account=settings.http_concurrency_per_account,
                per_host=settings.http_concurrency_per_host,
                total=settings.http_concurrency,
            )
        )
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.channels = Channels(email=settings.email_channel, sms=settings.sms_channel)
        self._on_recorded = on_recorded
        self._external_tasks: set[asyncio.Task[None]] = set()
        # Fair claims take the accounts in turn: the next claim starts after this one.
        self._claim_after: uuid.UUID | None = None

    async def finish(self) -> None:
        """On shutdown: let running external calls finish and record them."""
        if self._external_tasks:
            await asyncio.gather(*self._external_tasks, return_exceptions=True)
        await self.sender.aclose()

    async def _run_hooks(self, session: AsyncSession, outcome: Outcome, now: dt.datetime) -> None:
        for hook in self.hooks:
            await hook(session, outcome, now)

    async def run_once(self, *, wait_external: bool = False) -> BatchResult:
        """Claim and run one batch of due executions."""
        now = self.clock.now()
        async with self.db.session(write=True) as session:
            claim = await store.claim_due(
                session,
                now,
                self.settings.worker_batch_size,
                share=self.settings.worker_account_share,
                after=self._claim_after,
            )
            self._claim_after = claim.next_after
            claimed = claim.executions
            if not claimed:
                return BatchResult()
            accounts = {ex.id: account for account, ex in claimed}
            states = [ex for _, ex in claimed]
            definitions = await store.definitions(
                session, accounts.values(), {(ex.workflow_id, ex.version) for ex in states}
            )
            keys = {(accounts[ex.id], ex.contact_id) for ex in states}
            # A contact another transaction holds (a request changing it, or any session left
            # open) is not waited for: its executions stay due for a later batch instead of
            # holding up this one, and the worker, for as long as the lock is held.
            contacts = await store.load_contacts(session, keys, skip_locked=True)
            missing = {key for key in keys if key[1] not in contacts}
            if missing:
                held = await store.load_contacts(session, missing, lock=False)
                states = [ex for ex in states if ex.contact_id not in held]
            effects = Effects()
            for ex in states:
                definition = definitions.get((ex.workflow_id, ex.version))
                contact = contacts.get(ex.contact_id)
                if definition is None or contact is None:
                    fail(ex, now, "its version or contact no longer exists")
                    effects.record(ex, now, ex.current_step or "", "failed", error=ex.error)
                    continue
                advance(definition, ex, contact, now, effects, self.channels)
            lease_until = now + dt.timedelta(seconds=self.settings.lease_seconds)
            leases = {call.execution_id: (self.id, lease_until) for call in effects.external}
            await store.write_effects(
                session, accounts, states, contacts.values(), effects, now, leases=leases
            )
            await self._run_hooks(session, Outcome(states, accounts, contacts), now)
            await session.commit()
        if effects.external:
            task = asyncio.create_task(self._perform(effects.external, accounts))
            self._external_tasks.add(task)
            task.add_done_callback(self._external_tasks.discard)
            if wait_external:
                await task
        return BatchResult(len(states), effects.steps_run, len(effects.external))

    async def _perform(
        self, calls: list[ExternalCall], accounts: dict[uuid.UUID, uuid.UUID]
    ) -> None:
        """Make the calls at once and record each as soon as it is done (those done together
        in one transaction), so that a slow call holds up no other call's execution."""
        tasks = {
            asyncio.create_task(self._call(call, accounts[call.execution_id])): call
            for call in calls
        }
        pending = set(tasks)
        unrecorded = {call.execution_id: accounts[call.execution_id] for call in calls}
        keeping = asyncio.create_task(self._keep_leases(unrecorded))
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                results = [(tasks[task], task.result()) for task in done]
                await self._record(results, accounts)
                for call, _ in results:
                    unrecorded.pop(call.execution_id, None)
        finally:
            # Recording failed (the database): the leases expire and the calls are made again.
            keeping.cancel()
            for task in pending:
                task.cancel()

    async def _keep_leases(self, unrecorded: dict[uuid.UUID, uuid.UUID]) -> None:
        """Every third of a lease, extend the leases of the executions (id → account) whose
        calls are not recorded yet: a call retried with backoff can take longer than a lease,
        and no other worker may make it again while this one is still at it. What the database
        refuses meanwhile leaves those leases to expire (the calls are then made again)."""
        lease = dt.timedelta(seconds=self.settings.lease_seconds)
        while unrecorded:
            await asyncio.sleep(self.settings.lease_seconds / 3)
            keys = [(account, execution) for execution, account in unrecorded.items()]
            try:
                async with self.db.session(write=True) as session:
                    await store.extend_leases(
                        session, keys, lease_owner=self.id, until=self.clock.now() + lease
                    )
                    await session.commit()
            except Exception as exc:  # the database away: try again at the next round
                log.warning("leases_not_extended", executions=len(keys), error=str(exc))

    async def _call(self, call: ExternalCall, account: uuid.UUID) -> CallResult:
        """Perform one call; an ``http_request`` only with a slot of the bulkhead."""
        if call.kind != "http_request":
            return await self.sender.perform(call)
        host = urlsplit(str(call.request["url"])).hostname or ""
        wait = self.settings.http_slot_wait_seconds
        async with self.bulkhead.slot(account, host, wait=wait) as admitted:
            if not admitted:
                DEFERRED_CALLS.inc()
                return DEFERRED
            return await self.sender.perform(call)

    async def _record(
        self, results: list[tuple[ExternalCall, CallResult]], accounts: dict[uuid.UUID, uuid.UUID]
    ) -> None:
        now = self.clock.now()
        async with self.db.session(write=True) as session:
            locked = await store.lock_executions(
                session,
                [(accounts[call.execution_id], call.execution_id) for call, _ in results],
                lease_owner=self.id,
            )
            states: dict[uuid.UUID, ExecutionState] = {ex.id: ex for _, ex in locked}
            definitions = await store.definitions(
                session,
                {account for account, _ in locked},
                {(ex.workflow_id, ex.version) for ex in states.values()},
            )
            effects = Effects()
            written: list[ExecutionState] = []
            for call, result in results:
                ex = states.get(call.execution_id)
                if ex is None or ex.current_step != call.step_id:
                    continue  # the lease was lost or a goal moved the execution meanwhile
                written.append(ex)
                if isinstance(result, Deferred):
                    # Not made: due again a little later, without a history entry; its lease
                    # is cleared like every written execution's.
                    ex.wake_at = now + dt.timedelta(seconds=self.settings.http_defer_seconds)
                    continue
                error, detail = result
                definition = definitions[(ex.workflow_id, ex.version)]
                if error is None and call.kind in ("email", "sms"):
                    effects.messages.append({**call.request, "channel": self._channel(call)})
                external_done(definition, ex, call, now, effects, error=error, detail=detail)
            await store.write_effects(session, accounts, written, [], effects, now)
            await self._run_hooks(session, Outcome(written, accounts), now)
            await session.commit()
        if self._on_recorded is not None:
            self._on_recorded()

    def _channel(self, call: ExternalCall) -> str:
        return self.channels.email if call.kind == "email" else self.channels.sms
