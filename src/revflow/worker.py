"""The worker: one loop that runs every duty of revflow's background work.

This is where the duties are listed (the engine's batches of due executions, migration
batches, archival, pruning, canary judgement) and handed to one loop; webhook deliveries run
beside it in a loop of their own, so that a slow receiver never holds it up. The engine and the
features know nothing of each other. Any number of workers share the work on PostgreSQL; on
SQLite one runs inside the server process.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from revflow.config import Settings
from revflow.db import Database, autovacuum_off
from revflow.engine.channels import ExternalSender
from revflow.engine.clock import Clock
from revflow.engine.runner import BatchResult, EngineRunner, Hook, Outcome
from revflow.executions.events import executions_failed
from revflow.executions.reactions import react_to_steps
from revflow.kit.schedule import claim_run
from revflow.logging import get_logger
from revflow.migrations.runner import run_next as run_migration_batch
from revflow.retention.service import PRUNE_JOB, Batch
from revflow.retention.service import Run as PruningRun
from revflow.webhooks.delivery import DeliveryDuty
from revflow.workflows.lifecycle import Archivable, archive, check_canaries, claim_archive_run

log = get_logger("revflow.worker")


def judge_canaries(settings: Settings) -> Hook:
    """A canary is judged whenever its executions finish (SPEC §6b)."""

    async def hook(session: AsyncSession, outcome: Outcome, now: dt.datetime) -> None:
        await check_canaries(session, outcome.finished_workflows(), settings, now)

    return hook


async def announce_failures(session: AsyncSession, outcome: Outcome, now: dt.datetime) -> None:
    """``execution.failed`` webhooks for the executions this transaction failed."""
    failed = [
        (outcome.accounts[ex.id], ex.id) for ex in outcome.executions if ex.status == "failed"
    ]
    await executions_failed(session, failed, now)


# A duty does one bounded piece of work and answers how much it did (0: nothing was due).
Duty = Callable[[], Awaitable[int]]


# How much pruning time a worker may save up while no execution is due, to spend once some are.
PRUNE_BURST_SECONDS = 1.0


@dataclass
class Round:
    """What one pass over the duties did."""

    engine: BatchResult
    other: int

    @property
    def idle(self) -> bool:
        return self.engine.executions == 0 and self.other == 0


class Worker:
    """Runs the duties in a loop until stopped; between rounds sleeps until work is due."""

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
        self.engine = EngineRunner(
            db,
            settings,
            hooks=[react_to_steps, judge_canaries(settings), announce_failures],
            clock=clock,
            sender=sender,
            worker_id=worker_id,
            on_recorded=self.wake,
        )
        self.clock = self.engine.clock
        self.sender = self.engine.sender
        self.id = self.engine.id
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._next_schedule_check = 0.0
        self._next_migration_look = 0.0
        # Besides the engine's batches, every round runs these, in this order; scheduled
        # work (archival, and starting a pruning run) runs between rounds, at most once a
        # minute. A pruning run goes on one batch a round, so due executions never wait on it,
        # and while executions are due it takes at most ``prune_busy_share`` of the time.
        self.duties: list[tuple[str, Duty]] = [
            ("migrations", self._migration_batch),
            ("pruning", self._pruning_batch),
        ]
        self._pruning: AsyncGenerator[Batch] | None = None
        self._pruned: Counter[str] = Counter()
        # The pruning run's pace while executions are due: a credit of seconds (``monotonic``)
        # that grows by ``prune_busy_share`` a second, up to PRUNE_BURST_SECONDS, and that its
        # batches spend; and whether this round's engine batch found due executions.
        self.monotonic: Callable[[], float] = time.monotonic
        self._prune_credit = 0.0
        self._prune_checked = 0.0
        self._engine_busy = False
        self.deliveries = DeliveryDuty(db, settings, clock=self.clock, worker_id=self.id)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def wake(self) -> None:
        """Look for due work now (the API calls this after enrolling, in one process)."""
        self._wake.set()
        self.deliveries.wake()

    async def run(self) -> None:
        """Run rounds until stopped. A round that fails — a database error or any other
        exception — is logged and retried after a pause; it never ends the loop."""
        log.info("worker_started", worker=self.id)
        await self._warn_if_not_vacuumed()
        failures = 0
        deliveries = asyncio.create_task(self.deliveries.run(self._stop))
        try:
            while not self._stop.is_set():
                try:
                    done = await self.round()
                    await self.run_scheduled()
                    failures = 0
                except DBAPIError as exc:
                    # A deadlock or serialization failure aborts one batch; it is retried.
                    log.warning("batch_aborted", worker=self.id, error=str(exc.orig))
                    done = Round(BatchResult(), 0)
                except Exception:
                    failures += 1
                    log.exception("batch_failed", worker=self.id, failures=failures)
                    await self._pause_after_failure(failures)
                    continue
                if done.idle:
                    await self._idle()
        finally:
            self._stop.set()
            await asyncio.gather(deliveries, return_exceptions=True)
            await self._end_pruning()
            await self.engine.finish()
            log.info("worker_stopped", worker=self.id)

    async def _warn_if_not_vacuumed(self) -> None:
        """Say at start where PostgreSQL will not vacuum on its own. Every step rewrites its
        execution's row (its ``wake_at`` and step are indexed, so the new version is never an
        in-place one): unvacuumed, the executions table and its indexes keep a dead version per
        step and only grow, and the engine comes back more slowly after a fault (BENCHMARKS.md,
        "What autovacuum does to a long engine run")."""
        try:
            off = await autovacuum_off(self.db)
        except Exception:
            # Whatever keeps the database from answering (down, starting, refusing), the
            # first round meets it too, says so and is retried; a check never stops a worker.
            return
        if off:
            log.warning(
                "autovacuum_off",
                worker=self.id,
                where=off,
                detail="PostgreSQL does not vacuum "
                + ("anything" if "server" in off else "the tables " + ", ".join(off))
                + ": a table it does not vacuum keeps every dead row version (the executions "
                "table one per step) and grows until a VACUUM; turn autovacuum on (README, "
                "PostgreSQL)",
            )

    async def _pause_after_failure(self, failures: int) -> None:
        """Back off (up to 30 s) so that a failure that repeats does not spin the loop."""
        delay = min(self.settings.worker_poll_seconds * 2 ** min(failures, 10), 30.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay)

    async def round(self, *, wait_external: bool = False) -> Round:
        """One batch of due executions, then one turn of every other duty."""
        engine = await self.engine.run_once(wait_external=wait_external)
        self._engine_busy = engine.executions > 0
        other = 0
        for name, duty in self.duties:
            if name == "migrations" and not self._look_for_migrations(engine):
                continue
            other += await duty()
        return Round(engine, other)

    def _look_for_migrations(self, engine: BatchResult) -> bool:
        """Whether this round looks for a migration batch: while the engine has due
        executions, once per ``worker_poll_seconds`` (a look is a locking query, and a batch
        of steps takes a few milliseconds); always when the engine found nothing to do, so
        that a worker never goes idle with a migration left runnable."""
        return engine.executions == 0 or self.monotonic() >= self._next_migration_look

    async def _migration_batch(self) -> int:
        settled = await run_migration_batch(self.db, self.clock.now())
        # A migration with more to move is looked for again at once; none, in a poll interval.
        wait = 0.0 if settled else self.settings.worker_poll_seconds
        self._next_migration_look = self.monotonic() + wait
        return settled

    async def _pruning_batch(self) -> int:
        """One batch of this worker's pruning run, if it claimed one; a run that dies with
        the worker leaves whole batches, and the next run (any worker's) goes on from there."""
        if self._pruning is None:
            return 0
        began, busy = self.monotonic(), self._engine_busy
        earned = self.settings.prune_busy_share * (began - self._prune_checked)
        self._prune_credit = min(self._prune_credit + earned, PRUNE_BURST_SECONDS)
        self._prune_checked = began
        if busy and self._prune_credit < 0:
            return 0  # executions are due and pruning has had its share: not this round
        try:
            batch = await anext(self._pruning)
        except StopAsyncIteration:
            await self._end_pruning()
            return 0
        except BaseException:
            await self._end_pruning()
            raise
        finally:
            if busy:
                self._prune_credit -= self.monotonic() - began
        self._pruned[batch.kind] += batch.rows
        return 1 + batch.rows

    async def _end_pruning(self) -> None:
        if self._pruning is None:
            return
        running, self._pruning = self._pruning, None
        with contextlib.suppress(Exception):
            await running.aclose()
        log.info("pruned", worker=self.id, **self._pruned)
        self._pruned.clear()

    async def run_once(self, *, wait_external: bool = False) -> BatchResult:
        """Claim and run one batch of due executions."""
        return await self.engine.run_once(wait_external=wait_external)

    async def _idle(self) -> None:
        timeout = self.settings.worker_poll_seconds
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def drain(self, max_rounds: int = 10_000) -> BatchResult:
        """Run rounds until nothing is due, waiting for external calls in between (tests)."""
        total = BatchResult()
        for _ in range(max_rounds):
            done = await self.round(wait_external=True)
            total.executions += done.engine.executions
            total.steps += done.engine.steps
            total.external += done.engine.external
            if done.idle:
                break
        return total

    async def run_scheduled(self, *, force: bool = False) -> list[Archivable] | None:
        """Archival, once per ``archive_interval_hours`` across every worker, and the start of
        a pruning run, once per ``prune_interval_hours`` (checked at most once a minute per
        worker). Answers what was archived, or None when archival did not run."""
        moment = time.monotonic()
        if not force and moment < self._next_schedule_check:
            return None
        self._next_schedule_check = moment + 60
        now = self.clock.now()
        await self.claim_pruning(now)
        async with self.db.session(write=True) as session:
            if not await claim_archive_run(session, self.settings, now, self.id):
                return None
            archived = await archive(session, self.settings, now)
            await session.commit()
        if archived:
            log.info("archived", worker=self.id, versions=len(archived))
        return archived

    async def claim_pruning(self, now: dt.datetime) -> bool:
        """Start a pruning run on this worker when it is due (one worker per interval)."""
        if self._pruning is not None:
            return False
        interval = dt.timedelta(hours=self.settings.prune_interval_hours)
        async with self.db.session(write=True) as session:
            claimed = await claim_run(session, PRUNE_JOB, interval, now, self.id)
            await session.commit()
        if claimed:
            log.info("pruning_started", worker=self.id)
            self._pruning = PruningRun(self.db, self.settings, now).batches()
            self._prune_credit, self._prune_checked = 0.0, self.monotonic()
        return claimed


@dataclass
class WorkerHealth:
    """What ``/readyz`` reports of an in-process worker."""

    running: bool = False
    restarts: int = 0
    last_error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {"running": self.running, "restarts": self.restarts, "last_error": self.last_error}


async def supervise(
    start: Callable[[], Worker],
    health: WorkerHealth,
    stopping: asyncio.Event,
    *,
    on_start: Callable[[Worker], None] = lambda _worker: None,
) -> None:
    """Run a worker until ``stopping`` is set; one whose loop dies is reported on ``health``
    and replaced by a fresh one after a short pause (doubling, up to 30 s)."""
    while not stopping.is_set():
        worker = start()
        on_start(worker)
        health.running = True
        try:
            await worker.run()
            return
        except Exception as exc:
            health.running = False
            health.restarts += 1
            health.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("worker_died", worker=worker.id, restarts=health.restarts)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), min(0.5 * 2**health.restarts, 30.0))
        finally:
            health.running = False
