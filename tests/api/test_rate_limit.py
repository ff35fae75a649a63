"""The API's rate limit per account: a token bucket, 429 with ``Retry-After`` and the RateLimit
header fields (draft-ietf-httpapi-ratelimit-headers-06), enrollments paid per contact; off by
default. Time is a manual clock: tokens come back only when the test moves it."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from revflow.app import create_app
from revflow.config import Settings
from revflow.db import Database
from revflow.engine.clock import ManualClock
from tests.support.tenants import Tenant, make_tenant
from tests.support.workflows import manual_workflow


@dataclass
class Limited:
    client: httpx.AsyncClient
    db: Database
    clock: ManualClock

    async def tenant(self, name: str) -> Tenant:
        return await make_tenant(self.db, self.client, name)


@asynccontextmanager
async def limited_app(database_url: str, **limits: Any) -> AsyncIterator[Limited]:
    settings = Settings(database_url=database_url, log_json=False, **limits)
    clock = ManualClock()
    db = Database(database_url, pool_size=3)
    app = create_app(settings, db, clock=clock)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://revflow.test") as c:
            yield Limited(c, db, clock)
    finally:
        await db.dispose()


def fields(response: httpx.Response) -> dict[str, str | None]:
    names = ("Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
    return {name: response.headers.get(name) for name in (*names, "RateLimit-Policy")}


async def test_past_the_burst_the_account_gets_429_with_retry_after(database_url: str) -> None:
    async with limited_app(database_url, rate_limit_per_second=1, rate_limit_burst=3) as app:
        tenant = await app.tenant("limited")
        answers = [await tenant.request("GET", "/api/v1/workflows") for _ in range(4)]

    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["RateLimit-Remaining"] for a in answers[:3]] == ["2", "1", "0"]
    assert fields(answers[0]) == {
        "Retry-After": None,
        "RateLimit-Limit": "3",
        "RateLimit-Remaining": "2",
        "RateLimit-Reset": "1",
        "RateLimit-Policy": "3;w=3",
    }
    refused = answers[3]
    assert fields(refused) == {
        "Retry-After": "1",
        "RateLimit-Limit": "3",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "3",
        "RateLimit-Policy": "3;w=3",
    }
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["code"] == "rate_limited" and problem["status"] == 429
    assert problem["retry_after"] == 1


async def test_the_bucket_refills_with_time(database_url: str) -> None:
    async with limited_app(database_url, rate_limit_per_second=0.5, rate_limit_burst=2) as app:
        tenant = await app.tenant("refill")

        async def status() -> int:
            return (await tenant.request("GET", "/api/v1/workflows")).status_code

        assert [await status(), await status(), await status()] == [200, 200, 429]
        app.clock.advance(dt.timedelta(seconds=1))  # half a token
        assert await status() == 429
        app.clock.advance(dt.timedelta(seconds=1))  # one token
        assert [await status(), await status()] == [200, 429]
        app.clock.advance(dt.timedelta(hours=1))  # never more than the burst
        assert [await status(), await status(), await status()] == [200, 200, 429]


async def test_one_account_exhausted_leaves_another_untouched(database_url: str) -> None:
    async with limited_app(database_url, rate_limit_per_second=1, rate_limit_burst=3) as app:
        noisy, quiet = await app.tenant("noisy"), await app.tenant("quiet")
        other_key = await noisy.key_for("viewer")  # one token
        for _ in range(2):
            assert (await noisy.request("GET", "/api/v1/workflows")).status_code == 200
        assert (await noisy.request("GET", "/api/v1/workflows")).status_code == 429
        answer = await quiet.request("GET", "/api/v1/workflows")
        assert answer.status_code == 200
        assert answer.headers["RateLimit-Remaining"] == "2"
        # Another key of the noisy account shares its account's bucket.
        refused = await app.client.get(
            "/api/v1/workflows", headers={"Authorization": f"Bearer {other_key}"}
        )
        assert refused.status_code == 429


async def published_manual_workflow(tenant: Tenant) -> str:
    """A workflow with a manual trigger and one wait, version 1 published (two requests)."""
    created = await tenant.request(
        "POST",
        "/api/v1/workflows",
        json={
            "name": "manual",
            "change_summary": "first",
            "definition": manual_workflow({"id": "wait", "type": "wait", "duration": "1d"}),
        },
    )
    workflow: str = created.json()["id"]
    await tenant.request("POST", f"/api/v1/workflows/{workflow}/versions/1/publish")
    return workflow


async def test_an_enrollment_costs_one_token_per_contact(database_url: str) -> None:
    async with limited_app(database_url, rate_limit_per_second=1, rate_limit_burst=40) as app:
        tenant = await app.tenant("enrolling")
        workflow = await published_manual_workflow(tenant)
        contacts = []
        for i in range(8):
            answer = await tenant.request("POST", "/api/v1/contacts", json={"email": f"{i}@x.io"})
            contacts.append(answer.json()["id"])
        left = int(answer.headers["RateLimit-Remaining"])
        assert left == 40 - 2 - 8

        url = f"/api/v1/workflows/{workflow}/enrollments"
        three = await tenant.request("POST", url, json={"contact_ids": contacts[:3]})
        assert three.status_code == 201, three.text
        assert three.headers["RateLimit-Remaining"] == str(left - 3)

        # Too few tokens for all the contacts: refused whole, nothing enrolled, nothing spent.
        await drain_to(tenant, 4)
        five = await tenant.request("POST", url, json={"contact_ids": contacts[3:8]})
        assert five.status_code == 429, five.text
        assert five.headers["Retry-After"] == "1"
        assert five.headers["RateLimit-Remaining"] == "4"

        app.clock.advance(dt.timedelta(seconds=1))
        again = await tenant.request("POST", url, json={"contact_ids": contacts[3:8]})
        assert again.status_code == 201, again.text
        assert again.json()["enrolled"] == 5  # none of them was enrolled by the refusal
        assert again.headers["RateLimit-Remaining"] == "0"


async def test_an_enrollment_larger_than_the_burst_leaves_the_bucket_in_debt(
    database_url: str,
) -> None:
    async with limited_app(database_url, rate_limit_per_second=1, rate_limit_burst=30) as app:
        tenant = await app.tenant("debt")
        workflow = await published_manual_workflow(tenant)
        contacts = [
            (await tenant.request("POST", "/api/v1/contacts", json={})).json()["id"]
            for _ in range(20)
        ]
        app.clock.advance(dt.timedelta(minutes=1))  # a full bucket: 30 tokens
        big = await tenant.request(
            "POST",
            f"/api/v1/workflows/{workflow}/enrollments",
            json={"contact_ids": [*contacts, *[contacts[0]] * 20]},  # 40 ids
        )
        assert big.status_code == 201, big.text
        assert big.headers["RateLimit-Remaining"] == "0"
        # 30 - 40 = -10 tokens: the next request needs 11 seconds of refill.
        after = await tenant.request("GET", "/api/v1/workflows")
        assert after.status_code == 429
        assert after.headers["Retry-After"] == "11"
        assert after.headers["RateLimit-Reset"] == "40"


async def drain_to(tenant: Tenant, remaining: int) -> None:
    """Spend tokens with cheap requests until ``remaining`` are left."""
    while True:
        answer = await tenant.request("GET", "/api/v1/workflows")
        assert answer.status_code == 200, answer.text
        if int(answer.headers["RateLimit-Remaining"]) <= remaining:
            assert int(answer.headers["RateLimit-Remaining"]) == remaining
            return


async def test_the_rate_limit_is_off_by_default(database_url: str) -> None:
    assert Settings().rate_limit() is None
    async with limited_app(database_url) as app:
        tenant = await app.tenant("unlimited")
        answers = [await tenant.request("GET", "/api/v1/workflows") for _ in range(50)]
    assert {a.status_code for a in answers} == {200}
    assert all("RateLimit-Limit" not in a.headers for a in answers)


def test_the_burst_defaults_to_two_seconds_of_the_rate() -> None:
    assert Settings(rate_limit_per_second=10).rate_limit() == (10, 20)
    assert Settings(rate_limit_per_second=0.1).rate_limit() == (0.1, 1)
    assert Settings(rate_limit_per_second=5, rate_limit_burst=7).rate_limit() == (5, 7)
