"""The peers' side of ``bench_engine.py``: the five-step workload on tables of their own.

Shared by ``procrastinate_baseline.py`` and ``dbos_peer.py`` (only psycopg is needed here):

- four small tables mirroring what a revflow step touches: ``bench_contacts`` (``fields`` and
  ``tags`` as JSONB), ``bench_executions`` (``status``, ``current_step``, ``finished_at``),
  ``bench_history`` and ``bench_messages``; one contact and one execution per workload item;
- the statements of each step (``STEP_SQL``), run by :func:`run_step` (or
  :func:`run_step_sync`) inside the caller's transaction: the step's own statement, a history
  row and the execution's new position;
- :func:`outcome`: what a run wrote, for its check.
"""

from __future__ import annotations

from typing import Any

import psycopg

STEPS = 5

TABLES_SQL = """
CREATE TABLE bench_contacts (
    id integer PRIMARY KEY,
    email text NOT NULL,
    fields jsonb NOT NULL DEFAULT '{}',
    tags jsonb NOT NULL DEFAULT '[]',
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE bench_executions (
    id integer PRIMARY KEY,
    contact_id integer NOT NULL REFERENCES bench_contacts (id),
    status text NOT NULL,
    current_step text,
    finished_at timestamptz
);
CREATE INDEX bench_executions_live ON bench_executions (id) WHERE status <> 'completed';
CREATE TABLE bench_history (
    id bigserial PRIMARY KEY,
    execution_id integer NOT NULL REFERENCES bench_executions (id),
    at timestamptz NOT NULL,
    step text NOT NULL,
    result text NOT NULL,
    detail jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX bench_history_execution ON bench_history (execution_id, id);
CREATE TABLE bench_messages (
    id bigserial PRIMARY KEY,
    execution_id integer NOT NULL,
    contact_id integer NOT NULL,
    "to" text NOT NULL,
    subject text,
    body text,
    created_at timestamptz NOT NULL
);
"""

# The step ids of the workload, in order (the same names as revflow's definition).
STEP_IDS = ("set_stage", "tag_engaged", "is_engaged", "welcome", "done")

# (step-specific statements, history result, history detail) of each step, 1-based.
STEP_SQL: dict[int, tuple[str | None, str, str]] = {
    1: (
        'UPDATE bench_contacts SET fields = fields || \'{"stage": "engaged"}\', '
        "updated_at = now() WHERE id = %(contact)s",
        "done",
        '{"field": "fields.stage", "changed": true}',
    ),
    2: (
        "UPDATE bench_contacts SET tags = tags || '[\"engaged\"]', updated_at = now() "
        "WHERE id = %(contact)s AND NOT tags ? 'engaged'",
        "done",
        '{"tag": "engaged", "changed": true}',
    ),
    3: ("SELECT tags ? 'engaged' FROM bench_contacts WHERE id = %(contact)s", "branch", "{}"),
    4: (
        'INSERT INTO bench_messages (execution_id, contact_id, "to", subject, body, created_at) '
        "SELECT %(execution)s, id, email, 'Welcome ' || (fields ->> 'first_name'), "
        "'Hello ' || (fields ->> 'first_name') || ', thanks for joining.', now() "
        "FROM bench_contacts WHERE id = %(contact)s",
        "sent",
        '{"channel": "outbox"}',
    ),
    5: (None, "completed", "{}"),
}


async def run_step(conn: psycopg.AsyncConnection[Any], execution_id: int, step: int) -> None:
    """Step ``step`` of one execution on ``conn``, inside the caller's transaction."""
    statement, result, detail = STEP_SQL[step]
    params = {"execution": execution_id, "contact": execution_id}
    if statement is not None:
        cursor = await conn.execute(statement, params)
        if step == 3:
            row = await cursor.fetchone()
            branch = "then" if row and row[0] else "else"
            detail = f'{{"result": "{branch}"}}'
    await conn.execute(
        "INSERT INTO bench_history (execution_id, at, step, result, detail) "
        "VALUES (%(execution)s, now(), %(step)s, %(result)s, %(detail)s)",
        {**params, "step": STEP_IDS[step - 1], "result": result, "detail": detail},
    )
    if step < STEPS:
        await conn.execute(
            "UPDATE bench_executions SET status = 'active', current_step = %(next)s "
            "WHERE id = %(execution)s",
            {**params, "next": STEP_IDS[step]},
        )
    else:
        await conn.execute(
            "UPDATE bench_executions SET status = 'completed', current_step = %(step)s, "
            "finished_at = now() WHERE id = %(execution)s",
            {**params, "step": STEP_IDS[step - 1]},
        )


def run_step_sync(conn: psycopg.Connection[Any], execution_id: int, step: int) -> bool | None:
    """:func:`run_step` on a blocking connection; the condition's result for step 3."""
    statement, result, detail = STEP_SQL[step]
    params = {"execution": execution_id, "contact": execution_id}
    branch: bool | None = None
    if statement is not None:
        cursor = conn.execute(statement, params)
        if step == 3:
            row = cursor.fetchone()
            branch = bool(row and row[0])
            detail = f'{{"result": "{"then" if branch else "else"}"}}'
    conn.execute(
        "INSERT INTO bench_history (execution_id, at, step, result, detail) "
        "VALUES (%(execution)s, now(), %(step)s, %(result)s, %(detail)s)",
        {**params, "step": STEP_IDS[step - 1], "result": result, "detail": detail},
    )
    if step < STEPS:
        conn.execute(
            "UPDATE bench_executions SET status = 'active', current_step = %(next)s "
            "WHERE id = %(execution)s",
            {**params, "next": STEP_IDS[step]},
        )
    else:
        conn.execute(
            "UPDATE bench_executions SET status = 'completed', current_step = %(step)s, "
            "finished_at = now() WHERE id = %(execution)s",
            {**params, "step": STEP_IDS[step - 1]},
        )
    return branch


async def create_workload(conn: psycopg.AsyncConnection[Any], executions: int) -> None:
    """The tables, one contact and one execution (at its first step) per workload item."""
    await conn.execute(TABLES_SQL)
    await conn.execute(
        "INSERT INTO bench_contacts (id, email, fields) "
        "SELECT i, 'contact' || i || '@example.com', "
        "jsonb_build_object('first_name', 'Contact' || i) "
        "FROM generate_series(1, %s) AS i",
        (executions,),
    )
    await conn.execute(
        "INSERT INTO bench_executions (id, contact_id, status, current_step) "
        "SELECT i, i, 'active', %s FROM generate_series(1, %s) AS i",
        (STEP_IDS[0], executions),
    )


async def outcome(dsn: str) -> dict[str, int]:
    """What the run wrote: history rows, messages, completed executions, tagged contacts."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        counts: dict[str, int] = {}
        for key, sql in (
            ("history", "SELECT count(*) FROM bench_history"),
            ("messages", "SELECT count(*) FROM bench_messages"),
            ("completed", "SELECT count(*) FROM bench_executions WHERE status = 'completed'"),
            ("tagged", "SELECT count(*) FROM bench_contacts WHERE tags ? 'engaged'"),
        ):
            cursor = await conn.execute(sql)
            row = await cursor.fetchone()
            assert row is not None
            counts[key] = int(row[0])
        return counts
