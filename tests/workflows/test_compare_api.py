"""Compare through the API: the diff plus its impact on live executions (SPEC §5)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from tests.support.engine import Engine


def v1() -> dict[str, Any]:
    return {
        "trigger": {"type": "manual"},
        "steps": [
            {
                "id": "split",
                "type": "condition",
                "if": {"field": "tags", "op": "contains", "value": "vip"},
                "then": "vip_wait",
                "else": "pause",
            },
            {"id": "vip_wait", "type": "wait", "duration": "1d", "next": "bye"},
            {"id": "pause", "type": "wait", "duration": "2d", "next": "bye"},
            {"id": "bye", "type": "send_email", "subject": "Bye", "body": "b"},
        ],
        "goals": [{"id": "bought", "event": "purchase"}],
    }


def v2() -> dict[str, Any]:
    # "pause" is removed (its content lives on as "rest"), the goal is removed.
    return {
        "trigger": {"type": "manual"},
        "steps": [
            {
                "id": "split",
                "type": "condition",
                "if": {"field": "tags", "op": "contains", "value": "vip"},
                "then": "vip_wait",
                "else": "rest",
            },
            {"id": "vip_wait", "type": "wait", "duration": "1d", "next": "bye"},
            {"id": "rest", "type": "wait", "duration": "2d", "next": "bye"},
            {"id": "bye", "type": "send_email", "subject": "Goodbye", "body": "b"},
        ],
    }


async def test_breaking_changes_count_the_live_executions_they_affect(engine: Engine) -> None:
    wf = await engine.workflow(v1())
    regular = [await engine.contact(email=f"r{i}@example.com") for i in range(3)]
    vips = [await engine.contact(email=f"v{i}@example.com", tags=["vip"]) for i in range(2)]
    await engine.enroll(wf, *regular, *vips)
    await engine.run()  # three wait on "pause", two on "vip_wait"
    await engine.new_version(wf, v2(), 1, publish=False)

    response = await engine.tenant.request(
        "GET", f"/api/v1/workflows/{wf}/versions/compare", params={"from": 1, "to": 2}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    breaking = {(b["step"], b.get("goal")): b for b in body["breaking"]}
    assert breaking[("pause", None)]["executions_affected"] == 3
    assert breaking[(None, "bought")]["executions_affected"] == 5  # every live execution
    assert body["breaking_count"] == 2 and body["suggested_bump"] == "major"
    assert body["suggested_mapping"] == {"pause": "rest"}
    assert body["live_executions"] == 5
    assert body["summary"]["steps_removed"] == 1 and body["summary"]["steps_added"] == 1

    # Either order works; the other direction has nothing running on version 2.
    backwards = (
        await engine.tenant.request(
            "GET", f"/api/v1/workflows/{wf}/versions/compare", params={"from": 2, "to": 1}
        )
    ).json()
    assert {b["step"] for b in backwards["breaking"]} == {"rest"}
    assert all(b["executions_affected"] == 0 for b in backwards["breaking"])

    text = await engine.tenant.request(
        "GET",
        f"/api/v1/workflows/{wf}/versions/compare",
        params={"from": 1, "to": 2, "format": "text"},
    )
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
    assert "--- v1 (1.0.0)" in text.text and "pause" in text.text


async def test_compare_answers_404_and_422(engine: Engine) -> None:
    wf = await engine.workflow(v1())
    url = f"/api/v1/workflows/{wf}/versions/compare"
    unknown = await engine.tenant.request("GET", url, params={"from": 1, "to": 9})
    assert unknown.status_code == 404
    for params in (
        {"from": "x", "to": 1},
        {"to": 1},
        {"from": 0, "to": 1},
        {"from": 1, "to": 1, "format": "xml"},
    ):
        bad = await engine.tenant.request("GET", url, params=params)
        assert bad.status_code == 422, (params, bad.text)


async def test_the_two_versions_are_read_in_one_query(engine: Engine) -> None:
    """Both ends of a comparison come from one query (either order, a version against
    itself, a missing one answering 404 whichever end it is)."""
    wf = await engine.workflow(v1())
    await engine.new_version(wf, v2(), 1, publish=False)
    url = f"/api/v1/workflows/{wf}/versions/compare"
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM versions" in statement and "versions.number" in statement:
            statements.append(statement)  # a lookup of versions by number

    event.listen(engine.worker.db.engine.sync_engine, "before_cursor_execute", seen)
    try:
        for ends, status in (((1, 2), 200), ((2, 1), 200), ((2, 2), 200), ((9, 1), 404)):
            statements.clear()
            params = {"from": ends[0], "to": ends[1]}
            response = await engine.tenant.request("GET", url, params=params)
            assert response.status_code == status, response.text
            if status == 200:
                answer = response.json()
                assert (answer["from"]["number"], answer["to"]["number"]) == ends
            else:
                assert "has no version 9" in response.json()["detail"]
            # (The definitions, read once per pair and process, are looked up by id.)
            assert len(statements) == 1, statements
    finally:
        event.remove(engine.worker.db.engine.sync_engine, "before_cursor_execute", seen)
