"""The lookup of the workflows a contact change or an event enrolls into (PostgreSQL's plan).

Every upsert that changes a contact and every event asks it. On tables the planner has no
statistics of yet (a new database, before autovacuum analyzes it) the join of workflows to
their current versions was planned as a loop reading every version of the account for each
workflow: workflows times versions per request, a third of the database's CPU at 128 workflows.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest
from sqlalchemy import insert, text
from sqlalchemy.dialects import postgresql

from revflow.audit.service import Actor
from revflow.auth import service as auth_service
from revflow.db import Database, enter_account
from revflow.executions.enrollment import triggered_workflows
from revflow.models import Version, Workflow

WORKFLOWS = 80
VERSIONS_EACH = 3


def version_row(account_id: uuid.UUID, workflow_id: uuid.UUID, number: int, **row: Any) -> Any:
    return {
        "id": uuid.uuid4(),
        "account_id": account_id,
        "workflow_id": workflow_id,
        "number": number,
        "status": "retired",
        "definition": {},
        "content_hash": f"{workflow_id.hex}{number}",
        "change_summary": "",
        "created_by": "test",
        "semver": f"{number}.0.0",
        "tags": [],
        "warnings": [],
        "trigger_type": "manual",
        **row,
    }


def rows_read(plan: dict[str, Any], relation: str) -> float:
    """Rows a plan's scans of ``relation`` looked at: returned or filtered out, every loop."""
    read = 0.0
    if plan.get("Relation Name") == relation:
        looked_at = plan["Actual Rows"] + plan.get("Rows Removed by Filter", 0)
        read += looked_at * plan["Actual Loops"]
    for child in plan.get("Plans", []):
        read += rows_read(child, relation)
    return read


async def test_the_lookup_reads_the_matching_versions_only_without_statistics(
    backend: str, fresh_database_url: str
) -> None:
    if backend != "postgresql":
        pytest.skip("the plan of PostgreSQL's planner; SQLite's lookup is covered by the API")
    db = Database(fresh_database_url, pool_size=2)
    try:
        now = dt.datetime.now(dt.UTC)
        async with db.session(write=True) as session:
            account, _ = await auth_service.create_account(session, "many", Actor(user="t"), now)
            ids = [uuid.uuid4() for _ in range(WORKFLOWS)]
            await session.execute(
                insert(Workflow),
                [
                    {"id": w, "account_id": account.id, "name": f"w{i}", "current_version": 3}
                    for i, w in enumerate(ids)
                ],
            )
            versions = [
                version_row(account.id, w, n, status="published", trigger_type=trigger)
                if n == VERSIONS_EACH
                else version_row(account.id, w, n)
                for i, w in enumerate(ids)
                for n in range(1, VERSIONS_EACH + 1)
                for trigger in ["event" if i == 0 else "manual"]
            ]
            await session.execute(insert(Version), versions)
            await session.commit()
        async with db.session() as session:
            await enter_account(session, account.id)
            query = triggered_workflows(["event"]).params(account=account.id)
            found = (await session.execute(query)).all()
            assert [(row[0].id, row[1]) for row in found] == [(ids[0], "event")]
            literal = {"literal_binds": True}
            sql = query.compile(dialect=postgresql.dialect(), compile_kwargs=literal)
            explained = await session.execute(text(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}"))
            plan = explained.scalar_one()
            plan = (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]
        # One matching published version; before, every version of the account for each of
        # its workflows (80 times 237 rows).
        assert rows_read(plan, "versions") <= 2, plan
        assert rows_read(plan, "workflows") <= 2 * WORKFLOWS, plan
    finally:
        await db.dispose()
