"""External calls against real servers on loopback (SPEC §2 channels, §3 at-least-once).

A real SMTP server (aiosmtpd) and a hand-written HTTP/1.1 server run inside the test; the
worker's own ``ExternalSender`` (httpx, aiosmtplib, tenacity) talks to them over TCP. Retries use
a tiny ``retry_base_seconds`` so that they take milliseconds. The lease tests drive two in-process
workers sharing one manual clock: the first "dies" (or stalls) holding the lease of an external
call, the second takes the call over once the lease has expired.

These tests use a database of this module's own, so that no execution left due by another test
module is picked up by these workers (and sent to these servers), nor the other way round.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email
import email.message
import email.policy
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import select

from revflow.app import create_app
from revflow.config import Settings
from revflow.db import Database
from revflow.engine import store
from revflow.engine.channels import ExternalSender
from revflow.engine.clock import ManualClock
from revflow.engine.interpreter import ExternalCall
from revflow.models import LIVE_STATUSES, Execution
from revflow.worker import Worker
from tests.support.databases import DatabaseFactory
from tests.support.engine import Engine
from tests.support.processes import free_port
from tests.support.tenants import make_tenant

MAX_ATTEMPTS = 3

# --------------------------------------------------------------------------------------------
# A real HTTP/1.1 server on loopback
# --------------------------------------------------------------------------------------------

REASONS = {200: "OK", 201: "Created", 404: "Not Found", 500: "Internal Server Error"}


@dataclass
class Received:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class HttpServer:
    """A minimal keep-alive HTTP/1.1 server; ``status(n)`` answers the n-th request (1-based),
    once ``hold(n)``, when given, has returned."""

    def __init__(
        self, status: Callable[[int], int], hold: Callable[[int], Awaitable[None]] | None = None
    ) -> None:
        self.status = status
        self.hold = hold
        self.requests: list[Received] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> HttpServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                request_line = await reader.readline()
                if not request_line.strip():
                    return
                method, target, _version = request_line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                body = await reader.readexactly(length) if length else b""
                self.requests.append(Received(method, target, headers, body))
                number = len(self.requests)
                if self.hold is not None:
                    await self.hold(number)
                status = self.status(number)
                payload = json.dumps({"status": status}).encode()
                writer.write(
                    (
                        f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\n"
                        "Content-Type: application/json\r\n"
                        f"Content-Length: {len(payload)}\r\n\r\n"
                    ).encode()
                    + payload
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


@asynccontextmanager
async def http_server(
    status: Callable[[int], int], hold: Callable[[int], Awaitable[None]] | None = None
) -> AsyncIterator[HttpServer]:
    server = await HttpServer(status, hold).start()
    try:
        yield server
    finally:
        await server.stop()


def fail_first(n: int, then: int = 200, failure: int = 500) -> Callable[[int], int]:
    return lambda number: failure if number <= n else then


# --------------------------------------------------------------------------------------------
# A real SMTP server on loopback
# --------------------------------------------------------------------------------------------


class Inbox:
    """aiosmtpd handler: collects messages; the first ``temporary_failures`` DATA get a 451."""

    def __init__(self, temporary_failures: int = 0) -> None:
        self.temporary_failures = temporary_failures
        self.attempts = 0
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.attempts += 1
        if self.attempts <= self.temporary_failures:
            return "451 4.3.0 Temporary failure, try again later"
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, email.message.EmailMessage)
        self.messages.append(message)
        self.envelopes.append((str(envelope.mail_from), list(envelope.rcpt_tos)))
        return "250 2.0.0 OK"


@contextlib.contextmanager
def smtp_server(handler: object) -> Any:
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


# --------------------------------------------------------------------------------------------
# Engines with settings of each test's choosing
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def channel_database_url(backend: str, database_factories: dict[str, DatabaseFactory]) -> str:
    """A database for this module only (see the module docstring)."""
    return database_factories[backend].create()


@dataclass
class Rig:
    """An app, a manual clock, and any number of in-process workers on one database."""

    engine: Engine
    db: Database
    settings: Settings
    workers: list[Worker] = field(default_factory=list)

    def worker(self, sender: ExternalSender | None = None, name: str | None = None) -> Worker:
        worker = Worker(
            self.db,
            self.settings,
            clock=self.engine.clock,
            sender=sender or ExternalSender(self.settings),
            worker_id=name,
        )
        self.workers.append(worker)
        return worker


@asynccontextmanager
async def rig(database_url: str, **overrides: Any) -> AsyncIterator[Rig]:
    values: dict[str, Any] = {
        "log_json": False,
        "retry_base_seconds": 0.01,
        "max_attempts": MAX_ATTEMPTS,
        # Beyond any pause of a loaded machine. There a full garbage collection stalls the test
        # process's event loop for seconds (receiver and worker alike), and a call answered
        # after the timeout is made again (the same Idempotency-Key: at least once), which the
        # tests that count requests would take for a doubled call. Tests that want a timeout
        # to fire set their own.
        "http_timeout_seconds": 60.0,
        # The receivers of these tests listen on loopback.
        "egress_allow": "127.0.0.0/8",
        **overrides,
    }
    settings = Settings(database_url=database_url, **values)
    clock = ManualClock(dt.datetime.now(dt.UTC).replace(microsecond=0))
    db = Database(database_url, pool_size=5)
    app = create_app(settings, db, clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://revflow.test") as client:
        tenant = await make_tenant(db, client, "channels")
        worker = Worker(db, settings, clock=clock)
        the_rig = Rig(Engine(tenant, worker, clock), db, settings, [worker])
        try:
            yield the_rig
        finally:
            for w in the_rig.workers:
                for task in list(w.engine._external_tasks):
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
                await w.sender.aclose()
            await db.dispose()


def one_step(step: dict[str, Any], after: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A manual workflow: ``step`` (id ``call``), then ``after`` (default: tag ``after``)."""
    rest = after if after is not None else [{"id": "after", "type": "add_tag", "tag": "after-call"}]
    first = {**step, "id": "call"}
    if rest:
        first["next"] = rest[0]["id"]
    return {"trigger": {"type": "manual"}, "steps": [first, *rest]}


