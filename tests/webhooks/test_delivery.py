"""Delivery rules (SPEC §8): retries with the same webhook-id, Retry-After, 410, other 4xx,
secret rotation, redelivery and ping; and the subscription API around them."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from revflow.config import Settings
from revflow.webhooks.delivery import retry_delay
from tests.webhooks.conftest import API, Rig
from tests.webhooks.receiver import Answer, Delivered, Receiver


async def pause(rig: Rig) -> None:
    """Cause one event: a workflow.paused."""
    created = await rig.tenant.request("POST", f"{API}/workflows", json={"name": "Paused"})
    assert created.status_code == 201, created.text
    paused = await rig.tenant.request("POST", f"{API}/workflows/{created.json()['id']}/pause")
    assert paused.status_code == 200, paused.text


def answers(*statuses: int, headers: dict[str, str] | None = None) -> Any:
    def answer(n: int, _request: Delivered) -> Answer:
        status = statuses[min(n, len(statuses)) - 1]
        return Answer(status, headers or {} if status != 200 else {})

    return answer


async def test_503_twice_then_delivered_on_the_third_attempt_with_one_webhook_id(
    rig: Rig,
) -> None:
    async with Receiver(answers(503, 503, 200)) as receiver:
        hook = await rig.subscribe(receiver.url, ["workflow.paused"])
        receiver.secrets = [hook["secret"]]
        await pause(rig)
        await rig.send()
        [delivery] = await rig.deliveries(hook["id"])
        assert delivery["status"] == "pending"
        assert [a["status_code"] for a in delivery["attempts"]] == [503]
        # The first retry waits the base delay (±20 % jitter): not yet due before 0.8 s.
        assert await rig.advance(0.7) == 0
        await rig.advance(0.6)
        await rig.advance(5)  # the second retry: 4 s ± 20 %
        [delivery] = await rig.deliveries(hook["id"])
        assert delivery["status"] == "delivered", delivery
        assert [a["status_code"] for a in delivery["attempts"]] == [503, 503, 200]
        assert all(a["duration_ms"] >= 0 and a["at"] for a in delivery["attempts"])
        assert delivery["next_attempt_at"] is None
        assert len(receiver.requests) == 3
        assert {r.id for r in receiver.requests} == {delivery["id"]}
        assert all(r.verified_with for r in receiver.requests)


async def test_retry_after_is_honoured(rig: Rig) -> None:
    async with Receiver(answers(429, 200, headers={"Retry-After": "120"})) as receiver:
        hook = await rig.subscribe(receiver.url, ["workflow.paused"])
        await pause(rig)
        await rig.send()
        [delivery] = await rig.deliveries(hook["id"])
        first = dt.datetime.fromisoformat(delivery["attempts"][0]["at"])
        due = dt.datetime.fromisoformat(delivery["next_attempt_at"])
        assert due - first == dt.timedelta(seconds=120)
        await rig.advance(100)  # the exponential schedule alone would have retried by now
        assert len(receiver.requests) == 1
        await rig.advance(21)
        [delivery] = await rig.deliveries(hook["id"])
        assert delivery["status"] == "delivered"
        assert [a["status_code"] for a in delivery["attempts"]] == [429, 200]


async def test_410_disables_the_subscription(rig: Rig) -> None:
    async with Receiver(answers(410)) as receiver:
        hook = await rig.subscribe(receiver.url, ["workflow.paused"])
        await pause(rig)
        await rig.send()
        [delivery] = await rig.deliveries(hook["id"])
        assert delivery["status"] == "failed"
        got = (await rig.tenant.request("GET", f"{API}/webhooks/{hook['id']}")).json()
        assert got["enabled"] is False and "410" in got["disabled_reason"]
        audit = (await rig.tenant.request("GET", f"{API}/audit", params={"limit": 200})).json()
        assert any(e["action"] == "webhook.disabled" for e in audit["items"])
        await pause(rig)  # a disabled subscription gets nothing more
        await rig.send()
        assert len(await rig.deliveries(hook["id"])) == 1
        assert len(receiver.requests) == 1


@pytest.mark.parametrize("status", [400, 404, 302])
async def test_other_answers_fail_the_delivery_without_retry(rig: Rig, status: int) -> None:
    async with Receiver(answers(status, 200, headers={"Location": "/elsewhere"})) as receiver:
        hook = await rig.subscribe(receiver.url, ["workflow.paused"])
        await pause(rig)
        await rig.send()
        await rig.advance(3600)
        [delivery] = await rig.deliveries(hook["id"])
        assert delivery["status"] == "failed"
        assert [a["status_code"] for a in delivery["attempts"]] == [status]
        assert len(receiver.requests) == 1
        got = (await rig.tenant.request("GET", f"{API}/webhooks/{hook['id']}")).json()
        assert got["enabled"] is True


async def test_a_closed_port_is_retried_and_gives_up_after_the_last_attempt(
    make_rig: Any,
) -> None:
    async with make_rig(webhook_max_attempts=3) as rig:
        async with Receiver() as closed:
            url = closed.url
        hook = await rig.subscribe(url, ["workflow.paused"])
        await pause(rig)
        await rig.send()
        for _ in range(3):
            await rig.advance(60)
        [delivery] = await rig.deliveries(hook["id"])
        assert delivery["status"] == "failed"
        assert len(delivery["attempts"]) == 3
        assert all(a["status_code"] is None and a["error"] for a in delivery["attempts"])
        assert "gave up after 3 attempts" in delivery["attempts"][-1]["error"]


def test_the_default_retry_schedule_spans_at_least_24_hours() -> None:
    settings = Settings()

    class Low:
        @staticmethod
        def uniform(low: float, _high: float) -> float:
            return low

    total = sum(
        retry_delay(settings, n, Low())  # type: ignore[arg-type]
        for n in range(1, settings.webhook_max_attempts)
    )
    assert total >= 24 * 3600, total / 3600
    delays = [retry_delay(settings, n, Low()) for n in range(1, 6)]  # type: ignore[arg-type]
    assert delays == sorted(delays) and delays[1] == 4 * delays[0]


async def test_rotated_secret_old_and_new_both_sign(rig: Rig) -> None:
    async with Receiver() as receiver:
        hook = await rig.subscribe(receiver.url, ["workflow.paused"])
        rotated = await rig.tenant.request("POST", f"{API}/webhooks/{hook['id']}/rotate-secret")
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["secret"]
        assert new.startswith("whsec_") and new != hook["secret"]
        assert rotated.json()["secret_rotated_until"] is not None
        receiver.secrets = [hook["secret"], new]
        await pause(rig)
        await rig.send()
        [request] = receiver.requests
        assert request.verified_with == [hook["secret"], new]
        assert len(request.headers["webhook-signature"].split(" ")) == 2
        # After 24 hours only the new secret signs.
        rig.clock.advance(dt.timedelta(hours=24, seconds=1))
        await pause(rig)
        await rig.send()
        assert receiver.requests[-1].verified_with == [new]


async def test_ping_and_redeliver_keep_the_webhook_id(rig: Rig) -> None:
    async with Receiver() as receiver:
        hook = await rig.subscribe(receiver.url, ["workflow.paused"])
        receiver.secrets = [hook["secret"]]
        ping = await rig.tenant.request("POST", f"{API}/webhooks/{hook['id']}/test")
        assert ping.status_code == 202, ping.text
        assert ping.json()["status"] == "pending" and ping.json()["event"] == "ping"
        await rig.send()
        assert receiver.verified()[0].json()["type"] == "ping"
        again = await rig.tenant.request(
            "POST", f"{API}/webhooks/{hook['id']}/deliveries/{ping.json()['id']}/redeliver"
        )
        assert again.status_code == 202, again.text
        await rig.send()
        assert [r.id for r in receiver.verified()] == [ping.json()["id"]] * 2
        [delivery] = await rig.deliveries(hook["id"])
        assert delivery["status"] == "delivered" and len(delivery["attempts"]) == 2


async def test_secrets_appear_only_where_they_are_created(rig: Rig) -> None:
    hook = await rig.subscribe("http://127.0.0.1:9/hooks", ["workflow.paused"])
    rotated = await rig.tenant.request("POST", f"{API}/webhooks/{hook['id']}/rotate-secret")
    patched = await rig.tenant.request(
        "PATCH", f"{API}/webhooks/{hook['id']}", json={"description": "d", "enabled": False}
    )
    assert patched.status_code == 200, patched.text
    secrets = [hook["secret"], rotated.json()["secret"]]
    for url in (f"{API}/webhooks", f"{API}/webhooks/{hook['id']}", f"{API}/audit"):
        text = (await rig.tenant.request("GET", url, params={"limit": 200})).text
        assert not any(s in text for s in secrets), url
        assert not any(s.removeprefix("whsec_") in text for s in secrets), url
    audit = (await rig.tenant.request("GET", f"{API}/audit", params={"limit": 200})).json()
    actions = [e["action"] for e in audit["items"]]
    assert {"webhook.created", "webhook.secret_rotated", "webhook.updated"} <= set(actions)
    deleted = await rig.tenant.request("DELETE", f"{API}/webhooks/{hook['id']}")
    assert deleted.status_code == 204
    gone = await rig.tenant.request("GET", f"{API}/webhooks/{hook['id']}")
    assert gone.status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hooks",
        "http://10.1.2.3/hooks",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:8080/hooks",
        "http://[fd00::1]/hooks",
        "http://localhost:8080/hooks",
        "http://0.0.0.0/hooks",
    ],
)
async def test_internal_webhook_urls_answer_422(make_rig: Any, url: str) -> None:
    async with make_rig(egress_allow="") as rig:
        response = await rig.tenant.request(
            "POST", f"{API}/webhooks", json={"url": url, "events": ["workflow.paused"]}
        )
        assert response.status_code == 422, response.text
        problem = response.json()
        assert problem["errors"][0]["pointer"] == "/url"
        assert "egress" in problem["detail"]


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"url": "ftp://example.com/x", "events": ["workflow.paused"]}, "/url"),
        ({"url": "https://93.184.215.14/x", "events": ["nope"]}, "/events/0"),
        ({"url": "https://93.184.215.14/x", "events": []}, "/events"),
        ({"url": "https://93.184.215.14/x", "events": ["ping"], "secret": "x"}, "/events/0"),
        ({"events": ["workflow.paused"]}, "/url"),
    ],
)
async def test_bad_subscriptions_answer_422_naming_the_path(
    rig: Rig, body: dict[str, Any], pointer: str
) -> None:
    response = await rig.tenant.request("POST", f"{API}/webhooks", json=body)
    assert response.status_code == 422, response.text
    assert pointer in [e["pointer"] for e in response.json()["errors"]], response.text
