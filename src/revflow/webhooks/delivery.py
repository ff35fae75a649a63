"""Sending webhook deliveries: a worker duty, independent of the engine's batches.

Due deliveries are claimed with ``FOR UPDATE SKIP LOCKED`` under a lease into a queue of up to
``webhook_batch_size``, sent concurrently outside any transaction — at most
``webhook_concurrency`` at once, so a slow receiver holds a slot, never the engine or the other
deliveries — and each outcome is recorded in a later transaction fenced by the lease (the same
one that tops the queue up, while the sends go on): a worker that died mid-send loses its lease
when it expires and another worker sends again, with the same ``webhook-id`` (at least once).

Requests are signed per Standard Webhooks with the ``standardwebhooks`` library and sent by
:class:`revflow.webhooks.sender.Sender` over kept-alive connections that go through the egress
policy (``revflow.kit.egress``); redirects are never followed. Retries follow
:func:`retry_delay` (exponential with jitter) on a timeout, a connection error, 429 (honouring
``Retry-After``) and 5xx; 410 disables the subscription; another 4xx, a 3xx or an egress
refusal fails the delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.utils
import math
import random
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks import Webhook

from revflow.audit import service as audit
from revflow.audit.service import SYSTEM
from revflow.config import Settings
from revflow.db import Database
from revflow.engine.clock import Clock, SystemClock
from revflow.kit.egress import EgressPolicy, EgressRefused, Resolver, system_resolver
from revflow.logging import get_logger
from revflow.webhooks import repository as repo
from revflow.webhooks.repository import Claimed
from revflow.webhooks.sender import Sender, SendFailed

log = get_logger("revflow.webhooks")

RETRY_FACTOR = 4
JITTER = (0.8, 1.2)
MAX_RETRY_AFTER = dt.timedelta(hours=24)
# How long a finished send may wait for others, so that they are recorded together.
COLLECT_SECONDS = 0.2
ERROR_CHARS = 300


def retry_delay(settings: Settings, attempt: int, rng: random.Random | None = None) -> float:
    """Seconds before the attempt after attempt number ``attempt`` (1-based): the base times
    4 per attempt, capped, with ±20 % jitter. Defaults: 5 s, 20 s, 80 s, 5 min, 21 min,
    85 min, 5.7 h, then 8 h — twelve attempts spread over about 40 hours."""
    base = settings.webhook_retry_base_seconds * RETRY_FACTOR ** (attempt - 1)
    capped = min(base, settings.webhook_retry_max_seconds)
    return float(capped * (rng or random).uniform(*JITTER))


def retry_after(value: str | None, now: dt.datetime) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - now).total_seconds()
    return max(0.0, min(seconds, MAX_RETRY_AFTER.total_seconds()))


@dataclass
class Outcome:
    """The result of one attempt."""

    delivery: Claimed
    at: dt.datetime
    duration_ms: int
    status_code: int | None = None
    error: str | None = None
    retry: bool = False
    delivered: bool = False
    gone: bool = False
    retry_after: float | None = None


class Signer:
    """Standard Webhooks signatures; the ``Webhook`` objects are kept per secret."""

    def __init__(self) -> None:
        self._hooks: dict[str, Webhook] = {}

    def headers(self, delivery: Claimed, at: dt.datetime) -> dict[str, str]:
        msg_id = str(delivery.id)
        signatures = []
        for secret in delivery.secrets:
            hook = self._hooks.get(secret)
            if hook is None:
                if len(self._hooks) > 10_000:
                    self._hooks.clear()
                hook = self._hooks[secret] = Webhook(secret)
            signatures.append(hook.sign(msg_id, at, delivery.body))
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": " ".join(signatures),
            "content-type": "application/json",
            "user-agent": "revflow-webhooks",
        }


class DeliveryDuty:
    """The sending duty of one worker process.

    Deliveries pass through three stages: *queued* (claimed under this worker's lease, not yet
    sent; up to ``webhook_batch_size``), *in flight* (at most ``webhook_concurrency``) and
    *finished* (sent, their outcome not yet recorded). A send that ends starts the next queued
    one at once, so sending never waits for the database; each turn of :meth:`cycle` is one
    transaction that records what finished and claims what the queue has room for.
    """

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        worker_id: str,
        clock: Clock | None = None,
        sender: Sender | None = None,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock or SystemClock()
        self.id = worker_id
        self.sender = sender or Sender(
            EgressPolicy.parse(settings.egress_allow),
            timeout=settings.webhook_timeout_seconds,
            resolver=resolver,
            max_idle=settings.webhook_concurrency,
        )
        self.signer = Signer()
        # Claimed, each with the monotonic time of its claim.
        self.queue: deque[tuple[Claimed, float]] = deque()
        self.in_flight: set[asyncio.Task[Outcome]] = set()
        self.finished: list[Outcome] = []
        self._first_finished = 0.0  # when the oldest of ``finished`` ended
        self._claim_after = 0.0  # the outbox had nothing more due: no claim before this
        # Subscriptions that answered 410 here: what was claimed before the disabling was
        # committed (infinity: not yet) is not sent.
        self._gone: dict[tuple[uuid.UUID, uuid.UUID], float] = {}
        self._progress = asyncio.Event()
        self._wake = asyncio.Event()
        self._stopping = False
        self.sent = 0

    def wake(self) -> None:
        self._claim_after = 0.0
        self._wake.set()
        self._progress.set()

    @property
    def busy(self) -> bool:
        return bool(self.queue or self.in_flight or self.finished)

    async def run(self, stop: asyncio.Event) -> None:
        """Cycle until ``stop`` is set; then let the sends in flight finish, record them, and
        hand back the leases of what was queued."""
        halt = asyncio.create_task(self._halt_on(stop))
        try:
            while not stop.is_set():
                try:
                    busy = await self.cycle()
                except DBAPIError as exc:
                    log.warning("webhook_cycle_aborted", worker=self.id, error=str(exc.orig))
                    busy = False
                if not busy:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.settings.worker_poll_seconds)
        finally:
            halt.cancel()
            self._stopping = True
            await asyncio.shield(self._finish())

    async def _halt_on(self, stop: asyncio.Event) -> None:
        """Once ``stop`` is set, start no more sends and end the turn that waits."""
        await stop.wait()
        self._stopping = True
        self._progress.set()

    async def _finish(self) -> None:
        queued = [(delivery.account_id, delivery.id) for delivery, _claimed_at in self.queue]
        self.queue.clear()
        if self.in_flight:
            await asyncio.wait(self.in_flight)
        try:
            await self._turn(0, release=queued)
        finally:
            await self.sender.aclose()

    async def cycle(self) -> bool:
        """One turn: when the queue is down to half (and the outbox was not found empty just
        before) or what finished is due to be recorded, one transaction records it and tops up
        the queue; otherwise wait for a send to end. Answers whether anything is under way."""
        claim = self._claim_room()
        if claim or self._record_due():
            await self._turn(claim)
            self._start_sends()
            return self.busy
        if not self.busy:
            return False
        self._progress.clear()
        timeout = self.settings.worker_poll_seconds
        if self.finished:
            timeout = max(0.0, self._first_finished + COLLECT_SECONDS - time.monotonic())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._progress.wait(), timeout)
        return True

    async def drain(self, max_cycles: int = 10_000) -> int:
        """Cycle until nothing is due and nothing is under way (tests); answers attempts made."""
        before = self.sent
        self._claim_after = 0.0
        for _ in range(max_cycles):
            if not await self.cycle():
                break
        return self.sent - before

    def _claim_room(self) -> int:
        """How many to claim now: none while the queue is over half full."""
        size = self.settings.webhook_batch_size
        if len(self.queue) > size // 2 or time.monotonic() < self._claim_after:
            return 0
        return size - len(self.queue)

    def _record_due(self) -> bool:
        """Record once half a batch has finished, or nothing else is under way, or the oldest
        has waited ``COLLECT_SECONDS``."""
        return bool(self.finished) and (
            len(self.finished) >= max(1, self.settings.webhook_batch_size // 2)
            or not (self.queue or self.in_flight)
            or time.monotonic() - self._first_finished >= COLLECT_SECONDS
        )

    def _start_sends(self) -> None:
        """Start queued sends while there are free slots (called again as each one ends)."""
        # A send started within the lease less one timeout of its claim ends before the lease.
        oldest = time.monotonic() - self.settings.webhook_lease_seconds
        while (
            self.queue
            and len(self.in_flight) < self.settings.webhook_concurrency
            and not self._stopping
        ):
            delivery, claimed_at = self.queue.popleft()
            if claimed_at < oldest:
                continue  # its lease may be gone; it is sent again once the lease expires
            task = asyncio.create_task(self._send(delivery, claimed_at))
            task.add_done_callback(self._sent)
            self.in_flight.add(task)

    def _sent(self, task: asyncio.Task[Outcome]) -> None:
        """A send ended: keep its outcome for the next turn and start the next queued one."""
        self.in_flight.discard(task)
        self._progress.set()
        if task.cancelled():
            pass  # stopped mid-send: the lease expires and another attempt follows
        elif (error := task.exception()) is not None:
            log.error("webhook_send_crashed", worker=self.id, error=repr(error))
        else:
            outcome = task.result()
            if outcome.gone:
                key = (outcome.delivery.account_id, outcome.delivery.subscription_id)
                self._gone[key] = math.inf
            if not self.finished:
                self._first_finished = time.monotonic()
            self.finished.append(outcome)
        self._start_sends()

    async def _turn(self, claim: int, release: Sequence[tuple[uuid.UUID, uuid.UUID]] = ()) -> None:
        """One transaction: record what finished, hand back ``release``d leases, and claim
        up to ``claim`` more into the queue. What finished is kept if it fails."""
        outcomes = list(self.finished)
        if not (outcomes or claim or release):
            return
        now = self.clock.now()
        lease = dt.timedelta(
            seconds=self.settings.webhook_lease_seconds + self.settings.webhook_timeout_seconds
        )
        claimed: list[Claimed] = []
        async with self.db.session(write=True) as session:
            if outcomes:
                await self._record(session, outcomes, now)
            if release:
                await repo.release(session, self.id, release)
            if claim:
                claimed = await repo.claim_due(session, now, claim, self.id, now + lease)
            await session.commit()
        del self.finished[: len(outcomes)]
        self._first_finished = time.monotonic()  # of those that finished meanwhile, if any
        self.sent += len(outcomes)
        self._log_failures(outcomes)
        for outcome in outcomes:
            if outcome.gone:
                self._gone[outcome.delivery.account_id, outcome.delivery.subscription_id] = (
                    time.monotonic()
                )
        if not self.busy:
            self._gone.clear()  # nothing claimed before a 410 is left
        if claim:
            claimed_at = time.monotonic()
            self.queue.extend((delivery, claimed_at) for delivery in claimed)
            if len(claimed) < claim:
                self._claim_after = time.monotonic() + self.settings.worker_poll_seconds

    async def _send(self, delivery: Claimed, claimed_at: float) -> Outcome:
        at = self.clock.now()
        started = time.monotonic()
        outcome = Outcome(delivery, at, 0)
        gone_at = self._gone.get((delivery.account_id, delivery.subscription_id))
        if not delivery.enabled or (gone_at is not None and claimed_at < gone_at):
            outcome.error = "the subscription is disabled"
            return outcome
        # The signed timestamp is the wall clock's: receivers compare it with their own.
        headers = self.signer.headers(delivery, dt.datetime.now(dt.UTC))
        try:
            response = await self.sender.post(delivery.url, delivery.body.encode(), headers)
        except EgressRefused as exc:
            outcome.error = str(exc)
        except SendFailed as exc:
            outcome.error = str(exc)[:ERROR_CHARS]
            outcome.retry = True
        except Exception as exc:
            outcome.error = f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]
        else:
            outcome.status_code = code = response.status_code
            if 200 <= code < 300:
                outcome.delivered = True
            elif code == 410:
                outcome.gone = True
                outcome.error = "the receiver answered 410 Gone: subscription disabled"
            elif code == 429 or code >= 500:
                outcome.retry = True
                outcome.error = f"HTTP {code}"
                outcome.retry_after = retry_after(response.headers.get("retry-after"), at)
            elif 300 <= code < 400:
                outcome.error = f"HTTP {code}: redirects are not followed"
            else:
                outcome.error = f"HTTP {code}"
        outcome.duration_ms = int((time.monotonic() - started) * 1000)
        return outcome

    async def _record(
        self, session: AsyncSession, outcomes: list[Outcome], now: dt.datetime
    ) -> None:
        rows = [self._row(outcome, now) for outcome in outcomes]
        gone = {(o.delivery.account_id, o.delivery.subscription_id) for o in outcomes if o.gone}
        await repo.record_results(session, self.id, rows)
        for account_id, subscription_id in sorted(gone):
            if await repo.disable_subscription(
                session, account_id, subscription_id, "the receiver answered 410 Gone", now
            ):
                await audit.record(
                    session,
                    account_id,
                    SYSTEM,
                    "webhook.disabled",
                    object_type="webhook",
                    object_id=subscription_id,
                    details={"reason": "the receiver answered 410 Gone"},
                    now=now,
                )

    def _log_failures(self, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            if not outcome.delivered:
                log.info(
                    "webhook_attempt_failed",
                    worker=self.id,
                    delivery=str(outcome.delivery.id),
                    webhook=str(outcome.delivery.subscription_id),
                    webhook_event=outcome.delivery.event,
                    status_code=outcome.status_code,
                    error=outcome.error,
                    retry=outcome.retry,
                )

    def _row(self, outcome: Outcome, now: dt.datetime) -> dict[str, Any]:
        delivery = outcome.delivery
        attempt = {
            "at": outcome.at.isoformat(),
            "status_code": outcome.status_code,
            "error": outcome.error,
            "duration_ms": outcome.duration_ms,
        }
        count = delivery.attempt_count + 1
        status = "failed"
        next_at: dt.datetime | None = None
        finished: dt.datetime | None = now
        if outcome.delivered:
            status = "delivered"
        elif outcome.retry and count < self.settings.webhook_max_attempts:
            delay = outcome.retry_after
            if delay is None:
                delay = retry_delay(self.settings, count)
            status, next_at, finished = "pending", now + dt.timedelta(seconds=delay), None
        elif outcome.retry:
            attempt["error"] = f"{outcome.error} (gave up after {count} attempts)"
        return {
            "_account": delivery.account_id,
            "_id": delivery.id,
            "status": status,
            "attempts": [*delivery.attempts, attempt],
            "attempt_count": count,
            "next_attempt_at": next_at,
            "finished_at": finished,
        }