async def start(engine: Engine, definition: dict[str, Any], **contact: Any) -> tuple[str, str]:
    """Publish ``definition``, create a contact and enroll it; answers (execution, contact)."""
    workflow = await engine.workflow(definition)
    contact_id = await engine.contact(**contact)
    enrolled = await engine.enroll(workflow, contact_id)
    assert enrolled["enrolled"] == 1, enrolled
    execution_id: str = enrolled["executions"][0]
    return execution_id, contact_id


def entries(execution: dict[str, Any], step: str) -> list[dict[str, Any]]:
    return [h for h in execution["history"] if h["step"] == step]


# --------------------------------------------------------------------------------------------
# SMTP
# --------------------------------------------------------------------------------------------


async def test_smtp_channel_sends_the_rendered_email(channel_database_url: str) -> None:
    inbox = Inbox()
    with smtp_server(inbox) as smtp:
        async with rig(
            channel_database_url,
            email_channel="smtp",
            smtp_host="127.0.0.1",
            smtp_port=smtp.port,
            smtp_sender="robot@revflow.test",
        ) as r:
            engine = r.engine
            definition = one_step(
                {
                    "type": "send_email",
                    "subject": "Hi {{contact.fields.first_name}}",
                    "body": "Welcome, {{contact.fields.first_name}} <{{contact.email}}>!",
                }
            )
            execution_id, contact_id = await start(
                engine, definition, email="ada@example.com", fields={"first_name": "Ada"}
            )
            await engine.run()
            ex = await engine.execution(execution_id)
            messages = await engine.messages(execution_id=execution_id)

    assert ex["status"] == "completed", ex
    assert len(inbox.messages) == 1
    sent = inbox.messages[0]
    assert sent["Idempotency-Key"] == f"{execution_id}:call"
    assert sent["Subject"] == "Hi Ada"
    assert sent["To"] == "ada@example.com"
    assert sent["From"] == "robot@revflow.test"
    body = sent.get_body(preferencelist=("plain",))
    assert body is not None
    assert body.get_content().strip() == "Welcome, Ada <ada@example.com>!"
    assert inbox.envelopes == [("robot@revflow.test", ["ada@example.com"])]

    sent_entries = entries(ex, "call")
    assert [h["result"] for h in sent_entries] == ["sent"]
    assert sent_entries[0]["error"] is None
    assert sent_entries[0]["detail"]["attempts"] == 1
    assert [(h["step"], h["result"]) for h in ex["history"]] == [
        ("call", "sent"),
        ("after", "done"),
    ]
    assert len(messages) == 1
    message = messages[0]
    assert message["channel"] == "smtp"
    assert message["kind"] == "email"
    assert message["to"] == "ada@example.com"
    assert message["subject"] == "Hi Ada"
    assert message["contact_id"] == contact_id
    assert message["step"] == "call"


