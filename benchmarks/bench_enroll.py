"""Benchmark one enrollment call of 10,000 contacts through a real ``revflow serve``.

Run: ``python benchmarks/bench_enroll.py [--database sqlite|postgresql|both] [--contacts 10000]
[--calls 5] [--json]``.

For each database: a fresh database with one account and ``revflow serve`` on loopback; the
contacts are inserted in bulk beforehand (their creation is not what is measured); then
``--calls`` workflows are each published and sent ONE ``POST …/enrollments`` of all the
contacts, timed from the first byte sent to the last byte of the answer (at least 10 calls).
Every answer must enroll every contact, and the database must then hold one live execution of
version 1 per contact (checked after each call, not timed; a difference is a problem).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from typing import Any

from sqlalchemy import func, insert, select

from benchmarks.common import (
    PG_ADMIN_DSN,
    Report,
    Result,
    Service,
    Stats,
    backends,
    database_version,
    encode,
    running_service,
    say,
    timed_request,
)
from revflow.bench import exit_on_sigterm
from revflow.db import Database
from revflow.models import LIVE_STATUSES, Account, Contact, Execution

DEFINITION = {
    "trigger": {"type": "manual"},
    "steps": [{"id": "hold", "type": "wait", "duration": "30d"}],
}


async def insert_contacts(url: str, count: int) -> list[str]:
    """``count`` contacts of the ``bench`` account, inserted in bulk; their ids."""
    db = Database(url)
    try:
        async with db.session(write=True) as session:
            account_id = await session.scalar(select(Account.id).where(Account.name == "bench"))
            now = dt.datetime.now(dt.UTC)
            rows: list[dict[str, Any]] = [
                {
                    "id": uuid.uuid4(),
                    "account_id": account_id,
                    "email": f"c{i}@example.com",
                    "fields": {},
                    "tags": [],
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(count)
            ]
            for start in range(0, count, 2000):
                await session.execute(insert(Contact), rows[start : start + 2000])
            await session.commit()
        return [str(row["id"]) for row in rows]
    finally:
        await db.dispose()


async def enrolled_rows(url: str, workflow_id: str) -> tuple[int, int]:
    """(executions of the workflow, those of them live on version 1) in the database."""
    db = Database(url)
    try:
        async with db.session() as session:
            of_workflow = Execution.workflow_id == uuid.UUID(workflow_id)
            total = await session.scalar(select(func.count()).where(of_workflow))
            live = await session.scalar(
                select(func.count()).where(
                    of_workflow, Execution.version == 1, Execution.status.in_(LIVE_STATUSES)
                )
            )
        return int(total or 0), int(live or 0)
    finally:
        await db.dispose()


def measure(service: Service, contacts: int, calls: int, problems: list[str]) -> list[float]:
    """Time ``calls`` enrollments; what the database holds afterwards is checked, not timed."""
    ids = asyncio.run(insert_contacts(service.database_url, contacts))
    body = encode({"contact_ids": ids})
    samples = []
    for call in range(calls):
        created, _ = timed_request(
            service.client,
            "POST",
            "/api/v1/workflows",
            expect=201,
            content=encode(
                {"name": f"enroll {call}", "definition": DEFINITION, "change_summary": "bench"}
            ),
        )
        workflow = created.json()["id"]
        timed_request(
            service.client, "POST", f"/api/v1/workflows/{workflow}/versions/1/publish", expect=200
        )
        answer, elapsed = timed_request(
            service.client,
            "POST",
            f"/api/v1/workflows/{workflow}/enrollments",
            expect=201,
            content=body,
        )
        if answer.json()["enrolled"] != contacts:
            problems.append(f"call {call + 1} answered {answer.json()['enrolled']} of {contacts}")
        total, live = asyncio.run(enrolled_rows(service.database_url, workflow))
        if (total, live) != (contacts, contacts):
            problems.append(
                f"call {call + 1}: {total} executions in the database, {live} live on "
                f"version 1, expected {contacts}"
            )
        samples.append(elapsed)
        say(f"enrollment {call + 1}/{calls}: {elapsed:.0f} ms")
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=10, help="enrollment calls (>= 10)")
    parser.add_argument("--pg-admin-dsn", default=PG_ADMIN_DSN)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = Report("bench_enroll", {"contacts": args.contacts, "calls": args.calls})
    for database in backends(args.database):
        report.facts[database] = database_version(database, args.pg_admin_dsn)
        with running_service(database, pg_admin_dsn=args.pg_admin_dsn) as service:
            samples = measure(service, args.contacts, max(args.calls, 10), report.problems)
        report.results.append(
            Result(database, f"enroll {args.contacts:,} contacts (one call)", Stats.of(samples))
        )
    report.print(args.json)
    if report.problems:
        raise SystemExit(1)


if __name__ == "__main__":
    exit_on_sigterm()
    main()
