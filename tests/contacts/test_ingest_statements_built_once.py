"""Contact upserts and events run statements built once: building a statement (its columns,
its conditions, its cache key) cost more of an upsert's CPU than running it did
(BENCHMARKS.md, "Many clients at once"). Once the first requests have built them, an upsert
that creates a contact, one that changes it and an event that starts an execution build no
``SELECT``, ``INSERT`` or ``UPDATE`` of their own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy.sql import dml, selectable

from tests.support.engine import Engine

PURCHASE = {
    "trigger": {"type": "event", "event": "purchased", "reenroll": "after_finish"},
    "steps": [{"id": "thanks", "type": "add_tag", "tag": "buyer"}],
}
FIELD = {
    "trigger": {"type": "field_changed", "field": "fields.score"},
    "steps": [{"id": "w", "type": "wait", "duration": "3d"}],
}


@contextmanager
def statements_built(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The kinds of statement constructed meanwhile."""
    built: list[str] = []
    for kind in (selectable.Select, dml.Insert, dml.Update):
        init = kind.__init__

        def counting(self: Any, *args: Any, __init: Any = init, **kwargs: Any) -> None:
            built.append(type(self).__name__)
            __init(self, *args, **kwargs)

        monkeypatch.setattr(kind, "__init__", counting)
    yield built
    monkeypatch.undo()


async def ingest(engine: Engine, n: int) -> None:
    """An upsert that creates a contact, one that changes it (a field trigger fires), and an
    event that starts an execution of the purchase workflow."""
    path = f"/api/v1/contacts/by-external-id/crm-{n}"
    created = await engine.tenant.request("PUT", path, json={"fields": {"score": 0}})
    assert created.status_code == 201, created.text
    changed = await engine.tenant.request("PUT", path, json={"fields": {"score": n + 1}})
    assert changed.status_code == 200, changed.text
    body = {"contact_id": created.json()["id"], "name": "purchased", "data": {}}
    sent = await engine.tenant.request("POST", "/api/v1/events", json=body)
    assert sent.status_code == 202, sent.text
    assert sent.json()["enrolled"], sent.json()


async def test_ingest_builds_no_statement_once_warm(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    await engine.workflow(PURCHASE, name="purchases")
    field_workflow = await engine.workflow(FIELD, name="scores")
    await ingest(engine, 0)
    with statements_built(monkeypatch) as built:
        await ingest(engine, 1)
        await ingest(engine, 2)
    assert built == []
    # The statements did their work: each changed contact started the field trigger's workflow.
    executions = await engine.tenant.request(
        "GET", f"/api/v1/workflows/{field_workflow}/executions"
    )
    assert executions.status_code == 200, executions.text
    assert len(executions.json()["items"]) == 3