async def test_smtp_temporary_failures_are_retried(channel_database_url: str) -> None:
    inbox = Inbox(temporary_failures=MAX_ATTEMPTS - 1)
    with smtp_server(inbox) as smtp:
        async with rig(
            channel_database_url,
            email_channel="smtp",
            smtp_host="127.0.0.1",
            smtp_port=smtp.port,
        ) as r:
            definition = one_step({"type": "send_email", "subject": "Retry", "body": "x"})
            execution_id, _ = await start(r.engine, definition, email="bob@example.com")
            await r.engine.run()
            ex = await r.engine.execution(execution_id)
            messages = await r.engine.messages(execution_id=execution_id)

    assert ex["status"] == "completed", ex
    assert inbox.attempts == MAX_ATTEMPTS
    assert len(inbox.messages) == 1
    assert inbox.messages[0]["Idempotency-Key"] == f"{execution_id}:call"
    [sent] = entries(ex, "call")
    assert sent["result"] == "sent"
    assert sent["detail"]["attempts"] == MAX_ATTEMPTS
    assert [m["channel"] for m in messages] == ["smtp"]


async def test_smtp_server_down_fails_the_execution_after_max_attempts(
    channel_database_url: str,
) -> None:
    port = free_port()  # nothing listens there
    async with rig(
        channel_database_url, email_channel="smtp", smtp_host="127.0.0.1", smtp_port=port
    ) as r:
        definition = one_step({"type": "send_email", "subject": "Down", "body": "x"})
        execution_id, _ = await start(r.engine, definition, email="carl@example.com")
        await r.engine.run()
        ex = await r.engine.execution(execution_id)
        messages = await r.engine.messages(execution_id=execution_id)

    assert ex["status"] == "failed", ex
    assert ex["finished_at"] is not None
    assert ex["error"] and "SMTP" in ex["error"]
    assert f"after {MAX_ATTEMPTS} attempts" in ex["error"]
    assert [(h["step"], h["result"]) for h in ex["history"]] == [("call", "failed")]
    [failed] = ex["history"]
    assert failed["error"] == ex["error"]
    assert failed["detail"]["attempts"] == MAX_ATTEMPTS
    assert messages == []


class RefusingRecipients:
    """aiosmtpd handler: answers RCPT TO with ``replies`` in turn (then accepts), keeps what is
    delivered."""

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.rcpt_attempts = 0
        self.delivered = 0

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.rcpt_attempts += 1
        if self.replies:
            return self.replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.delivered += 1
        return "250 2.0.0 OK"


async def test_a_permanent_smtp_refusal_fails_the_step_at_once(channel_database_url: str) -> None:
    refusing = RefusingRecipients(*["550 5.1.1 No such mailbox here"] * MAX_ATTEMPTS)
    with smtp_server(refusing) as smtp:
        async with rig(
            channel_database_url, email_channel="smtp", smtp_host="127.0.0.1", smtp_port=smtp.port
        ) as r:
            definition = one_step({"type": "send_email", "subject": "Nobody", "body": "x"})
            execution_id, _ = await start(r.engine, definition, email="nobody@example.com")
            await r.engine.run()
            ex = await r.engine.execution(execution_id)
            messages = await r.engine.messages(execution_id=execution_id)

    assert refusing.rcpt_attempts == 1
    assert refusing.delivered == 0
    assert ex["status"] == "failed", ex
    assert "550" in ex["error"] and "No such mailbox here" in ex["error"], ex["error"]
    [failed] = ex["history"]
    assert (failed["step"], failed["result"]) == ("call", "failed")
    assert failed["detail"]["attempts"] == 1
    assert failed["error"] == ex["error"]
    assert messages == []


async def test_a_temporary_smtp_refusal_of_the_recipient_is_retried(
    channel_database_url: str,
) -> None:
    refusing = RefusingRecipients("451 4.7.1 Greylisted, try again later")
    with smtp_server(refusing) as smtp:
        async with rig(
            channel_database_url, email_channel="smtp", smtp_host="127.0.0.1", smtp_port=smtp.port
        ) as r:
            definition = one_step({"type": "send_email", "subject": "Later", "body": "x"})
            execution_id, _ = await start(r.engine, definition, email="grey@example.com")
            await r.engine.run()
            ex = await r.engine.execution(execution_id)

    assert refusing.rcpt_attempts == 2
    assert refusing.delivered == 1
    assert ex["status"] == "completed", ex
    [sent] = entries(ex, "call")
    assert (sent["result"], sent["detail"]["attempts"]) == ("sent", 2)


# --------------------------------------------------------------------------------------------
# http_request steps
# --------------------------------------------------------------------------------------------


