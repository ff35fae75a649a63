"""One batch's effects as one PostgreSQL statement, sent as it is written here.

Every kind of row (history, messages, executions, contacts) is a part of one statement with
data-modifying CTEs: one round trip and one prepared statement for a batch of any size. Each
part reads its rows with ``ROWS FROM``, zipping the keys (one ``uuid[]`` parameter per key
column) with one JSON array holding each row's other values. The JSON is encoded once a batch
by the C encoder, where one array parameter per column cost the driver a check and an
encoding for every element (~1 µs each, a thousand per column for the history). Moments
(``timestamptz``) are few distinct values a batch: they go once, in one array, and rows name
them by position; so do the history's executions. A kind with no rows sends empty arrays.
The statement is fixed, so it skips SQLAlchemy's compilation: the driver prepares it once
per connection.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from revflow.engine.interpreter import ContactState, Effects, ExecutionState

# The parameters, in order; the statement names them as {name} and gets $1, $2, … for them.
_PARAMETERS = (
    *("now", "moments"),
    *("x_account", "x_id", "h_rows"),
    *("m_id", "m_account", "m_contact", "m_execution", "m_rows"),
    *("e_account", "e_id", "e_rows"),
    *("c_account", "c_id", "c_rows"),
)

# {moment(i)}: the moment the i-th value of a row names (NULL for none).
_TEMPLATE = """
WITH entry AS (
  INSERT INTO execution_history (account_id, execution_id, at, step, result, error, detail)
  SELECT ({x_account}::uuid[])[(h.r ->> 0)::int], ({x_id}::uuid[])[(h.r ->> 0)::int],
         {moment_h1}, h.r ->> 2, h.r ->> 3, h.r ->> 4, h.r -> 5
  FROM jsonb_array_elements({h_rows}::jsonb) AS h(r)
), message AS (
  INSERT INTO messages (id, account_id, contact_id, execution_id, channel, kind, "to",
                        subject, body, step, created_at)
  SELECT m.id, m.account_id, m.contact_id, m.execution_id, m.r ->> 0, m.r ->> 1, m.r ->> 2,
         m.r ->> 3, m.r ->> 4, m.r ->> 5, {now}::timestamptz
  FROM ROWS FROM (unnest({m_id}::uuid[]), unnest({m_account}::uuid[]),
                  unnest({m_contact}::uuid[]), unnest({m_execution}::uuid[]),
                  jsonb_array_elements({m_rows}::jsonb))
       AS m(id, account_id, contact_id, execution_id, r)
), written AS (
  UPDATE executions AS e
  SET status = w.r ->> 0, current_step = w.r ->> 1, wake_at = {moment_w2},
      outcome = w.r ->> 3, finished_at = {moment_w4}, wait_started_at = {moment_w5},
      fired_goals = w.r -> 6, error = w.r ->> 7, lease_owner = w.r ->> 8,
      lease_expires_at = {moment_w9}
  FROM ROWS FROM (unnest({e_account}::uuid[]), unnest({e_id}::uuid[]),
                  jsonb_array_elements({e_rows}::jsonb)) AS w(account_id, id, r)
  WHERE e.account_id = w.account_id AND e.id = w.id
)
UPDATE contacts AS c
SET email = k.r ->> 0, phone = k.r ->> 1, fields = k.r -> 2, tags = k.r -> 3,
    updated_at = {now}::timestamptz
FROM ROWS FROM (unnest({c_account}::uuid[]), unnest({c_id}::uuid[]),
                jsonb_array_elements({c_rows}::jsonb)) AS k(account_id, id, r)
WHERE c.account_id = k.account_id AND c.id = k.id
"""

_NUMBERS = {name: f"${i}" for i, name in enumerate(_PARAMETERS, 1)}
_MOMENTS = {
    f"moment_{row}{i}": f"({_NUMBERS['moments']}::timestamptz[])[({row}.r ->> {i})::int]"
    for row, i in (("h", 1), ("w", 2), ("w", 4), ("w", 5), ("w", 9))
}
STATEMENT = _TEMPLATE.format(**_NUMBERS, **_MOMENTS)

T = TypeVar("T")

# One encoder for every value: json.dumps with any option builds a new encoder per call.
_JSON = json.JSONEncoder(separators=(",", ":"))


class _Positions(Generic[T]):
    """Distinct values, each named by its position (from 1) in the order first seen."""

    def __init__(self) -> None:
        self.values: dict[T, int] = {}

    def of(self, value: T | None) -> int | None:
        if value is None:
            return None
        position = self.values.get(value)
        if position is None:
            position = self.values[value] = len(self.values) + 1
        return position


def _utc(moment: dt.datetime) -> dt.datetime:
    """A naive moment is UTC (as ``UTCDateTime`` reads it), not the machine's local time."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _message_row(m: dict[str, Any]) -> tuple[Any, ...]:
    return (m["channel"], m["kind"], m.get("to"), m.get("subject"), m.get("body"), m.get("step"))


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
    moments = _Positions[dt.datetime]()
    moment = moments.of
    referenced = _Positions[uuid.UUID]()
    h_rows = [
        (
            referenced.of(e["execution_id"]),
            moment(e["at"]),
            e["step"],
            e["result"],
            e["error"],
            e["detail"],
        )
        for e in history
    ]
    no_lease: tuple[str | None, dt.datetime | None] = (None, None)
    e_rows = []
    for ex in executions:
        owner, until = leases.get(ex.id, no_lease) if leases else no_lease
        e_rows.append(
            (
                ex.status,
                ex.current_step,
                moment(ex.wake_at),
                ex.outcome,
                moment(ex.finished_at),
                moment(ex.wait_started_at),
                ex.fired_goals,
                ex.error,
                owner,
                moment(until),
            )
        )
    values: dict[str, Any] = {
        "now": now,
        "moments": [_utc(moment) for moment in moments.values],
        "x_account": [accounts[ex_id] for ex_id in referenced.values],
        "x_id": list(referenced.values),
        "h_rows": _JSON.encode(h_rows),
        "m_id": [m.get("id") or uuid.uuid4() for m in messages],
        "m_account": [accounts[m["execution_id"]] for m in messages],
        "m_contact": [m["contact_id"] for m in messages],
        "m_execution": [m["execution_id"] for m in messages],
        "m_rows": _JSON.encode([_message_row(m) for m in messages]),
        "e_account": [accounts[ex.id] for ex in executions],
        "e_id": [ex.id for ex in executions],
        "e_rows": _JSON.encode(e_rows),
        "c_account": [account_of[c.id] for c in dirty],
        "c_id": [c.id for c in dirty],
        "c_rows": _JSON.encode([(c.email, c.phone, c.fields, c.tags) for c in dirty]),
    }
    return tuple(values[name] for name in _PARAMETERS)
