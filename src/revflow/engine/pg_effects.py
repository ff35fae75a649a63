"""One batch's effects as one PostgreSQL statement, sent as it is written here.

Every kind of row (history, messages, executions, contacts) is a part of one statement with
data-modifying CTEs, each reading its rows from ``unnest`` of one array parameter per column:
one round trip and one prepared statement for a batch of any size, and no per-row parameter
sets. JSON values of a column travel as one JSON array (the n-th row takes its n-th element),
so that a batch encodes each JSON column once rather than once per row. A kind with no rows
sends empty arrays. The statement is fixed, so it skips SQLAlchemy's compilation: the driver
prepares it once per connection.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from typing import Any

from revflow.engine.interpreter import ContactState, Effects, ExecutionState

# The parameters, in order; the statement names them as {name} and gets $1, $2, … for them.
_PARAMETERS = (
    "now",
    *("h_account", "h_execution", "h_at", "h_step", "h_result", "h_error", "h_detail"),
    *("m_id", "m_account", "m_channel", "m_kind", "m_to", "m_subject", "m_body"),
    *("m_contact", "m_execution", "m_step"),
    *("e_account", "e_id", "e_status", "e_current_step", "e_wake_at", "e_outcome"),
    *("e_finished_at", "e_wait_started_at", "e_error", "e_lease_owner", "e_lease_expires_at"),
    "e_fired_goals",
    *("c_account", "c_id", "c_email", "c_phone", "c_fields", "c_tags"),
)

_TEMPLATE = """
WITH entry AS (
  INSERT INTO execution_history (account_id, execution_id, at, step, result, error, detail)
  SELECT h.account_id, h.execution_id, h.at, h.step, h.result, h.error,
         {h_detail}::jsonb -> (h.n - 1)::int
  FROM unnest({h_account}::uuid[], {h_execution}::uuid[], {h_at}::timestamptz[],
              {h_step}::text[], {h_result}::text[], {h_error}::text[])
       WITH ORDINALITY AS h(account_id, execution_id, at, step, result, error, n)
), message AS (
  INSERT INTO messages (id, account_id, channel, kind, "to", subject, body, contact_id,
                        execution_id, step, created_at)
  SELECT m.*, {now}::timestamptz
  FROM unnest({m_id}::uuid[], {m_account}::uuid[], {m_channel}::text[], {m_kind}::text[],
              {m_to}::text[], {m_subject}::text[], {m_body}::text[], {m_contact}::uuid[],
              {m_execution}::uuid[], {m_step}::text[]) AS m
), written AS (
  UPDATE executions AS e
  SET status = w.status, current_step = w.current_step, wake_at = w.wake_at,
      outcome = w.outcome, finished_at = w.finished_at, wait_started_at = w.wait_started_at,
      fired_goals = {e_fired_goals}::jsonb -> (w.n - 1)::int, error = w.error,
      lease_owner = w.lease_owner, lease_expires_at = w.lease_expires_at
  FROM unnest({e_account}::uuid[], {e_id}::uuid[], {e_status}::text[],
              {e_current_step}::text[], {e_wake_at}::timestamptz[], {e_outcome}::text[],
              {e_finished_at}::timestamptz[], {e_wait_started_at}::timestamptz[],
              {e_error}::text[], {e_lease_owner}::text[], {e_lease_expires_at}::timestamptz[])
       WITH ORDINALITY AS w(account_id, id, status, current_step, wake_at, outcome,
                            finished_at, wait_started_at, error, lease_owner,
                            lease_expires_at, n)
  WHERE e.account_id = w.account_id AND e.id = w.id
)
UPDATE contacts AS c
SET email = k.email, phone = k.phone, fields = {c_fields}::jsonb -> (k.n - 1)::int,
    tags = {c_tags}::jsonb -> (k.n - 1)::int, updated_at = {now}::timestamptz
FROM unnest({c_account}::uuid[], {c_id}::uuid[], {c_email}::text[], {c_phone}::text[])
     WITH ORDINALITY AS k(account_id, id, email, phone, n)
WHERE c.account_id = k.account_id AND c.id = k.id
"""

STATEMENT = _TEMPLATE.format(**{name: f"${i}" for i, name in enumerate(_PARAMETERS, 1)})

# One encoder for every value: json.dumps with any option builds a new encoder per call.
_JSON = json.JSONEncoder(separators=(",", ":"))


def parameters(
    accounts: dict[uuid.UUID, uuid.UUID],
    executions: Sequence[ExecutionState],
    dirty: Sequence[ContactState],
    account_of: dict[uuid.UUID, uuid.UUID],
    effects: Effects,
    now: dt.datetime,
    leases: dict[uuid.UUID, tuple[str, dt.datetime]],
) -> tuple[Any, ...]:
    """The statement's parameters for one batch, in ``_PARAMETERS``' order."""
    history, messages = effects.history, effects.messages
    no_lease: tuple[str | None, dt.datetime | None] = (None, None)
    held = [leases.get(ex.id, no_lease) for ex in executions] if leases else []
    values: dict[str, Any] = {
        "now": now,
        "h_account": [accounts[e["execution_id"]] for e in history],
        "h_execution": [e["execution_id"] for e in history],
        "h_at": [e["at"] for e in history],
        "h_step": [e["step"] for e in history],
        "h_result": [e["result"] for e in history],
        "h_error": [e["error"] for e in history],
        "h_detail": _JSON.encode([e["detail"] for e in history]),
        "m_id": [m.get("id") or uuid.uuid4() for m in messages],
        "m_account": [accounts[m["execution_id"]] for m in messages],
        "m_channel": [m["channel"] for m in messages],
        "m_kind": [m["kind"] for m in messages],
        "m_to": [m.get("to") for m in messages],
        "m_subject": [m.get("subject") for m in messages],
        "m_body": [m.get("body") for m in messages],
        "m_contact": [m["contact_id"] for m in messages],
        "m_execution": [m["execution_id"] for m in messages],
        "m_step": [m.get("step") for m in messages],
        "e_account": [accounts[ex.id] for ex in executions],
        "e_id": [ex.id for ex in executions],
        "e_status": [ex.status for ex in executions],
        "e_current_step": [ex.current_step for ex in executions],
        "e_wake_at": [ex.wake_at for ex in executions],
        "e_outcome": [ex.outcome for ex in executions],
        "e_finished_at": [ex.finished_at for ex in executions],
        "e_wait_started_at": [ex.wait_started_at for ex in executions],
        "e_error": [ex.error for ex in executions],
        "e_lease_owner": [owner for owner, _ in held] or [None] * len(executions),
        "e_lease_expires_at": [until for _, until in held] or [None] * len(executions),
        "e_fired_goals": _JSON.encode([ex.fired_goals for ex in executions]),
        "c_account": [account_of[c.id] for c in dirty],
        "c_id": [c.id for c in dirty],
        "c_email": [c.email for c in dirty],
        "c_phone": [c.phone for c in dirty],
        "c_fields": _JSON.encode([c.fields for c in dirty]),
        "c_tags": _JSON.encode([c.tags for c in dirty]),
    }
    return tuple(values[name] for name in _PARAMETERS)