async def test_http_request_succeeds_after_transient_500s(channel_database_url: str) -> None:
    failures = 3
    async with (
        http_server(fail_first(failures)) as server,
        rig(channel_database_url, max_attempts=5) as r,
    ):
        definition = one_step({"type": "http_request", "url": f"{server.url}/hook?c=1"})
        execution_id, _ = await start(r.engine, definition, email="dee@example.com")
        await r.engine.run()
        ex = await r.engine.execution(execution_id)

    assert ex["status"] == "completed", ex
    assert len(server.requests) == failures + 1
    keys = {request.headers.get("idempotency-key") for request in server.requests}
    assert keys == {f"{execution_id}:call"}
    assert {(request.method, request.path) for request in server.requests} == {
        ("POST", "/hook?c=1")
    }
    assert len({request.body for request in server.requests}) == 1  # the same request each time
    [done] = entries(ex, "call")
    assert done["result"] == "done"
    assert done["error"] is None
    assert done["detail"]["attempts"] == failures + 1
    assert done["detail"]["status_code"] == 200
    assert [(h["step"], h["result"]) for h in ex["history"]] == [
        ("call", "done"),
        ("after", "done"),
    ]


async def test_http_request_always_failing_fails_after_max_attempts(
    channel_database_url: str,
) -> None:
    async with (
        http_server(lambda _n: 500) as server,
        rig(channel_database_url) as r,
    ):
        definition = one_step({"type": "http_request", "url": f"{server.url}/down"})
        execution_id, _ = await start(r.engine, definition, email="eve@example.com")
        await r.engine.run()
        ex = await r.engine.execution(execution_id)

    assert ex["status"] == "failed", ex
    assert len(server.requests) == MAX_ATTEMPTS
    assert {r.headers.get("idempotency-key") for r in server.requests} == {f"{execution_id}:call"}
    assert ex["error"] and "HTTP 500" in ex["error"]
    assert f"after {MAX_ATTEMPTS} attempts" in ex["error"]
    assert [(h["step"], h["result"]) for h in ex["history"]] == [("call", "failed")]
    assert ex["history"][0]["detail"]["attempts"] == MAX_ATTEMPTS
    assert ex["history"][0]["error"] == ex["error"]


async def test_http_request_step_max_attempts_overrides_the_setting(
    channel_database_url: str,
) -> None:
    async with (
        http_server(lambda _n: 503) as server,
        rig(channel_database_url, max_attempts=5) as r,
    ):
        definition = one_step({"type": "http_request", "url": f"{server.url}/x", "max_attempts": 2})
        execution_id, _ = await start(r.engine, definition, email="fay@example.com")
        await r.engine.run()
        ex = await r.engine.execution(execution_id)

    assert ex["status"] == "failed", ex
    assert len(server.requests) == 2
    assert ex["history"][-1]["detail"]["attempts"] == 2


async def test_http_request_answered_after_the_timeout_is_made_again(
    channel_database_url: str,
) -> None:
    """A call whose answer comes too late is retried: the same request with the same
    Idempotency-Key, every attempt counted in the history (SPEC §3 at least once)."""
    retried = asyncio.Event()

    async def hold(number: int) -> None:
        if number > 1:
            retried.set()
            return
        # The first answer comes only once the retry is in: its attempt has timed out for sure.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(retried.wait(), 30)

    async with (
        http_server(lambda _n: 201, hold) as server,
        rig(channel_database_url, http_timeout_seconds=0.5) as r,
    ):
        definition = one_step({"type": "http_request", "url": f"{server.url}/slow"})
        execution_id, _ = await start(r.engine, definition, email="tim@example.com")
        await r.engine.run()
        ex = await r.engine.execution(execution_id)

    assert ex["status"] == "completed", ex
    [done] = entries(ex, "call")
    assert (done["result"], done["detail"]["status_code"]) == ("done", 201)
    # Never more requests than attempts (an attempt cut short before it was sent sends none).
    assert 2 <= len(server.requests) <= done["detail"]["attempts"]
    keys = {request.headers["idempotency-key"] for request in server.requests}
    assert keys == {f"{execution_id}:call"}
    assert len({(r.method, r.path, r.body) for r in server.requests}) == 1


async def test_http_request_404_fails_at_once(channel_database_url: str) -> None:
    async with (
        http_server(lambda _n: 404) as server,
        rig(channel_database_url, max_attempts=5) as r,
    ):
        definition = one_step({"type": "http_request", "url": f"{server.url}/missing"})
        execution_id, _ = await start(r.engine, definition, email="gus@example.com")
        await r.engine.run()
        ex = await r.engine.execution(execution_id)

    assert ex["status"] == "failed", ex
    assert len(server.requests) == 1
    assert ex["error"] and "HTTP 404" in ex["error"]
    assert [(h["step"], h["result"]) for h in ex["history"]] == [("call", "failed")]
    assert ex["history"][0]["detail"]["attempts"] == 1


