"""The egress policy (SPEC §9) on ``http_request`` steps: internal targets are refused on the
address actually connected to, at once and without retries, unless REVFLOW_EGRESS_ALLOW
opens them."""

from __future__ import annotations

import datetime as dt
import ipaddress
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from revflow.app import create_app
from revflow.config import Settings
from revflow.db import Database
from revflow.engine.channels import ExternalSender
from revflow.engine.clock import ManualClock
from revflow.engine.interpreter import ExternalCall
from revflow.kit.egress import EgressPolicy, EgressRefused, guarded_client, internal_reason
from revflow.worker import Worker
from tests.support.engine import Engine
from tests.support.tenants import make_tenant
from tests.webhooks.receiver import Answer, Delivered, Receiver


@asynccontextmanager
async def engine_with(database_url: str, egress_allow: str) -> AsyncIterator[Engine]:
    settings = Settings(
        database_url=database_url,
        log_json=False,
        retry_base_seconds=0.01,
        max_attempts=3,
        # Beyond any pause of a loaded machine: a call answered after its timeout is made again,
        # and these tests count requests (see the rig in test_channels.py).
        http_timeout_seconds=60.0,
        egress_allow=egress_allow,
    )
    clock = ManualClock(dt.datetime.now(dt.UTC).replace(microsecond=0))
    db = Database(database_url, pool_size=5)
    app = create_app(settings, db, clock=clock)
    worker = Worker(db, settings, clock=clock)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://revflow.test") as c:
            yield Engine(await make_tenant(db, c, "egress"), worker, clock)
    finally:
        await worker.sender.aclose()
        await worker.deliveries.sender.aclose()
        await db.dispose()


async def call_once(engine: Engine, url: str) -> dict[str, Any]:
    """Run an http_request step to ``url`` for one contact; answers its execution."""
    wf = await engine.workflow(
        {
            "trigger": {"type": "manual"},
            "steps": [{"id": "call", "type": "http_request", "url": url, "method": "POST"}],
        }
    )
    contact = await engine.contact(email="e@example.com")
    enrolled = await engine.enroll(wf, contact)
    await engine.run()
    return await engine.execution(enrolled["executions"][0])


REFUSED = [
    "http://127.0.0.1:{port}/hook",
    "http://10.0.0.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:{port}/hook",
    "http://localhost:{port}/hook",  # a host name resolving to 127.0.0.1 (and ::1)
]


@pytest.mark.parametrize("template", REFUSED)
async def test_internal_targets_fail_the_step_at_once(database_url: str, template: str) -> None:
    async with Receiver() as receiver, engine_with(database_url, "") as engine:
        execution = await call_once(engine, template.format(port=receiver.port))
        assert execution["status"] == "failed", execution
        assert "refused by the egress policy" in execution["error"]
        [entry] = [h for h in execution["history"] if h["step"] == "call"]
        assert entry["detail"]["attempts"] == 1  # no retries
        assert receiver.requests == []


async def test_a_redirect_to_loopback_is_refused(database_url: str) -> None:
    """The first hop is allowed by name; the redirect's target is judged on its own."""
    async with Receiver() as target:

        def redirect(_n: int, _r: Delivered) -> Answer:
            return Answer(302, {"Location": f"http://127.0.0.1:{target.port}/stolen"})

        async with Receiver(redirect) as first, engine_with(database_url, "localhost") as engine:
            execution = await call_once(engine, f"http://localhost:{first.port}/hook")
            assert len(first.requests) == 1
            assert target.requests == []
            assert execution["status"] == "failed"
            assert "127.0.0.1 is a loopback address" in execution["error"]


async def test_the_allow_list_opens_exceptions(database_url: str) -> None:
    async with Receiver() as receiver, engine_with(database_url, "127.0.0.0/8") as engine:
        execution = await call_once(engine, f"http://127.0.0.1:{receiver.port}/hook")
        assert execution["status"] == "completed", execution
        assert len(receiver.requests) == 1


async def test_dns_rebinding_is_judged_on_the_address_connected_to() -> None:
    """A name that resolved to a public address when first looked at and to loopback when
    connecting is refused: the check runs on the lookup the connection uses."""
    answers = iter([["93.184.215.14"], ["127.0.0.1"]])

    async def resolver(_host: str, _port: int) -> list[str]:
        return next(answers)

    policy = EgressPolicy.parse("")
    await policy.check_url("http://rebind.example/hook", resolver)  # public now: accepted
    async with guarded_client(policy, timeout=2, resolver=resolver) as client:
        with pytest.raises(EgressRefused, match=r"rebind\.example resolves to 127\.0\.0\.1"):
            await client.get("http://rebind.example/hook")


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("100.64.0.1", "shared (carrier-grade NAT)"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fd12:3456::1", "unique-local"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("93.184.215.14", None),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", None),
    ],
)
def test_address_classes(address: str, reason: str | None) -> None:
    assert internal_reason(ipaddress.ip_address(address)) == reason
    policy = EgressPolicy.parse("10.0.0.0/8, hooks.internal")
    assert (policy.refusal(address) is None) == (reason is None or address.endswith("10.0.0.1"))
    assert policy.host_allowed("Hooks.Internal.")


async def test_the_operators_channel_is_not_restricted(database_url: str) -> None:
    """The HTTP channel's URL is the operator's: loopback is fine without the allow-list."""
    async with Receiver() as receiver:
        settings = Settings(
            database_url=database_url, email_channel="http", http_channel_url=receiver.url
        )
        sender = ExternalSender(settings)
        try:
            call = ExternalCall(
                execution_id=uuid.uuid4(),
                step_id="mail",
                kind="email",
                request={"to": "a@example.com", "subject": "s", "body": "b"},
            )
            error, _detail = await sender.perform(call)
        finally:
            await sender.aclose()
        assert error is None
        assert len(receiver.requests) == 1
