"""The worker: claims due executions in batches and runs them.

One batch is one transaction: executions are claimed with ``FOR UPDATE SKIP LOCKED`` (so any
number of workers share the work on PostgreSQL), run in memory, and their history, messages,
contact changes and new positions are written before the commit — after a crash a batch is
either wholly done or not done at all. A step that calls the outside world is handed a lease,
committed, performed outside any transaction, and recorded in a second transaction fenced by
that lease; a worker that dies mid-call loses its lease when it expires and another worker
repeats the call (at least once, with the same idempotency key).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import socket
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError
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
from revflow.engine.reactions import react
from revflow.executions.enrollment import ContactChange
from revflow.logging import get_logger
from revflow.migrations.runner import run_next as run_migration_batch
from revflow.workflows.lifecycle import Archivable, archive, check_canaries, claim_archive_run

log = get_logger("revflow.worker")


@dataclass
class BatchResult:
    executions: int = 0
    steps: int = 0
    external: int = 0


class Worker:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        clock: Clock | None = None,
        sender: ExternalSender | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock or SystemClock()
        self.sender = sender or ExternalSender(settings)
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.channels = Channels(email=settings.email_channel, sms=settings.sms_channel)
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._external_tasks: set[asyncio.Task[None]] = set()
        self._next_schedule_check = 0.0

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def wake(self) -> None:
        """Look for due work now (the API calls this after enrolling, in one process)."""
        self._wake.set()

    async def run(self) -> None:
        """Run batches until stopped; between them sleep until work is due (or woken)."""
        log.info("worker_started", worker=self.id)
        try:
            while not self._stop.is_set():
                try:
                    result = await self.run_once()
                    moved = await run_migration_batch(self.db, self.clock.now())
                    await self.run_scheduled()
                except DBAPIError as exc:
                    # A deadlock or serialization failure aborts one batch; it is retried.
                    log.warning("batch_aborted", worker=self.id, error=str(exc.orig))
                    result, moved = BatchResult(), 0
                if result.executions == 0 and moved == 0:
                    await self._idle()
        finally:
            await self._finish()
            log.info("worker_stopped", worker=self.id)

    async def _idle(self) -> None:
        timeout = self.settings.worker_poll_seconds
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def _finish(self) -> None:
        """On shutdown: let running external calls finish and record them."""
        if self._external_tasks:
            await asyncio.gather(*self._external_tasks, return_exceptions=True)
        await self.sender.aclose()

    async def drain(self, max_batches: int = 10_000) -> BatchResult:
        """Run batches (and migration batches) until nothing is due, waiting for external
        calls in between (tests)."""
        total = BatchResult()
        for _ in range(max_batches):
            result = await self.run_once(wait_external=True)
            moved = await run_migration_batch(self.db, self.clock.now())
            total.executions += result.executions
            total.steps += result.steps
            total.external += result.external
            if result.executions == 0 and moved == 0:
                break
        return total

    async def run_scheduled(self, *, force: bool = False) -> list[Archivable] | None:
        """Archival, once per ``archive_interval_hours`` across every worker (checked at most
        once a minute per worker). Answers what was archived, or None when not this run."""
        moment = time.monotonic()
        if not force and moment < self._next_schedule_check:
            return None
        self._next_schedule_check = moment + 60
        now = self.clock.now()
        async with self.db.session(write=True) as session:
            if not await claim_archive_run(session, self.settings, now, self.id):
                return None
            archived = await archive(session, self.settings, now)
            await session.commit()
        if archived:
            log.info("archived", worker=self.id, versions=len(archived))
        return archived

    async def run_once(self, *, wait_external: bool = False) -> BatchResult:
        """Claim and run one batch of due executions."""
        now = self.clock.now()
        async with self.db.session(write=True) as session:
            claimed = await store.claim_due(session, now, self.settings.worker_batch_size)
            if not claimed:
                return BatchResult()
            accounts = {ex.id: account for account, ex in claimed}
            states = [ex for _, ex in claimed]
            definitions = await store.definitions(
                session, {(ex.workflow_id, ex.version) for ex in states}
            )
            contacts = await store.load_contacts(session, {ex.contact_id for ex in states})
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
            await self._react(session, contacts, now)
            # A canary is judged whenever its executions finish (SPEC §6b).
            await check_canaries(
                session,
                {ex.workflow_id for ex in states if ex.status in ("completed", "failed")},
                self.settings,
            )
            await session.commit()
        if effects.external:
            task = asyncio.create_task(self._perform(effects.external, accounts))
            self._external_tasks.add(task)
            task.add_done_callback(self._external_tasks.discard)
            if wait_external:
                await task
        return BatchResult(len(states), effects.steps_run, len(effects.external))

    async def _react(
        self,
        session: AsyncSession,
        contacts: dict[uuid.UUID, ContactState],
        now: dt.datetime,
    ) -> None:
        """Contacts changed by steps fire triggers and goals of their other executions."""
        changed = [
            c for c in contacts.values() if c.added_tags or c.removed_tags or c.changed_fields
        ]
        if not changed:
            return
        account_of = await store.contact_accounts(session, [c.id for c in changed])
        by_account: dict[uuid.UUID, list[ContactChange]] = defaultdict(list)
        for c in changed:
            by_account[account_of[c.id]].append(
                ContactChange(
                    c.id,
                    added_tags=list(c.added_tags),
                    changed_fields=list(c.changed_fields),
                    removed_tags=list(c.removed_tags),
                )
            )
        for account_id, changes in by_account.items():
            # Other executions held by other workers are skipped, not waited for (that could
            # deadlock); they check their goals themselves before their next step. This
            # batch's own executions (already written, and locked by this transaction) are
            # included: one that began a wait before another changed the contact must see it.
            await react(
                session,
                account_id,
                changes,
                now,
                contacts=contacts,
                skip_locked=True,
            )

    async def _perform(
        self, calls: list[ExternalCall], accounts: dict[uuid.UUID, uuid.UUID]
    ) -> None:
        results = await asyncio.gather(*(self.sender.perform(call) for call in calls))
        now = self.clock.now()
        async with self.db.session(write=True) as session:
            locked = await store.lock_executions(
                session, [call.execution_id for call in calls], lease_owner=self.id
            )
            states: dict[uuid.UUID, ExecutionState] = {ex.id: ex for _, ex in locked}
            definitions = await store.definitions(
                session, {(ex.workflow_id, ex.version) for ex in states.values()}
            )
            effects = Effects()
            written: list[ExecutionState] = []
            for call, (error, detail) in zip(calls, results, strict=True):
                ex = states.get(call.execution_id)
                if ex is None or ex.current_step != call.step_id:
                    continue  # the lease was lost or a goal moved the execution meanwhile
                definition = definitions[(ex.workflow_id, ex.version)]
                if error is None and call.kind in ("email", "sms"):
                    effects.messages.append({**call.request, "channel": self._channel(call)})
                external_done(definition, ex, call, now, effects, error=error, detail=detail)
                written.append(ex)
            await store.write_effects(session, accounts, written, [], effects, now)
            await check_canaries(
                session, {ex.workflow_id for ex in written if ex.status == "failed"}, self.settings
            )
            await session.commit()
        self.wake()

    def _channel(self, call: ExternalCall) -> str:
        return self.channels.email if call.kind == "email" else self.channels.sms