async def test_http_request_default_body_is_the_contact(channel_database_url: str) -> None:
    async with http_server(lambda _n: 200) as server, rig(channel_database_url) as r:
        definition = one_step({"type": "http_request", "url": f"{server.url}/contacts"})
        contact = {
            "email": "hal@example.com",
            "phone": "+15550001",
            "external_id": "crm-42",
            "fields": {"first_name": "Hal", "score": 7},
            "tags": ["lead"],
        }
        execution_id, contact_id = await start(r.engine, definition, **contact)
        await r.engine.run()
        ex = await r.engine.execution(execution_id)

    assert ex["status"] == "completed", ex
    [request] = server.requests
    assert request.method == "POST"
    assert request.headers["content-type"].startswith("application/json")
    assert request.headers["idempotency-key"] == f"{execution_id}:call"
    sent = request.json()
    assert sent == {
        "contact": {
            "id": contact_id,
            "email": "hal@example.com",
            "phone": "+15550001",
            "external_id": "crm-42",
            "fields": {"first_name": "Hal", "score": 7},
            "tags": ["lead"],
        }
    }


async def test_http_request_custom_body_and_headers_are_rendered(
    channel_database_url: str,
) -> None:
    async with http_server(lambda _n: 201) as server, rig(channel_database_url) as r:
        definition = one_step(
            {
                "type": "http_request",
                "url": f"{server.url}/people/{{{{contact.external_id}}}}",
                "method": "PUT",
                "headers": {"X-Source": "revflow"},
                "body": {"name": "{{contact.fields.first_name}}", "n": [1, "{{contact.email}}"]},
            }
        )
        execution_id, _ = await start(
            r.engine,
            definition,
            email="ida@example.com",
            external_id="p-7",
            fields={"first_name": "Ida"},
        )
        await r.engine.run()
        ex = await r.engine.execution(execution_id)

    assert ex["status"] == "completed", ex
    [request] = server.requests
    assert (request.method, request.path) == ("PUT", "/people/p-7")
    assert request.headers["x-source"] == "revflow"
    assert request.headers["idempotency-key"] == f"{execution_id}:call"
    assert request.json() == {"name": "Ida", "n": [1, "ida@example.com"]}
    assert entries(ex, "call")[0]["detail"]["status_code"] == 201


# --------------------------------------------------------------------------------------------
# The HTTP channel (SMS, email)
# --------------------------------------------------------------------------------------------


async def test_http_channel_delivers_sms(channel_database_url: str) -> None:
    async with (
        http_server(fail_first(1)) as server,
        rig(channel_database_url, sms_channel="http", http_channel_url=f"{server.url}/sms") as r,
    ):
        definition = one_step(
            {"type": "send_sms", "body": "Code for {{contact.fields.first_name}}: 1234"}
        )
        execution_id, contact_id = await start(
            r.engine, definition, phone="+15551234", fields={"first_name": "Jo"}
        )
        await r.engine.run()
        ex = await r.engine.execution(execution_id)
        messages = await r.engine.messages(execution_id=execution_id)

    assert ex["status"] == "completed", ex
    assert len(server.requests) == 2  # one 500, then delivered
    assert {r.headers["idempotency-key"] for r in server.requests} == {f"{execution_id}:call"}
    request = server.requests[-1]
    assert (request.method, request.path) == ("POST", "/sms")
    payload = request.json()
    assert payload["kind"] == "sms"
    assert payload["to"] == "+15551234"
    assert payload["body"] == "Code for Jo: 1234"
    assert payload["execution_id"] == execution_id
    assert payload["contact_id"] == contact_id
    assert payload["step"] == "call"
    [sent] = entries(ex, "call")
    assert sent["result"] == "sent"
    assert sent["detail"]["attempts"] == 2
    assert len(messages) == 1
    assert messages[0]["channel"] == "http"
    assert messages[0]["kind"] == "sms"
    assert messages[0]["to"] == "+15551234"
    assert messages[0]["body"] == "Code for Jo: 1234"


async def test_http_channel_sms_without_phone_is_skipped(channel_database_url: str) -> None:
    async with (
        http_server(lambda _n: 200) as server,
        rig(channel_database_url, sms_channel="http", http_channel_url=f"{server.url}/sms") as r,
    ):
        definition = one_step({"type": "send_sms", "body": "hi"})
        execution_id, _ = await start(r.engine, definition, email="nophone@example.com")
        await r.engine.run()
        ex = await r.engine.execution(execution_id)

    assert ex["status"] == "completed", ex
    assert server.requests == []
    assert [(h["step"], h["result"]) for h in ex["history"]] == [
        ("call", "skipped"),
        ("after", "done"),
    ]


