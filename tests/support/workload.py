"""A workload for multi-worker tests: many contacts through one workflow of internal steps.

``create_workload(database_url, count)`` makes an account, ``count`` contacts (bulk-inserted:
creating thousands one request at a time would only measure the API), a published workflow
whose steps are all internal (``update_field``, ``add_tag``, ``condition``, ``send_email`` to the
outbox, a short ``wait``, ``end``), and — with ``enroll=True`` or a later ``enroll()`` — enrolls
every contact through the enrollment API, in chunks of at most 10,000 (the API's limit).

``check_workload(database_url, workload)`` reads the database and answers the list of problems
found (empty when every execution completed with exactly its expected history, in order, and
exactly one outbox message): a step run twice, a step missing, a lost execution, a doubled
message all show up there.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import func, insert, select

from revflow.app import create_app
from revflow.config import Settings
from revflow.db import Database
from revflow.models import Contact, Execution, HistoryEntry, Message
from tests.support.tenants import make_tenant

ENROLL_CHUNK = 10_000
WAIT = "1s"


def workload_definition(wait: str = WAIT) -> dict[str, Any]:
    return {
        "trigger": {"type": "manual", "reenroll": "never"},
        "start": "stamp",
        "steps": [
            {
                "id": "stamp",
                "type": "update_field",
                "field": "fields.stage",
                "value": "started",
                "next": "tag",
            },
            {"id": "tag", "type": "add_tag", "tag": "processed", "next": "route"},
            {
                "id": "route",
                "type": "condition",
                "if": {"field": "fields.tier", "op": "eq", "value": "gold"},
                "then": "gold_mail",
                "else": "basic_mail",
            },
            {
                "id": "gold_mail",
                "type": "send_email",
                "subject": "Gold offer for {{contact.fields.first_name}}",
                "body": "Dear {{contact.fields.first_name}}, thank you.",
                "next": "pause",
            },
            {
                "id": "basic_mail",
                "type": "send_email",
                "subject": "Hello {{contact.fields.first_name}}",
                "body": "Hi {{contact.fields.first_name}}.",
                "next": "pause",
            },
            {"id": "pause", "type": "wait", "duration": wait, "next": "finish"},
            {
                "id": "finish",
                "type": "update_field",
                "field": "fields.stage",
                "value": "done",
                "next": "end",
            },
            {"id": "end", "type": "end"},
        ],
    }


def tier_of(index: int) -> str:
    return "gold" if index % 3 == 0 else "basic"


def expected_history(tier: str) -> list[tuple[str, str]]:
    """The (step, result) entries of one execution, in order."""
    mail = "gold_mail" if tier == "gold" else "basic_mail"
    return [
        ("stamp", "done"),
        ("tag", "done"),
        ("route", "branch"),
        (mail, "sent"),
        ("pause", "waiting"),
        ("pause", "woke"),
        ("finish", "done"),
        ("end", "completed"),
    ]


def expected_subject(tier: str, first_name: str) -> str:
    return f"Gold offer for {first_name}" if tier == "gold" else f"Hello {first_name}"


@dataclass
class Workload:
    database_url: str
    account_id: uuid.UUID
    api_key: str
    workflow_id: uuid.UUID
    contacts: dict[uuid.UUID, tuple[str, str]]  # contact → (tier, first name)
    executions: list[uuid.UUID] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.contacts)


def _client(settings: Settings, db: Database) -> httpx.AsyncClient:
    app = create_app(settings, db)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://revflow.test", timeout=120
    )


async def create_workload(
    database_url: str, count: int, *, wait: str = WAIT, enroll: bool = True
) -> Workload:
    """Account, contacts and published workflow (and the enrollments unless ``enroll=False``)."""
    settings = Settings(database_url=database_url, log_json=False)
    db = Database(database_url, pool_size=2)
    try:
        async with _client(settings, db) as client:
            tenant = await make_tenant(db, client, f"workload-{uuid.uuid4().hex[:6]}")
            account_id = uuid.UUID(tenant.account_id)
            now = dt.datetime.now(dt.UTC)
            contacts: dict[uuid.UUID, tuple[str, str]] = {}
            rows = []
            for i in range(count):
                contact_id = uuid.uuid4()
                first_name = f"C{i:05d}"
                contacts[contact_id] = (tier_of(i), first_name)
                rows.append(
                    {
                        "id": contact_id,
                        "account_id": account_id,
                        "external_id": f"w-{i}",
                        "email": f"c{i}@example.com",
                        "phone": None,
                        "fields": {"first_name": first_name, "tier": tier_of(i)},
                        "tags": [],
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            async with db.session(write=True) as session:
                for start in range(0, len(rows), 5000):
                    await session.execute(insert(Contact), rows[start : start + 5000])
                await session.commit()
            response = await tenant.request(
                "POST",
                "/api/v1/workflows",
                json={
                    "name": "workload",
                    "definition": workload_definition(wait),
                    "change_summary": "workload",
                },
            )
            assert response.status_code == 201, response.text
            workflow_id = response.json()["id"]
            published = await tenant.request(
                "POST", f"/api/v1/workflows/{workflow_id}/versions/1/publish"
            )
            assert published.status_code == 200, published.text
        workload = Workload(database_url, account_id, tenant.key, uuid.UUID(workflow_id), contacts)
    finally:
        await db.dispose()
    if enroll:
        await enroll_workload(workload)
    return workload


async def enroll_workload(workload: Workload, chunk: int = ENROLL_CHUNK) -> None:
    """Enroll every contact through ``POST /workflows/{id}/enrollments``, ≤ ``chunk`` a call."""
    assert 1 <= chunk <= ENROLL_CHUNK
    settings = Settings(database_url=workload.database_url, log_json=False)
    db = Database(workload.database_url, pool_size=2)
    try:
        async with _client(settings, db) as client:
            ids = [str(c) for c in workload.contacts]
            for start in range(0, len(ids), chunk):
                response = await client.post(
                    f"/api/v1/workflows/{workload.workflow_id}/enrollments",
                    json={"contact_ids": ids[start : start + chunk]},
                    headers={"Authorization": f"Bearer {workload.api_key}"},
                )
                assert response.status_code == 201, response.text
                body = response.json()
                assert body["skipped"] == [], body["skipped"][:5]
                workload.executions += [uuid.UUID(e) for e in body["executions"]]
    finally:
        await db.dispose()
    assert len(workload.executions) == workload.count


async def status_counts(db: Database, workload: Workload) -> dict[str, int]:
    async with db.session() as session:
        rows = await session.execute(
            select(Execution.status, func.count())
            .where(
                Execution.account_id == workload.account_id,
                Execution.workflow_id == workload.workflow_id,
            )
            .group_by(Execution.status)
        )
        return {status: n for status, n in rows.all()}


async def check_workload(db: Database, workload: Workload) -> list[str]:
    """Every problem found in the finished workload (at most a few of each kind)."""
    problems: list[str] = []
    async with db.session() as session:
        executions = {
            row.id: row
            for row in (
                await session.execute(
                    select(
                        Execution.id, Execution.contact_id, Execution.status, Execution.error
                    ).where(
                        Execution.account_id == workload.account_id,
                        Execution.workflow_id == workload.workflow_id,
                    )
                )
            ).all()
        }
        history: dict[uuid.UUID, list[tuple[str, str]]] = defaultdict(list)
        for row in (
            await session.execute(
                select(HistoryEntry.execution_id, HistoryEntry.step, HistoryEntry.result)
                .where(HistoryEntry.account_id == workload.account_id)
                .order_by(HistoryEntry.id)
            )
        ).all():
            history[row.execution_id].append((row.step, row.result))
        messages: dict[uuid.UUID | None, list[Any]] = defaultdict(list)
        for message in (
            await session.execute(
                select(
                    Message.execution_id,
                    Message.contact_id,
                    Message.channel,
                    Message.to,
                    Message.subject,
                    Message.step,
                ).where(Message.account_id == workload.account_id)
            )
        ).all():
            messages[message.execution_id].append(message)
        contacts = {
            row.id: row
            for row in (
                await session.execute(
                    select(Contact.id, Contact.fields, Contact.tags).where(
                        Contact.account_id == workload.account_id
                    )
                )
            ).all()
        }

    def problem(kind: str, text: str) -> None:
        kinds[kind] += 1
        if kinds[kind] <= 5:
            problems.append(text)

    kinds: Counter[str] = Counter()
    if set(executions) != set(workload.executions):
        lost = set(workload.executions) - set(executions)
        extra = set(executions) - set(workload.executions)
        problem("set", f"executions lost: {len(lost)}, unexpected: {len(extra)}")
    for execution_id, ex in executions.items():
        tier, first_name = workload.contacts[ex.contact_id]
        if ex.status != "completed":
            problem("status", f"{execution_id}: status {ex.status} ({ex.error})")
        steps = history.get(execution_id, [])
        counts = Counter(steps)
        doubled = [entry for entry, n in counts.items() if n > 1]
        if doubled:
            problem("doubled", f"{execution_id}: ran twice: {doubled}")
        if steps != expected_history(tier):
            problem("history", f"{execution_id}: history {steps}")
        sent = messages.get(execution_id, [])
        if len(sent) != 1:
            problem("messages", f"{execution_id}: {len(sent)} outbox messages")
        else:
            m = sent[0]
            wanted = ("outbox", expected_subject(tier, first_name), ex.contact_id)
            if (m.channel, m.subject, m.contact_id) != wanted:
                problem("message", f"{execution_id}: message {tuple(m)}")
        contact = contacts[ex.contact_id]
        if contact.fields.get("stage") != "done" or contact.tags != ["processed"]:
            problem("contact", f"{ex.contact_id}: fields {contact.fields}, tags {contact.tags}")
    orphans = set(history) - set(executions)
    if orphans:
        problem("orphans", f"history of unknown executions: {len(orphans)}")
    stray = set(messages) - set(executions)
    if stray:
        problem("stray", f"messages of unknown executions: {len(stray)}")
    for kind, n in kinds.items():
        if n > 5:
            problems.append(f"... {n} problems of kind {kind!r} in all")
    return problems
