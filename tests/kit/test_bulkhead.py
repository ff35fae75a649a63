"""The bulkhead's compartments: per account and host, account, host and in all."""

from __future__ import annotations

import asyncio

from revflow.kit.bulkhead import Bulkhead, BulkheadLimits


def bulkhead(
    per_account_host: int = 2, per_account: int = 3, per_host: int = 4, total: int = 5
) -> Bulkhead:
    return Bulkhead(BulkheadLimits(per_account_host, per_account, per_host, total))


def test_one_account_fills_only_its_compartment_of_a_host() -> None:
    b = bulkhead()
    assert b.try_enter("a", "slow.example") and b.try_enter("a", "slow.example")
    assert not b.try_enter("a", "slow.example")
    # The same account elsewhere, and another account on the same host, still get in.
    assert b.try_enter("a", "fast.example")
    assert b.try_enter("b", "slow.example")
    assert b.in_flight("a", "slow.example") == 2
    assert b.in_flight("a") == 3
    assert b.in_flight(host="slow.example") == 3


def test_the_account_host_and_total_compartments_each_bound_the_calls() -> None:
    b = bulkhead()
    assert b.try_enter("a", "h1") and b.try_enter("a", "h2") and b.try_enter("a", "h3")
    assert not b.try_enter("a", "h4")  # the account's three slots are taken
    assert b.try_enter("b", "h1") and b.try_enter("c", "h1")
    assert not b.try_enter("d", "h1")  # the host's four slots are taken
    assert not b.try_enter("d", "h5")  # five in all
    assert b.in_flight() == 5
    b.leave("a", "h2")
    assert b.try_enter("d", "h5")
    assert b.in_flight() == 5


def test_hosts_are_compared_without_case() -> None:
    b = bulkhead(per_account_host=1)
    assert b.try_enter("a", "API.example")
    assert not b.try_enter("a", "api.example")
    b.leave("a", "api.EXAMPLE")
    assert b.in_flight() == 0


async def test_a_waiting_call_gets_the_slot_another_leaves() -> None:
    b = bulkhead(per_account_host=1)
    assert await b.enter("a", "h", wait=0)
    waiting = asyncio.create_task(b.enter("a", "h", wait=60))
    await asyncio.sleep(0)
    assert not waiting.done()
    b.leave("a", "h")
    assert await waiting
    assert b.in_flight("a", "h") == 1


async def test_a_call_that_finds_no_room_in_its_wait_is_not_admitted() -> None:
    b = bulkhead(per_account_host=1)
    async with b.slot("a", "h", wait=0) as first:
        assert first
        async with b.slot("a", "h", wait=0.01) as second:
            assert not second
        assert b.in_flight() == 1
    assert b.in_flight() == 0


async def test_a_cancelled_waiter_leaves_nothing_behind() -> None:
    b = bulkhead(per_account_host=1)
    assert b.try_enter("a", "h")
    waiting = asyncio.create_task(b.enter("a", "h", wait=60))
    await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    b.leave("a", "h")
    assert b.in_flight() == 0
    assert b.try_enter("a", "h")