async def test_http_channel_delivers_email(channel_database_url: str) -> None:
    async with (
        http_server(lambda _n: 200) as server,
        rig(channel_database_url, email_channel="http", http_channel_url=f"{server.url}/mail") as r,
    ):
        definition = one_step({"type": "send_email", "subject": "S {{contact.email}}", "body": "B"})
        execution_id, _ = await start(r.engine, definition, email="kim@example.com")
        await r.engine.run()
        ex = await r.engine.execution(execution_id)
        messages = await r.engine.messages(execution_id=execution_id)

    assert ex["status"] == "completed", ex
    [request] = server.requests
    assert request.headers["idempotency-key"] == f"{execution_id}:call"
    assert request.json()["subject"] == "S kim@example.com"
    assert [(m["channel"], m["kind"]) for m in messages] == [("http", "email")]


# --------------------------------------------------------------------------------------------
# Leases: a worker that dies (or stalls) holding an external call
# --------------------------------------------------------------------------------------------


class GatedSender(ExternalSender):
    """The real sender, held before each call until ``gate`` opens (forever if it never does)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()
        self.calls = 0

    async def perform(self, call: ExternalCall) -> tuple[str | None, dict[str, Any]]:
        self.calls += 1
        self.waiting.set()
        await self.gate.wait()
        return await super().perform(call)


LEASE_SECONDS = 60


def leased_definition(url: str) -> dict[str, Any]:
    return one_step(
        {"type": "http_request", "url": url},
        [
            {"id": "after", "type": "add_tag", "tag": "after-call", "next": "note"},
            {"id": "note", "type": "send_email", "subject": "done", "body": "once"},
        ],
    )


async def test_a_dead_workers_lease_is_taken_over_after_it_expires(
    channel_database_url: str,
) -> None:
    async with (
        http_server(lambda _n: 200) as server,
        rig(channel_database_url, lease_seconds=LEASE_SECONDS) as r,
    ):
        engine = r.engine
        execution_id, _ = await start(
            engine, leased_definition(f"{server.url}/hook"), email="lee@example.com"
        )
        doomed_sender = GatedSender(r.settings)  # its gate never opens
        doomed = r.worker(doomed_sender, name="doomed")
        claimed = await doomed.run_once()
        assert (claimed.executions, claimed.external) == (1, 1)
        await asyncio.wait_for(doomed_sender.waiting.wait(), 10)
        # The worker dies in the middle of its call: its task is gone, its lease stays behind.
        for task in list(doomed.engine._external_tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        survivor = engine.worker

        # Before the lease expires nobody else touches the execution.
        engine.clock.advance(dt.timedelta(seconds=LEASE_SECONDS - 1))
        assert (await survivor.drain()).executions == 0
        ex = await engine.execution(execution_id)
        assert (ex["status"], ex["current_step"], ex["history"]) == ("active", "call", [])
        assert server.requests == []

        # Once it has expired another worker takes the call over and runs the rest.
        engine.clock.advance(dt.timedelta(seconds=2))
        taken = await survivor.drain()
        assert taken.external == 1
        ex = await engine.execution(execution_id)
        messages = await engine.messages(execution_id=execution_id)
        assert (await survivor.drain()).executions == 0

    assert ex["status"] == "completed", ex
    assert len(server.requests) == 1
    assert server.requests[0].headers["idempotency-key"] == f"{execution_id}:call"
    assert [(h["step"], h["result"]) for h in ex["history"]] == [
        ("call", "done"),
        ("after", "done"),
        ("note", "sent"),
    ]
    assert [m["step"] for m in messages] == ["note"]


async def test_a_stalled_worker_that_lost_its_lease_records_nothing(
    channel_database_url: str,
) -> None:
    """At least once, recorded once: the late worker's call is fenced off by the lease."""
    async with (
        http_server(lambda _n: 200) as server,
        rig(channel_database_url, lease_seconds=LEASE_SECONDS) as r,
    ):
        engine = r.engine
        execution_id, _ = await start(
            engine, leased_definition(f"{server.url}/hook"), email="max@example.com"
        )
        slow_sender = GatedSender(r.settings)
        slow = r.worker(slow_sender, name="slow")
        assert (await slow.run_once()).external == 1
        await asyncio.wait_for(slow_sender.waiting.wait(), 10)

        engine.clock.advance(dt.timedelta(seconds=LEASE_SECONDS + 1))
        second_sender = GatedSender(r.settings)
        second = r.worker(second_sender, name="second")
        assert (await second.run_once()).external == 1  # the expired lease is taken over
        await asyncio.wait_for(second_sender.waiting.wait(), 10)

        # The stalled worker comes back: its call goes out, but its result is not recorded.
        slow_sender.gate.set()
        await asyncio.wait_for(asyncio.gather(*slow.engine._external_tasks), 30)
        assert len(server.requests) == 1
        ex = await engine.execution(execution_id)
        assert (ex["status"], ex["current_step"], ex["history"]) == ("active", "call", [])

        # The worker holding the lease records it, and the execution runs on exactly once.
        second_sender.gate.set()
        await asyncio.wait_for(asyncio.gather(*second.engine._external_tasks), 30)
        await second.drain()
        await slow.drain()
        ex = await engine.execution(execution_id)
        messages = await engine.messages(execution_id=execution_id)

    assert ex["status"] == "completed", ex
    assert len(server.requests) == 2
    assert {r.headers["idempotency-key"] for r in server.requests} == {f"{execution_id}:call"}
    assert [(h["step"], h["result"]) for h in ex["history"]] == [
        ("call", "done"),
        ("after", "done"),
        ("note", "sent"),
    ]
    assert [m["step"] for m in messages] == ["note"]
    assert (slow_sender.calls, second_sender.calls) == (1, 1)


