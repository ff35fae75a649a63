"""``POST /workflows/{id}/versions/{n}/simulate`` (SPEC §11): the path, messages, requests,
goals and final state of one contact's run on a simulated clock — the same as the worker's —
and nothing written or sent."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from unittest.mock import ANY

import httpx
import pytest
from sqlalchemy import func, select

from revflow.app import create_app
from revflow.config import Settings
from revflow.db import Base, Database
from revflow.engine.channels import ExternalSender
from revflow.engine.clock import ManualClock
from tests.engine.test_channels import Inbox, smtp_server
from tests.support.engine import Engine
from tests.support.problems import assert_problem
from tests.support.tenants import Tenant, make_tenant
from tests.webhooks.receiver import Receiver

API = "/api/v1"
START = dt.datetime(2030, 1, 1, 9, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
ADA = {
    "email": "ada@example.com",
    "phone": "+15550100",
    "fields": {"first_name": "Ada"},
}


def welcome() -> dict[str, Any]:
    """Welcome, wait two days, an offer for VIPs or nurture for the others, a reminder five
    days later; a purchase jumps to the thank-you."""
    return {
        "trigger": {"type": "tag_added", "tag": "lead"},
        "start": "welcome",
        "steps": [
            {
                "id": "welcome",
                "type": "send_email",
                "subject": "Welcome, {{contact.fields.first_name}}!",
                "body": "Hello {{contact.email}}",
                "next": "pause",
            },
            {"id": "pause", "type": "wait", "duration": "2d", "next": "is_vip"},
            {
                "id": "is_vip",
                "type": "condition",
                "if": {"field": "tags", "op": "contains", "value": "vip"},
                "then": "vip_offer",
                "else": "nurture",
            },
            {
                "id": "vip_offer",
                "type": "send_sms",
                "body": "{{contact.fields.first_name}}, 20% off: VIP20",
                "next": "follow_up",
            },
            {"id": "nurture", "type": "add_tag", "tag": "nurture", "next": "follow_up"},
            {"id": "follow_up", "type": "wait", "duration": "5d", "next": "reminder"},
            {"id": "reminder", "type": "send_email", "subject": "Still there?", "body": "..."},
            {"id": "thank_you", "type": "send_email", "subject": "Thank you!", "body": "Soon."},
        ],
        "goals": [{"id": "purchased", "event": "purchase", "then": "thank_you"}],
    }


def iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def when(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def trail(path: list[dict[str, Any]]) -> list[tuple[dt.datetime, str, str, dict[str, Any]]]:
    return [(when(e["at"]), e["step"], e["result"], e["detail"]) for e in path]


def waiting(until: dt.datetime) -> dict[str, Any]:
    return {"kind": "duration", "wake_at": until.isoformat()}


SENT = {"channel": "outbox", "message_id": ANY}


async def simulate(
    tenant: Tenant, workflow_id: str, body: dict[str, Any], number: int = 1, key: str | None = None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return await tenant.request(
        "POST",
        f"{API}/workflows/{workflow_id}/versions/{number}/simulate",
        json=body,
        headers=headers,
    )


async def simulated(tenant: Tenant, workflow_id: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await simulate(tenant, workflow_id, body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


# --- the path, the messages, the goals ---------------------------------------------------------


async def test_a_vip_gets_the_offer_and_the_purchase_reaches_the_goal(engine: Engine) -> None:
    wf = await engine.workflow(welcome(), publish=False)  # a draft can be tried out
    answer = await simulated(
        engine.tenant,
        wf,
        {
            "contact": {**ADA, "tags": ["vip"]},
            "start": iso(START),
            "timeline": [{"after": "3d", "name": "purchase", "data": {"total": 42}}],
        },
    )
    assert trail(answer["path"]) == [
        (START, "welcome", "sent", SENT),
        (START, "pause", "waiting", waiting(START + 2 * DAY)),
        (START + 2 * DAY, "pause", "woke", {}),
        (START + 2 * DAY, "is_vip", "branch", {"result": "then"}),
        (START + 2 * DAY, "vip_offer", "sent", SENT),
        (START + 2 * DAY, "follow_up", "waiting", waiting(START + 7 * DAY)),
        (START + 3 * DAY, "follow_up", "cut_short", {"goal": "purchased"}),
        (START + 3 * DAY, "purchased", "goal", {"then": "thank_you"}),
        (START + 3 * DAY, "thank_you", "sent", SENT),
    ]
    assert [
        (when(m["at"]), m["step"], m["kind"], m["to"], m["subject"], m["body"])
        for m in answer["messages"]
    ] == [
        (START, "welcome", "email", "ada@example.com", "Welcome, Ada!", "Hello ada@example.com"),
        (START + 2 * DAY, "vip_offer", "sms", "+15550100", None, "Ada, 20% off: VIP20"),
        (START + 3 * DAY, "thank_you", "email", "ada@example.com", "Thank you!", "Soon."),
    ]
    # Each message is the one its step's entry names.
    sent = [e["detail"]["message_id"] for e in answer["path"] if e["result"] == "sent"]
    assert sent == [m["id"] for m in answer["messages"]]
    assert answer["goals"] == [
        {"at": iso(START + 3 * DAY), "goal": "purchased", "then": "thank_you"}
    ]
    assert answer["http_requests"] == []
    assert answer["final"] == {
        "status": "completed",
        "outcome": "completed",
        "current_step": "thank_you",
        "wake_at": None,
        "finished_at": iso(START + 3 * DAY),
        "error": None,
        "contact": {"id": None, "external_id": None, **ADA, "tags": ["vip"]},
    }
    assert (answer["steps"], answer["stopped_reason"]) == (6, "finished")
    assert (answer["start"], answer["until"]) == (iso(START), iso(START + 90 * DAY))
    assert (answer["workflow_id"], answer["version"]) == (wf, 1)


async def test_the_others_are_nurtured_and_reminded(engine: Engine) -> None:
    wf = await engine.workflow(welcome())
    answer = await simulated(
        engine.tenant,
        wf,
        {
            "contact": {**ADA, "tags": ["lead"]},
            "start": iso(START),
            "until": "10d",
            "timeline": [
                {"after": "1d", "fields": {"plan": "pro"}, "add_tags": ["newsletter"]},
                {"at": iso(START + 9 * DAY), "remove_tags": ["lead"]},
            ],
        },
    )
    assert trail(answer["path"]) == [
        (START, "welcome", "sent", SENT),
        (START, "pause", "waiting", waiting(START + 2 * DAY)),
        (START + 2 * DAY, "pause", "woke", {}),
        (START + 2 * DAY, "is_vip", "branch", {"result": "else"}),
        (START + 2 * DAY, "nurture", "done", {"tag": "nurture", "changed": True}),
        (START + 2 * DAY, "follow_up", "waiting", waiting(START + 7 * DAY)),
        (START + 7 * DAY, "follow_up", "woke", {}),
        (START + 7 * DAY, "reminder", "sent", SENT),
    ]
    assert [(when(m["at"]), m["step"]) for m in answer["messages"]] == [
        (START, "welcome"),
        (START + 7 * DAY, "reminder"),
    ]
    assert answer["goals"] == []
    final = answer["final"]
    assert (final["status"], final["outcome"], final["current_step"]) == (
        "completed",
        "completed",
        "reminder",
    )
    # The timeline's later change still reaches the contact after the execution finished.
    assert final["contact"]["fields"] == {"first_name": "Ada", "plan": "pro"}
    assert final["contact"]["tags"] == ["newsletter", "nurture"]
    assert (answer["until"], answer["stopped_reason"]) == (iso(START + 10 * DAY), "finished")


async def test_the_simulated_path_is_the_path_the_worker_takes(engine: Engine) -> None:
    """The same contact and events, once simulated and once run for real by the worker."""
    definition = {**welcome(), "trigger": {"type": "manual"}}
    wf = await engine.workflow(definition)
    start = engine.clock.now()
    answer = await simulated(
        engine.tenant,
        wf,
        {"contact": {**ADA, "tags": ["vip"]}, "timeline": [{"after": "3d", "name": "purchase"}]},
    )
    assert when(answer["start"]) == start  # the injected clock's now
    contact = await engine.contact(**ADA, tags=["vip"])
    [execution] = (await engine.enroll(wf, contact))["executions"]
    await engine.run()
    await engine.advance(days=2)
    await engine.advance(days=1)
    event = await engine.tenant.request(
        "POST", f"{API}/events", json={"contact_id": contact, "name": "purchase"}
    )
    assert event.status_code == 202, event.text
    await engine.run()
    real = await engine.execution(execution)

    def unnamed(path: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        """The trail without message ids (each run makes its own)."""
        return [(*entry[:3], {**entry[3], "message_id": None}) for entry in trail(path)]

    assert unnamed(real["history"]) == unnamed(answer["path"])
    assert [e["error"] for e in real["history"]] == [e["error"] for e in answer["path"]]
    for member in ("status", "outcome", "current_step", "wake_at", "finished_at"):
        assert real[member] == answer["final"][member] or when(real[member]) == when(
            answer["final"][member]
        ), member


# --- a stored contact --------------------------------------------------------------------------


async def test_a_stored_contact_is_read_and_left_as_it_was(engine: Engine) -> None:
    wf = await engine.workflow(welcome())
    # Tagged "lead": the workflow's trigger enrolls it, so it has an execution of its own.
    contact = await engine.contact(**ADA, external_id="crm-7", tags=["vip", "lead"])
    before = (await engine.tenant.request("GET", f"{API}/contacts/{contact}")).json()
    executions = await engine.executions(wf)
    assert len(executions) == 1
    answer = await simulated(
        engine.tenant,
        wf,
        {
            "contact_id": contact,
            "start": iso(START),
            "until": iso(START + 4 * DAY),
            "timeline": [{"after": "1d", "remove_tags": ["vip"], "email": "ada@new.example"}],
        },
    )
    assert trail(answer["path"])[3:5] == [
        (START + 2 * DAY, "is_vip", "branch", {"result": "else"}),
        (START + 2 * DAY, "nurture", "done", {"tag": "nurture", "changed": True}),
    ]
    assert answer["final"]["contact"] == {
        "id": contact,
        "external_id": "crm-7",
        "email": "ada@new.example",
        "phone": ADA["phone"],
        "fields": ADA["fields"],
        "tags": ["lead", "nurture"],
    }
    assert (answer["final"]["status"], answer["final"]["current_step"]) == ("waiting", "follow_up")
    assert answer["final"]["wake_at"] == iso(START + 7 * DAY)
    assert answer["stopped_reason"] == "until"
    after = (await engine.tenant.request("GET", f"{API}/contacts/{contact}")).json()
    assert after == before
    assert await engine.executions(wf) == executions
    assert await engine.messages(contact_id=contact) == []


async def test_a_viewer_may_simulate(engine: Engine) -> None:
    wf = await engine.workflow(welcome())
    viewer = await engine.tenant.key_for("viewer", "marketer@example.com")
    response = await simulate(engine.tenant, wf, {"contact": ADA}, key=viewer)
    assert response.status_code == 200, response.text


async def test_a_simulation_takes_no_write_lock(engine: Engine, db: Database) -> None:
    """While another transaction holds the database's write lock (SQLite's only one), a
    simulation still answers: it reads in a read transaction."""
    wf = await engine.workflow(welcome())
    async with db.session(write=True) as holder:
        await holder.execute(select(1))
        response = await asyncio.wait_for(simulate(engine.tenant, wf, {"contact": ADA}), 10)
    assert response.status_code == 200, response.text


# --- requests and channels: reported, never made -----------------------------------------------


@asynccontextmanager
async def channel_app(
    database_url: str, receiver: Receiver, smtp_port: int
) -> AsyncIterator[Tenant]:
    """The application with real channels: SMTP for email, HTTP for SMS."""
    settings = Settings(
        database_url=database_url,
        log_json=False,
        email_channel="smtp",
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        sms_channel="http",
        http_channel_url=receiver.url,
        egress_allow="127.0.0.0/8",
    )
    db = Database(database_url, pool_size=2)
    app = create_app(settings, db, clock=ManualClock(START))
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://revflow.test") as client:
            yield await make_tenant(db, client, "channels")
    finally:
        await db.dispose()


async def row_counts(db: Database) -> dict[str, int]:
    async with db.session() as session:
        return {
            table.name: (
                await session.execute(select(func.count()).select_from(table))
            ).scalar_one()
            for table in Base.metadata.sorted_tables
        }


async def test_requests_and_messages_are_reported_and_nothing_is_sent_or_written(
    database_url: str, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    performed: list[Any] = []

    async def spy(self: ExternalSender, call: Any) -> tuple[str | None, dict[str, Any]]:
        performed.append(call)
        return None, {}

    monkeypatch.setattr(ExternalSender, "perform", spy)
    inbox = Inbox()
    with smtp_server(inbox) as smtp:
        async with Receiver() as receiver, channel_app(database_url, receiver, smtp.port) as tenant:
            definition = {
                "trigger": {"type": "manual"},
                "steps": [
                    {
                        "id": "notify",
                        "type": "http_request",
                        "url": receiver.url + "/{{contact.external_id}}",
                        "headers": {"X-Plan": "{{contact.fields.plan}}"},
                        "next": "hello",
                    },
                    {
                        "id": "hello",
                        "type": "send_email",
                        "subject": "Hi",
                        "body": "b",
                        "next": "text",
                    },
                    {"id": "text", "type": "send_sms", "body": "Hi {{contact.fields.plan}}"},
                ],
            }
            created = await tenant.request(
                "POST",
                f"{API}/workflows",
                json={"name": "Calls", "definition": definition, "change_summary": "first"},
            )
            assert created.status_code == 201, created.text
            wf = created.json()["id"]
            before = await row_counts(db)
            answer = await simulated(
                tenant,
                wf,
                {"contact": {**ADA, "external_id": "crm-1", "fields": {"plan": "pro"}}},
            )
            assert await row_counts(db) == before
    assert (performed, receiver.requests, inbox.messages, inbox.attempts) == ([], [], [], 0)
    assert answer["http_requests"] == [
        {
            "at": iso(START),
            "step": "notify",
            "method": "POST",
            "url": receiver.url + "/crm-1",
            "headers": {"X-Plan": "pro"},
            "body": {
                "contact": {
                    "id": "00000000-0000-0000-0000-000000000000",
                    "email": ADA["email"],
                    "phone": ADA["phone"],
                    "external_id": "crm-1",
                    "tags": [],
                    "fields": {"plan": "pro"},
                }
            },
        }
    ]
    assert trail(answer["path"]) == [
        (START, "notify", "done", {"simulated": True}),
        (START, "hello", "sent", {"simulated": True, "channel": "smtp", "message_id": ANY}),
        (START, "text", "sent", {"simulated": True, "channel": "http", "message_id": ANY}),
    ]
    assert [(m["channel"], m["to"], m["body"]) for m in answer["messages"]] == [
        ("smtp", ADA["email"], "b"),
        ("http", ADA["phone"], "Hi pro"),
    ]
    assert answer["final"]["status"] == "completed"


# --- bounds ------------------------------------------------------------------------------------


LOOP = {
    "trigger": {"type": "manual"},
    "steps": [
        {"id": "pause", "type": "wait", "duration": "1m", "next": "mark"},
        {"id": "mark", "type": "add_tag", "tag": "seen", "next": "pause"},
    ],
}


async def test_a_loop_through_waits_ends_at_until(engine: Engine) -> None:
    wf = await engine.workflow(LOOP)
    answer = await simulated(
        engine.tenant, wf, {"contact": ADA, "start": iso(START), "until": "1d"}
    )
    # The first wait, then every minute of the day (the last one at until itself) a mark
    # and a wait.
    assert (answer["steps"], answer["stopped_reason"]) == (1 + 2 * 1440, "until")
    assert answer["final"]["status"] == "waiting"
    assert answer["final"]["wake_at"] == iso(START + DAY + dt.timedelta(minutes=1))
    assert when(answer["path"][-1]["at"]) == START + DAY


async def test_a_loop_through_waits_stops_after_ten_thousand_steps(engine: Engine) -> None:
    wf = await engine.workflow(LOOP)
    answer = await simulated(
        engine.tenant, wf, {"contact": ADA, "start": iso(START), "until": "3650d"}
    )
    assert (answer["steps"], answer["stopped_reason"]) == (10_000, "step_limit")
    # The first wait, then a mark and a wait every minute: the 10,000th step is the mark of
    # minute 5,000, long before until; the execution stopped due on the wait it leads to.
    minute_5000 = START + dt.timedelta(minutes=5000)
    assert answer["final"] == {
        "status": "active",
        "outcome": None,
        "current_step": "pause",
        "wake_at": iso(minute_5000),
        "finished_at": None,
        "error": None,
        "contact": {"id": None, "external_id": None, **ADA, "tags": ["seen"]},
    }
    assert trail(answer["path"][-3:]) == [
        (minute_5000 - dt.timedelta(minutes=1), "pause", "waiting", waiting(minute_5000)),
        (minute_5000, "pause", "woke", {}),
        (minute_5000, "mark", "done", {"tag": "seen", "changed": False}),
    ]
    assert len(answer["path"]) == 1 + 3 * 4999 + 2


# --- what is refused ---------------------------------------------------------------------------


INVALID: list[tuple[str, dict[str, Any], str]] = [
    (
        "both contacts",
        {"contact_id": "00000000-0000-4000-8000-000000000000", "contact": ADA},
        "/contact",
    ),
    ("no contact", {"contact": None}, ""),
    ("a contact_id that is no id", {"contact_id": "nope"}, "/contact_id"),
    ("a contact checked as on creation", {"contact": {"tags": "vip"}}, "/contact/tags"),
    ("an unknown contact member", {"contact": {"email": "a@b.c", "age": 3}}, "/contact/age"),
    ("a negative after", {"timeline": [{"after": "-1d", "name": "x"}]}, "/timeline/0/after"),
    (
        "an after that is no duration",
        {"timeline": [{"after": 5, "name": "x"}]},
        "/timeline/0/after",
    ),
    (
        "an event after until",
        {"until": "7d", "timeline": [{"after": "8d", "name": "x"}]},
        "/timeline/0/after",
    ),
    (
        "an entry before start",
        {"timeline": [{"at": "2029-12-31T09:00:00Z", "name": "x"}]},
        "/timeline/0/at",
    ),
    (
        "an entry after until",
        {"until": iso(START + DAY), "timeline": [{"at": iso(START + 2 * DAY), "name": "x"}]},
        "/timeline/0/at",
    ),
    (
        "after and at",
        {"timeline": [{"after": "1d", "at": iso(START), "name": "x"}]},
        "/timeline/0/at",
    ),
    ("no time", {"timeline": [{"name": "x"}]}, "/timeline/0"),
    (
        "an event and a change",
        {"timeline": [{"after": "1d", "name": "x", "add_tags": ["a"]}]},
        "/timeline/0/name",
    ),
    ("nothing happens", {"timeline": [{"after": "1d"}]}, "/timeline/0"),
    (
        "data without an event",
        {"timeline": [{"after": "1d", "data": {}, "add_tags": ["a"]}]},
        "/timeline/0/data",
    ),
    (
        "a tag of the wrong type",
        {"timeline": [{"after": "1d", "add_tags": [1]}]},
        "/timeline/0/add_tags/0",
    ),
    (
        "an unknown entry member",
        {"timeline": [{"after": "1d", "name": "x", "when": 1}]},
        "/timeline/0/when",
    ),
    ("a timeline too long", {"timeline": [{"after": "1d", "name": "x"}] * 1001}, "/timeline"),
    ("until before start", {"until": "2029-01-01T00:00:00Z"}, "/until"),
    ("a zero until", {"until": "0s"}, "/until"),
    ("an until of neither kind", {"until": "soon"}, "/until"),
    ("an until that is no string", {"until": 90}, "/until"),
    ("an until over ten years", {"until": "2045-01-01T00:00:00Z"}, "/until"),
    ("an until that is no instant in UTC", {"until": "0001-01-01T00:00:00+14:00"}, "/until"),
    ("a start too late", {"start": "9999-01-01T00:00:00Z"}, "/start"),
]


@pytest.mark.parametrize(
    ("body", "pointer"), [case[1:] for case in INVALID], ids=[c[0] for c in INVALID]
)
async def test_an_impossible_request_answers_422_at_its_json_path(
    engine: Engine, body: dict[str, Any], pointer: str
) -> None:
    wf = await engine.workflow(welcome())
    response = await simulate(engine.tenant, wf, {"start": iso(START), "contact": ADA, **body})
    assert_problem(response, 422, "validation_error", str(body))
    problem = response.json()
    assert pointer in [e["pointer"] for e in problem["errors"]], problem


async def test_unknown_objects_answer_404(engine: Engine) -> None:
    wf = await engine.workflow(welcome())
    contact = await engine.contact(email="gone@example.com")
    erased = await engine.tenant.request("DELETE", f"{API}/contacts/{contact}")
    assert erased.status_code == 204, erased.text
    for body in (
        {"contact_id": contact},  # erased
        {"contact_id": "00000000-0000-4000-8000-000000000000"},
    ):
        assert_problem(await simulate(engine.tenant, wf, body), 404, "not_found", str(body))
    for number in ("2", "0", "x", "99999999999"):
        response = await engine.tenant.request(
            "POST", f"{API}/workflows/{wf}/versions/{number}/simulate", json={"contact": ADA}
        )
        assert_problem(response, 404, "not_found", number)
    # The lookup comes before the body's validation.
    response = await engine.tenant.request(
        "POST", f"{API}/workflows/{wf}/versions/5/simulate", json={"nonsense": True}
    )
    assert_problem(response, 404, "not_found", "an unknown version and an invalid body")
