"""The engine's floor: the five-step workload of ``bench_engine.py`` as raw SQL, no interpreter.

Run by ``bench_engine.py`` (not part of revflow): ``python benchmarks/engine_floor.py worker
--dsn DSN [--batch-size 200] [--poll-seconds 0.1]``, as many processes as revflow workers, on
the same database set up the same way. Each process loops over one transaction per batch:

1. claim up to ``--batch-size`` due executions — the condition of revflow's claim (live, due,
   no unexpired lease, workflow not paused), oldest ``wake_at`` first, ``FOR UPDATE SKIP
   LOCKED``;
2. one statement that writes what revflow's engine writes for the workload ``update_field`` →
   ``add_tag`` → ``condition`` → ``send_email`` (outbox) → ``end``: the contacts' new field and
   tag, the outbox message, the five history rows with the same results and details, and the
   executions completed;
3. commit.

Nothing is decoded, validated or interpreted in Python: the least any engine writing the same
rows with the same claim must pay. It prints ``READY`` on stderr before its first claim and
stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

import asyncpg

READY_MARKER = "READY"

CLAIM = """
SELECT e.id, e.account_id, e.contact_id FROM executions e
WHERE e.status IN ('active', 'waiting') AND e.wake_at <= now()
  AND (e.lease_expires_at IS NULL OR e.lease_expires_at < now())
  AND NOT EXISTS (SELECT 1 FROM workflows w WHERE w.id = e.workflow_id AND w.status = 'paused')
ORDER BY e.wake_at LIMIT $1 FOR UPDATE OF e SKIP LOCKED
"""

# $1 executions, $2 their accounts, $3 their contacts. ``old`` reads the contacts as they were
# before this statement (every part of one statement sees the same snapshot): it says whether
# the field and the tag changed, as revflow's history does.
ADVANCE = """
WITH claimed AS (
  SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[])
    AS x(execution_id, account_id, contact_id)
), old AS (
  SELECT c.id, (c.fields -> 'stage') IS DISTINCT FROM '"engaged"'::jsonb AS field_changed,
         NOT (c.tags ? 'engaged') AS tag_changed
  FROM contacts c JOIN claimed ON c.id = claimed.contact_id
), contact AS (
  UPDATE contacts c
  SET fields = c.fields || '{"stage": "engaged"}'::jsonb,
      tags = CASE WHEN old.tag_changed THEN c.tags || '["engaged"]'::jsonb ELSE c.tags END,
      updated_at = now()
  FROM claimed JOIN old ON old.id = claimed.contact_id
  WHERE c.id = claimed.contact_id
  RETURNING claimed.execution_id, claimed.account_id, c.id AS contact_id, c.email,
            c.fields ->> 'first_name' AS first_name, c.tags ? 'engaged' AS engaged,
            old.field_changed, old.tag_changed
), message AS (
  INSERT INTO messages (id, account_id, channel, kind, "to", subject, body, contact_id,
                        execution_id, step, created_at)
  SELECT gen_random_uuid(), account_id, 'outbox', 'email', email,
         'Welcome ' || coalesce(first_name, ''),
         'Hello ' || coalesce(first_name, '') || ', thanks for joining.',
         contact_id, execution_id, 'welcome', now()
  FROM contact WHERE engaged AND email IS NOT NULL
  RETURNING id, execution_id
), history AS (
  INSERT INTO execution_history (account_id, execution_id, at, step, result, detail)
  SELECT c.account_id, c.execution_id, now(), s.step, s.result,
         CASE s.step
           WHEN 'set_stage' THEN jsonb_build_object('field', 'fields.stage',
                                                    'changed', c.field_changed)
           WHEN 'tag_engaged' THEN jsonb_build_object('tag', 'engaged', 'changed', c.tag_changed)
           WHEN 'is_engaged' THEN
             jsonb_build_object('result', CASE WHEN c.engaged THEN 'then' ELSE 'else' END)
           WHEN 'welcome' THEN jsonb_build_object('channel', 'outbox', 'message_id', m.id::text)
           ELSE '{}'::jsonb
         END
  FROM contact c LEFT JOIN message m ON m.execution_id = c.execution_id
  CROSS JOIN (VALUES (1, 'set_stage', 'done'), (2, 'tag_engaged', 'done'),
                     (3, 'is_engaged', 'branch'), (4, 'welcome', 'sent'),
                     (5, 'done', 'completed')) AS s(ord, step, result)
  WHERE s.step <> 'welcome' OR m.id IS NOT NULL
  ORDER BY c.execution_id, s.ord
)
UPDATE executions e
SET status = 'completed', current_step = 'done', outcome = 'completed', finished_at = now(),
    wake_at = NULL, lease_owner = NULL, lease_expires_at = NULL
FROM claimed WHERE e.id = claimed.execution_id
"""


async def run_worker(dsn: str, batch_size: int, poll_seconds: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    conn = await asyncpg.connect(dsn)
    try:
        print(READY_MARKER, file=sys.stderr, flush=True)
        while not stop.is_set():
            async with conn.transaction():
                rows = await conn.fetch(CLAIM, batch_size)
                if rows:
                    await conn.execute(
                        ADVANCE,
                        [row["id"] for row in rows],
                        [row["account_id"] for row in rows],
                        [row["contact_id"] for row in rows],
                    )
            if not rows:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), poll_seconds)
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    worker = sub.add_parser("worker", help="run one floor worker process")
    worker.add_argument("--dsn", required=True, help="libpq connection string")
    worker.add_argument("--batch-size", type=int, default=200)
    worker.add_argument("--poll-seconds", type=float, default=0.1)
    args = parser.parse_args()
    asyncio.run(run_worker(args.dsn, args.batch_size, args.poll_seconds))


if __name__ == "__main__":
    main()