async def test_an_external_call_in_flight_is_not_claimed_again(
    channel_database_url: str,
) -> None:
    """While a live worker holds the lease, other workers (and itself) leave the execution."""
    async with (
        http_server(lambda _n: 200) as server,
        rig(channel_database_url, lease_seconds=LEASE_SECONDS) as r,
    ):
        engine = r.engine
        execution_id, _ = await start(
            engine, leased_definition(f"{server.url}/hook"), email="ned@example.com"
        )
        sender = GatedSender(r.settings)
        holder = r.worker(sender, name="holder")
        assert (await holder.run_once()).external == 1
        await asyncio.wait_for(sender.waiting.wait(), 10)
        engine.clock.advance(dt.timedelta(seconds=LEASE_SECONDS // 2))
        assert (await engine.worker.run_once()).executions == 0
        assert (await holder.run_once()).executions == 0
        sender.gate.set()
        await asyncio.wait_for(asyncio.gather(*holder.engine._external_tasks), 30)
        await holder.drain()
        ex = await engine.execution(execution_id)

    assert ex["status"] == "completed", ex
    assert len(server.requests) == 1
    assert sender.calls == 1


SHORT_LEASE = 3  # seconds: a worker extends it every second of real time


@dataclass
class HeldCall:
    """An execution whose call a worker holds at the gate, under a short lease."""

    rig: Rig
    server: HttpServer
    execution_id: str
    sender: GatedSender
    worker: Worker


@asynccontextmanager
async def held_call(database_url: str, worker: str, email: str) -> AsyncIterator[HeldCall]:
    async with (
        http_server(lambda _n: 200) as server,
        rig(database_url, lease_seconds=SHORT_LEASE) as r,
    ):
        execution_id, _ = await start(
            r.engine, leased_definition(f"{server.url}/hook"), email=email
        )
        sender = GatedSender(r.settings)
        holder = r.worker(sender, name=worker)
        assert (await holder.run_once()).external == 1
        await asyncio.wait_for(sender.waiting.wait(), 10)
        yield HeldCall(r, server, execution_id, sender, holder)


async def test_a_call_that_outlasts_its_lease_keeps_it_while_its_worker_lives(
    channel_database_url: str,
) -> None:
    """A call retried with backoff can take longer than a lease: its live worker extends the
    lease (every third of one), so no other worker makes the call again meanwhile."""
    lease = dt.timedelta(seconds=SHORT_LEASE)
    async with held_call(channel_database_url, "holder", "kay@example.com") as held:
        db, engine, execution_id = held.rig.db, held.rig.engine, held.execution_id
        [(first_owner, first_expiry)] = await leases(db, execution_id)
        assert first_owner == "holder"

        # Over two leases' time passes on the clock, a lease less a second at a time; the
        # worker extends the lease each time, and the other worker finds the execution leased.
        expiry = first_expiry
        for _ in range(4):
            engine.clock.advance(lease - dt.timedelta(seconds=1))
            expiry = await extended_beyond(db, execution_id, expiry)
            assert expiry == engine.clock.now() + lease
            assert (await engine.worker.run_once()).executions == 0
        assert engine.clock.now() > first_expiry + lease

        # The call ends: recorded once, the lease cleared, the execution runs on.
        held.sender.gate.set()
        await asyncio.wait_for(asyncio.gather(*held.worker.engine._external_tasks), 30)
        await held.worker.drain()
        ex = await engine.execution(execution_id)
        assert await leases(db, execution_id) == []  # a finished execution: not live

    assert ex["status"] == "completed", ex
    assert len(held.server.requests) == 1
    assert held.sender.calls == 1
    assert [(h["step"], h["result"]) for h in ex["history"]] == [
        ("call", "done"),
        ("after", "done"),
        ("note", "sent"),
    ]


async def test_a_dead_workers_lease_is_not_extended(channel_database_url: str) -> None:
    async with held_call(channel_database_url, "doomed", "dee@example.com") as held:
        db, engine, execution_id = held.rig.db, held.rig.engine, held.execution_id
        engine.clock.advance(dt.timedelta(seconds=SHORT_LEASE - 1))
        await extended_beyond(db, execution_id, (await leases(db, execution_id))[0][1])
        for task in list(held.worker.engine._external_tasks):  # the worker dies
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        [(_, expiry)] = await leases(db, execution_id)
        await asyncio.sleep(SHORT_LEASE / 3 * 2)  # two rounds of extending, had it lived
        assert await leases(db, execution_id) == [("doomed", expiry)]
        engine.clock.advance(dt.timedelta(seconds=SHORT_LEASE + 1))
        assert (await engine.worker.drain()).external == 1  # taken over once expired
        ex = await engine.execution(execution_id)

    assert ex["status"] == "completed", ex
    assert len(held.server.requests) == 1


async def test_extending_a_lease_leaves_an_execution_another_transaction_holds(
    backend: str, channel_database_url: str
) -> None:
    """The worker recording a call locks its execution (in id order); extending the leases of
    the others meanwhile must not wait for it, which could deadlock with the recording."""
    if backend == "sqlite":
        pytest.skip("SQLite has no row locks: its one writer holds the database")
    async with held_call(channel_database_url, "holder", "held@example.com") as held:
        db, execution_id = held.rig.db, held.execution_id
        [(_, expiry)] = await leases(db, execution_id)
        key = (uuid.UUID(held.rig.engine.tenant.account_id), uuid.UUID(execution_id))
        later = expiry + dt.timedelta(hours=1)

        async def extend() -> int:
            async with db.session(write=True) as session:
                moved = await store.extend_leases(session, [key], lease_owner="holder", until=later)
                await session.commit()
                return moved

        async with db.session(write=True) as recording:
            await store.lock_executions(recording, [key], lease_owner="holder")
            assert await asyncio.wait_for(extend(), 10) == 0
        assert await extend() == 1
        assert await leases(db, execution_id) == [("holder", later)]
        held.sender.gate.set()
        await asyncio.wait_for(asyncio.gather(*held.worker.engine._external_tasks), 30)


async def leases(db: Database, execution_id: str) -> list[tuple[str | None, dt.datetime]]:
    """The (owner, expiry) of the lease of a live execution; none for a finished one."""
    async with db.session() as session:
        rows = await session.execute(
            select(Execution.lease_owner, Execution.lease_expires_at).where(
                Execution.id == uuid.UUID(execution_id), Execution.status.in_(LIVE_STATUSES)
            )
        )
        return [(owner, expiry) for owner, expiry in rows]


async def extended_beyond(db: Database, execution_id: str, expiry: dt.datetime) -> dt.datetime:
    """Wait (real time: the worker extends every third of a lease) for a later expiry."""
    for _ in range(200):
        [(_, now_expiry)] = await leases(db, execution_id)
        if now_expiry > expiry:
            return now_expiry
        await asyncio.sleep(0.05)
    raise AssertionError(f"the lease of {execution_id} was not extended beyond {expiry}")


async def test_a_url_made_invalid_by_contact_data_fails_only_that_execution(
    channel_database_url: str,
) -> None:
    """A call that cannot even be sent fails its execution; the batch's other calls go on."""
    async with http_server(lambda _n: 200) as server, rig(channel_database_url) as r:
        engine = r.engine
        workflow = await engine.workflow(
            one_step(
                {"type": "http_request", "url": f"{server.url}/people/{{{{contact.fields.slug}}}}"}
            )
        )
        good = await engine.contact(email="ok@example.com", fields={"slug": "ok"})
        # Placeholders are percent-encoded (a tab cannot break the URL any more), but no URL
        # may be longer than 65,536 characters: this one cannot even be sent.
        tab = await engine.contact(email="tab@example.com", fields={"slug": "tab\there"})
        bad = await engine.contact(email="bad@example.com", fields={"slug": "x" * 70_000})
        enrolled = await engine.enroll(workflow, good, tab, bad)
        good_ex, tab_ex, bad_ex = enrolled["executions"]
        first = await engine.worker.run_once(wait_external=True)
        assert first.external == 3  # every call was handed out in one batch
        await engine.run()
        good_after = await engine.execution(good_ex)
        tab_after = await engine.execution(tab_ex)
        bad_after = await engine.execution(bad_ex)

    assert good_after["status"] == tab_after["status"] == "completed", (good_after, tab_after)
    assert [(h["step"], h["result"]) for h in good_after["history"]] == [
        ("call", "done"),
        ("after", "done"),
    ]
    assert sorted(request.path for request in server.requests) == [
        "/people/ok",
        "/people/tab%09here",
    ]
    assert bad_after["status"] == "failed", bad_after
    assert bad_after["error"] and "URL" in bad_after["error"]
    assert [(h["step"], h["result"]) for h in bad_after["history"]] == [("call", "failed")]
