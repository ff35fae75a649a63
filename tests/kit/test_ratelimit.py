"""Token buckets: refill, debt, a clock that goes back, and memory that follows the keys seen
recently."""

from __future__ import annotations

import pytest

from revflow.kit import ratelimit
from revflow.kit.ratelimit import TokenBuckets


def test_a_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    buckets = TokenBuckets(rate=2, burst=4)
    assert [buckets.take("a", 1, 0.0).allowed for _ in range(5)] == [True] * 4 + [False]
    refused = buckets.take("a", 1, 0.0)
    assert (refused.remaining, refused.retry_after_seconds, refused.reset_seconds) == (0, 1, 2)
    assert buckets.take("a", 1, 0.5).allowed  # 0.5 s at 2 a second: one token
    assert not buckets.take("a", 1, 0.5).allowed
    full = buckets.take("a", 1, 100.0)
    assert (full.allowed, full.remaining) == (True, 3)


def test_a_cost_above_the_burst_needs_a_full_bucket_and_leaves_a_debt() -> None:
    buckets = TokenBuckets(rate=1, burst=10)
    assert buckets.take("a", 1, 0.0).allowed
    assert not buckets.take("a", 25, 0.0).allowed  # nine tokens: not full
    debt = buckets.take("a", 25, 1.0)
    assert (debt.allowed, debt.remaining, debt.reset_seconds) == (True, 0, 25)
    next_one = buckets.take("a", 1, 1.0)
    assert (next_one.allowed, next_one.retry_after_seconds) == (False, 16)


def test_a_clock_that_goes_back_refills_nothing() -> None:
    buckets = TokenBuckets(rate=1, burst=1)
    assert buckets.take("a", 1, 10.0).allowed
    assert not buckets.take("a", 1, 5.0).allowed
    assert buckets.take("a", 1, 6.0).allowed


def test_full_buckets_are_forgotten_once_many_keys_are_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ratelimit, "PRUNE_AT", 3)
    buckets = TokenBuckets(rate=1, burst=2)
    for key in ("a", "b", "c"):
        buckets.take(key, 1, 0.0)
    buckets.take("a", 1, 0.0)  # "a" is empty; "b" and "c" fill up by t=1
    buckets.take("d", 1, 1.0)
    assert len(buckets) == 2  # "a" (still short of full) and "d"
    assert not buckets.take("a", 2, 1.0).allowed


def test_a_rate_and_burst_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TokenBuckets(rate=0, burst=1)
    with pytest.raises(ValueError):
        TokenBuckets(rate=1, burst=0)
