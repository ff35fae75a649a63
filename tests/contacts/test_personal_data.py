"""Erasure leaves a contact's email and phone nowhere in the database (SPEC §1): history names
messages by id, the outbox is cleared, answers kept for idempotent retries are forgotten."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from revflow.db import Database
from tests.support.engine import Engine

TABLES = (
    "execution_history",
    "messages",
    "audit_entries",
    "idempotency_records",
    "migration_items",
    "contacts",
    "held_reactions",
)


async def occurrences(db: Database, needle: str) -> dict[str, int]:
    """Rows of each table whose text (every column, as the database renders it) holds it."""
    found = {}
    async with db.session() as session:
        for table in TABLES:
            row_text = (
                "CAST(t.* AS TEXT)"
                if not db.is_sqlite
                else "(SELECT group_concat(value) FROM json_each(json_array(t.*)))"
            )
            if db.is_sqlite:
                columns = [
                    row[1]
                    for row in (await session.execute(text(f"PRAGMA table_info({table})"))).all()
                ]
                row_text = " || '|' || ".join(
                    f"COALESCE(CAST(t.\"{c}\" AS TEXT), '')" for c in columns
                )
            count = await session.scalar(
                text(f"SELECT count(*) FROM {table} t WHERE {row_text} LIKE :needle"),
                {"needle": f"%{needle}%"},
            )
            if count:
                found[table] = int(count)
    return found


async def test_an_erased_contacts_email_and_phone_are_nowhere_in_the_database(
    engine: Engine,
) -> None:
    email = f"erase-{uuid.uuid4().hex[:8]}@example.com"
    phone = f"+1555{uuid.uuid4().int % 10**7:07d}"
    wf = await engine.workflow(
        {
            "trigger": {"type": "manual"},
            "steps": [
                {
                    "id": "hello",
                    "type": "send_email",
                    "subject": "Hi",
                    "body": "Dear {{contact.email}}",
                    "next": "text",
                },
                {
                    "id": "text",
                    "type": "send_sms",
                    "body": "call {{contact.phone}}",
                    "next": "pause",
                },
                {"id": "pause", "type": "wait", "duration": "3d"},
            ],
        }
    )
    created = await engine.tenant.request(
        "POST",
        "/api/v1/contacts",
        json={"email": email, "phone": phone},
        headers={"Idempotency-Key": f"create-{uuid.uuid4()}"},
    )
    assert created.status_code == 201, created.text
    person = created.json()["id"]
    enrolled = await engine.enroll(wf, person)
    await engine.run()
    execution = await engine.execution(enrolled["executions"][0])
    sent = [h for h in execution["history"] if h["result"] == "sent"]
    assert len(sent) == 2
    assert all(set(h["detail"]) == {"channel", "message_id"} for h in sent)
    messages = {m["id"] for m in await engine.messages(contact_id=person)}
    assert {h["detail"]["message_id"] for h in sent} == messages
    assert email not in str(execution["history"]) and phone not in str(execution["history"])
    db = engine.worker.db
    assert await occurrences(db, email)  # before erasure: the contact, the outbox, the answer

    erased = await engine.tenant.request("DELETE", f"/api/v1/contacts/{person}")
    assert erased.status_code in (200, 204), erased.text
    assert await occurrences(db, email) == {}
    assert await occurrences(db, phone) == {}
