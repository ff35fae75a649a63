"""Token buckets, one per key (an account): the rate limit of the API.

A bucket holds up to ``burst`` tokens and gains ``rate`` tokens a second. A request costs
tokens (one, or one per contact for an enrollment); it is admitted when the bucket holds them.
A request that costs more than the whole burst is admitted when the bucket is full and leaves
it in debt (below zero), so that such a request stays possible and its cost is still paid: the
key's next requests wait until the debt is refilled.

Time is passed in (seconds on any monotonic scale), so that tests move it by hand. The buckets
live in the process's memory: each ``revflow serve`` process has its own.

The answer carries what the RateLimit header fields of draft-ietf-httpapi-ratelimit-headers-06
advertise: the limit (the burst), the whole tokens remaining, and the seconds until the bucket
is full again; and, for a refused request, the seconds until it would be admitted.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass

# Buckets that have filled up again are the same as new ones: they are dropped once this many
# keys are held, so that memory follows the keys seen recently, not every key ever seen.
PRUNE_AT = 10_000


@dataclass(frozen=True)
class Decision:
    """Whether a request is admitted, and the bucket's state after it."""

    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int
    retry_after_seconds: int
    window_seconds: int


@dataclass
class _Bucket:
    tokens: float
    at: float


class TokenBuckets:
    """One token bucket per key, all of the same rate and burst."""

    def __init__(self, rate: float, burst: int) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self.rate = rate
        self.burst = burst
        self._buckets: dict[Hashable, _Bucket] = {}

    def _tokens(self, key: Hashable, now: float) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            return float(self.burst)
        elapsed = max(0.0, now - bucket.at)  # a clock that went back refills nothing
        return min(float(self.burst), bucket.tokens + elapsed * self.rate)

    def take(self, key: Hashable, cost: int, now: float) -> Decision:
        """Take ``cost`` tokens from ``key``'s bucket if it holds them (all or nothing)."""
        tokens = self._tokens(key, now)
        needed = min(max(cost, 1), self.burst)
        allowed = tokens >= needed
        if allowed:
            tokens -= max(cost, 1)
        if len(self._buckets) >= PRUNE_AT and key not in self._buckets:
            self._prune(now)
        self._buckets[key] = _Bucket(tokens, now)
        return Decision(
            allowed=allowed,
            limit=self.burst,
            remaining=max(0, math.floor(tokens)),
            reset_seconds=max(0, math.ceil((self.burst - tokens) / self.rate)),
            retry_after_seconds=0 if allowed else math.ceil((needed - tokens) / self.rate),
            window_seconds=max(1, math.ceil(self.burst / self.rate)),
        )

    def _prune(self, now: float) -> None:
        full = [key for key in self._buckets if self._tokens(key, now) >= self.burst]
        for key in full:
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)
