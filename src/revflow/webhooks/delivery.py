"""Sending webhook deliveries: a worker duty, independent of the engine's batches.

A cycle claims due deliveries with ``FOR UPDATE SKIP LOCKED`` and leases them (one short
transaction), sends them concurrently outside any transaction — at most
``webhook_concurrency`` at once, so a slow receiver holds a slot, never the engine or the other
deliveries — and records each outcome in a later transaction fenced by the lease: a worker that
died mid-send loses its lease when it expires and another worker sends again, with the same
``webhook-id`` (at least once).

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
import random
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import DBAPIError
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
# How long a cycle waits for its fast sends to finish, so that they are recorded together.
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
    """The sending duty of one worker process."""

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
        self.in_flight: set[asyncio.Task[Outcome]] = set()
        self._wake = asyncio.Event()
        self.sent = 0

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Cycle until ``stop`` is set; then let the sends in flight finish and record them."""
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
            await asyncio.shield(self._finish())

    async def _finish(self) -> None:
        if self.in_flight:
            done, _ = await asyncio.wait(self.in_flight)
            self.in_flight.clear()
            await self._record([task.result() for task in done])
        await self.sender.aclose()

    async def cycle(self) -> bool:
        """Claim what there is room for, start sending it, and record what finished. Answers
        whether there was anything to do."""
        free = self.settings.webhook_concurrency - len(self.in_flight)
        claimed: list[Claimed] = []
        if free > 0:
            claimed = await self._claim(min(free, self.settings.webhook_batch_size))
        for delivery in claimed:
            self.in_flight.add(asyncio.create_task(self._send(delivery)))
        if not self.in_flight:
            return False
        if claimed:
            done, _ = await asyncio.wait(self.in_flight, timeout=COLLECT_SECONDS)
        else:
            done, _ = await asyncio.wait(
                self.in_flight,
                timeout=self.settings.worker_poll_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
        self.in_flight -= done
        await self._record([task.result() for task in done])
        return True

    async def drain(self, max_cycles: int = 10_000) -> int:
        """Cycle until nothing is due and nothing is in flight (tests); answers attempts made."""
        before = self.sent
        for _ in range(max_cycles):
            if not await self.cycle() and not self.in_flight:
                break
        return self.sent - before

    async def _claim(self, limit: int) -> list[Claimed]:
        now = self.clock.now()
        lease = self.settings.webhook_lease_seconds + self.settings.webhook_timeout_seconds
        async with self.db.session(write=True) as session:
            claimed = await repo.claim_due(
                session, now, limit, self.id, now + dt.timedelta(seconds=lease)
            )
            await session.commit()
        return claimed

    async def _send(self, delivery: Claimed) -> Outcome:
        at = self.clock.now()
        started = time.monotonic()
        outcome = Outcome(delivery, at, 0)
        if not delivery.enabled:
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

    async def _record(self, outcomes: list[Outcome]) -> None:
        if not outcomes:
            return
        now = self.clock.now()
        rows = [self._row(outcome, now) for outcome in outcomes]
        gone = {(o.delivery.account_id, o.delivery.subscription_id) for o in outcomes if o.gone}
        async with self.db.session(write=True) as session:
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
            await session.commit()
        self.sent += len(outcomes)
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
            "_id": delivery.id,
            "status": status,
            "attempts": [*delivery.attempts, attempt],
            "attempt_count": count,
            "next_attempt_at": next_at,
            "finished_at": finished,
        }
