"""Working drafts (SPEC §1 "Working draft", §4 ``PUT / GET / DELETE /workflows/{id}/draft``).

A draft is each user's auto-saved scratch copy of a workflow: any content is accepted (with its
validation problems listed), ``revision`` protects against lost updates (a stale one answers 409
``stale_draft`` carrying the current draft), it is private to its user, it ends when that user
creates a version, and saving it never creates a version nor changes the workflow's etag.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from revflow.definition.canonical import canonical_json
from tests.support.engine import Engine
from tests.support.servers import Racers, race, racing_clients
from tests.support.tenants import Tenant
from tests.support.workflows import simple_definition

POINTER = re.compile(r"^(/([^~/]|~[01])*)*$")  # RFC 6901


def wf_url(workflow_id: str) -> str:
    return f"/api/v1/workflows/{workflow_id}"


def draft_url(workflow_id: str) -> str:
    return f"{wf_url(workflow_id)}/draft"


def edited(subject: str) -> dict[str, Any]:
    return simple_definition(subject=subject)


def body(definition: Any, revision: int | None = None, base: int | None = 1) -> dict[str, Any]:
    return {"definition": definition, "base_version": base, "revision": revision}


async def as_user(tenant: Tenant, key: str, method: str, url: str, **kw: Any) -> httpx.Response:
    return await tenant.client.request(
        method, url, headers={"Authorization": f"Bearer {key}"}, **kw
    )


async def new_workflow(tenant: Tenant, name: str = "drafted") -> str:
    """A workflow with version 1 (a draft version)."""
    response = await tenant.request(
        "POST",
        "/api/v1/workflows",
        json={"name": name, "definition": simple_definition(), "change_summary": "first"},
    )
    assert response.status_code == 201, response.text
    workflow_id: str = response.json()["id"]
    return workflow_id


async def save(tenant: Tenant, workflow_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    response = await tenant.request("PUT", draft_url(workflow_id), json=payload)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = response.json()
    assert problem["code"] == code
    assert problem["type"] == f"urn:revflow:problem:{code}"
    assert problem["status"] == status
    return problem


async def workflow_state(tenant: Tenant, workflow_id: str) -> tuple[str, list[int]]:
    """The workflow's etag and the numbers of all its versions."""
    workflow = await tenant.request("GET", wf_url(workflow_id))
    assert workflow.status_code == 200
    assert workflow.headers["etag"].strip('"') == workflow.json()["etag"].strip('"')
    versions = await tenant.request(
        "GET", f"{wf_url(workflow_id)}/versions", params={"include_archived": "true"}
    )
    return workflow.json()["etag"], [v["number"] for v in versions.json()["items"]]


# --- save, recover, save again ----------------------------------------------------------------


async def test_save_recover_and_save_again_with_the_revision(tenant: Tenant) -> None:
    workflow_id = await new_workflow(tenant)
    before = await workflow_state(tenant, workflow_id)

    first = await save(tenant, workflow_id, body(edited("one")))
    assert first["revision"] == 1
    assert first["user"] == "admin" and first["workflow_id"] == workflow_id
    assert first["base_version"] == 1
    assert first["definition"] == edited("one")
    assert first["valid"] is True and first["problems"] == []
    assert first["saved_at"]

    recovered = await tenant.request("GET", draft_url(workflow_id))
    assert recovered.status_code == 200
    assert recovered.json() == first

    second = await save(tenant, workflow_id, body(edited("two"), revision=1))
    assert second["revision"] == 2
    assert second["definition"] == edited("two")
    assert second["saved_at"] >= first["saved_at"]
    assert (await tenant.request("GET", draft_url(workflow_id))).json() == second

    third = await save(tenant, workflow_id, body(edited("three"), revision=2, base=None))
    assert third["revision"] == 3 and third["base_version"] is None

    # A scratch pad: no version was created, the workflow's etag did not change.
    assert await workflow_state(tenant, workflow_id) == before


async def test_stale_revision_answers_409_with_the_current_draft(tenant: Tenant) -> None:
    workflow_id = await new_workflow(tenant)
    await save(tenant, workflow_id, body(edited("one")))
    current = await save(tenant, workflow_id, body(edited("two"), revision=1))

    for stale in (1, 3, 99):
        response = await tenant.request(
            "PUT", draft_url(workflow_id), json=body(edited("lost"), revision=stale)
        )
        problem = assert_problem(response, 409, "stale_draft")
        assert problem["draft"] == current, stale

    # No revision while a draft exists: the same answer, nothing overwritten.
    response = await tenant.request("PUT", draft_url(workflow_id), json=body(edited("lost")))
    problem = assert_problem(response, 409, "stale_draft")
    assert problem["draft"] == current
    assert (await tenant.request("GET", draft_url(workflow_id))).json() == current

    # The client merges and saves with the revision it was given: accepted.
    merged = await save(
        tenant, workflow_id, body(edited("merged"), revision=problem["draft"]["revision"])
    )
    assert merged["revision"] == 3


async def test_a_revision_without_any_draft_is_stale(tenant: Tenant) -> None:
    """The draft was discarded elsewhere (another tab): the save is refused, draft null."""
    workflow_id = await new_workflow(tenant)
    response = await tenant.request(
        "PUT", draft_url(workflow_id), json=body(edited("x"), revision=4)
    )
    problem = assert_problem(response, 409, "stale_draft")
    assert problem["draft"] is None
    assert (await tenant.request("GET", draft_url(workflow_id))).status_code == 404


@pytest.mark.parametrize(
    ("content", "pointers"),
    [
        pytest.param(
            {
                "trigger": {"type": "manual"},
                "steps": [
                    {"id": "a", "type": "send_email", "subject": "s", "body": "b", "next": "nope"},
                    {"id": "b", "type": "teleport"},
                ],
            },
            {"/steps/0/next", "/steps/1/type"},
            id="invalid-definition",
        ),
        pytest.param("just a string", {""}, id="string"),
        pytest.param({"trigger": {"type": "manual"}}, {"/steps"}, id="incomplete"),
        pytest.param(
            {"trigger": {"type": "tag_added"}, "steps": [{"id": "w", "type": "wait"}]},
            None,
            id="half-typed",
        ),
        pytest.param({}, None, id="empty-object"),
        pytest.param([1, 2], None, id="list"),
        pytest.param(None, None, id="null"),
    ],
)
async def test_any_content_is_saved_with_its_problems(
    tenant: Tenant, content: Any, pointers: set[str] | None
) -> None:
    workflow_id = await new_workflow(tenant)
    saved = await save(tenant, workflow_id, body(content))
    assert saved["revision"] == 1
    assert saved["definition"] == content
    assert saved["valid"] is False
    assert saved["problems"], saved
    for problem in saved["problems"]:
        assert POINTER.match(problem["pointer"]), problem
        assert problem["message"]
    if pointers is not None:
        assert pointers <= {p["pointer"] for p in saved["problems"]}, saved["problems"]
    recovered = (await tenant.request("GET", draft_url(workflow_id))).json()
    assert recovered == saved

    # Fixed on the next save: valid, problems gone.
    fixed = await save(tenant, workflow_id, body(simple_definition(), revision=1))
    assert fixed["valid"] is True and fixed["problems"] == []


async def test_a_valid_draft_lists_unreachable_steps_as_warnings(tenant: Tenant) -> None:
    workflow_id = await new_workflow(tenant)
    definition = simple_definition()
    # "thank_you" is reached only through the goal; drop the goal and it is unreachable.
    definition["goals"] = []
    saved = await save(tenant, workflow_id, body(definition))
    assert saved["valid"] is True and saved["problems"] == []
    assert [w["pointer"] for w in saved["warnings"]] == ["/steps/5"]
    assert "thank_you" in saved["warnings"][0]["message"]

    clean = await save(tenant, workflow_id, body(simple_definition(), revision=1))
    assert clean["valid"] is True and clean["warnings"] == []


async def test_the_save_body_itself_is_checked(tenant: Tenant) -> None:
    """The body itself is still checked: unknown members and bad revisions answer 422."""
    workflow_id = await new_workflow(tenant)
    for payload in (
        {"definition": {}, "revision": 0},
        {"definition": {}, "revision": "two"},
        {"definition": {}, "base_version": 0},
        {"definition": {}, "surprise": True},
    ):
        response = await tenant.request("PUT", draft_url(workflow_id), json=payload)
        assert response.status_code == 422, (payload, response.text)
    assert (await tenant.request("GET", draft_url(workflow_id))).status_code == 404


# --- per user ---------------------------------------------------------------------------------


async def test_drafts_are_per_user(tenant: Tenant) -> None:
    workflow_id = await new_workflow(tenant)
    alice = await tenant.key_for("editor", "alice@example.com")
    bob = await tenant.key_for("editor", "bob@example.com")

    mine = await as_user(tenant, alice, "PUT", draft_url(workflow_id), json=body(edited("alice")))
    assert mine.status_code == 200 and mine.json()["user"] == "alice@example.com"

    # Another user does not see it ...
    assert (await as_user(tenant, bob, "GET", draft_url(workflow_id))).status_code == 404
    assert (await tenant.request("GET", draft_url(workflow_id))).status_code == 404
    assert (await as_user(tenant, bob, "DELETE", draft_url(workflow_id))).status_code == 404
    # ... and their own draft is independent: it starts at revision 1, needs no revision.
    theirs = await as_user(tenant, bob, "PUT", draft_url(workflow_id), json=body(edited("bob")))
    assert theirs.status_code == 200, theirs.text
    assert theirs.json()["revision"] == 1 and theirs.json()["user"] == "bob@example.com"
    again = await as_user(
        tenant, bob, "PUT", draft_url(workflow_id), json=body(edited("bob 2"), revision=1)
    )
    assert again.json()["revision"] == 2

    alices = (await as_user(tenant, alice, "GET", draft_url(workflow_id))).json()
    assert alices == mine.json()
    bobs = (await as_user(tenant, bob, "GET", draft_url(workflow_id))).json()
    assert bobs["definition"] == edited("bob 2")

    # Another key of the same user reaches the same draft.
    alice_too = await tenant.key_for("editor", "alice@example.com")
    assert (await as_user(tenant, alice_too, "GET", draft_url(workflow_id))).json() == alices


async def test_creating_a_version_deletes_only_the_creators_draft(tenant: Tenant) -> None:
    workflow_id = await new_workflow(tenant)
    alice = await tenant.key_for("editor", "alice@example.com")
    bob = await tenant.key_for("editor", "bob@example.com")
    for key, who in ((alice, "alice"), (bob, "bob")):
        response = await as_user(tenant, key, "PUT", draft_url(workflow_id), json=body(edited(who)))
        assert response.status_code == 200
    bobs = (await as_user(tenant, bob, "GET", draft_url(workflow_id))).json()

    created = await as_user(
        tenant,
        alice,
        "POST",
        f"{wf_url(workflow_id)}/versions",
        json={"definition": edited("alice"), "change_summary": "from my draft", "base_version": 1},
    )
    assert created.status_code == 201, created.text

    assert (await as_user(tenant, alice, "GET", draft_url(workflow_id))).status_code == 404
    assert (await as_user(tenant, bob, "GET", draft_url(workflow_id))).json() == bobs
    # Alice starts a new draft from scratch (no revision needed any more).
    fresh = await as_user(
        tenant, alice, "PUT", draft_url(workflow_id), json=body(edited("next"), base=2)
    )
    assert fresh.status_code == 200 and fresh.json()["revision"] == 1


async def test_a_version_of_another_workflow_keeps_the_draft(tenant: Tenant) -> None:
    first = await new_workflow(tenant, "first")
    second = await new_workflow(tenant, "second")
    kept = await save(tenant, first, body(edited("keep me")))
    created = await tenant.request(
        "POST",
        f"{wf_url(second)}/versions",
        json={"definition": edited("other"), "change_summary": "x", "base_version": 1},
    )
    assert created.status_code == 201
    assert (await tenant.request("GET", draft_url(first))).json() == kept


async def test_discard(tenant: Tenant) -> None:
    workflow_id = await new_workflow(tenant)
    await save(tenant, workflow_id, body(edited("one")))
    await save(tenant, workflow_id, body(edited("two"), revision=1))

    discarded = await tenant.request("DELETE", draft_url(workflow_id))
    assert discarded.status_code == 204 and discarded.content == b""
    assert_problem(await tenant.request("GET", draft_url(workflow_id)), 404, "not_found")
    assert_problem(await tenant.request("DELETE", draft_url(workflow_id)), 404, "not_found")

    restarted = await save(tenant, workflow_id, body(edited("three")))
    assert restarted["revision"] == 1


async def test_viewer_cannot_save_or_discard(tenant: Tenant) -> None:
    workflow_id = await new_workflow(tenant)
    viewer = await tenant.key_for("viewer", "viewer@example.com")
    saved = await as_user(tenant, viewer, "PUT", draft_url(workflow_id), json=body(edited("v")))
    assert_problem(saved, 403, "forbidden")
    # 403 comes before 404 (SPEC §4's order), even for a workflow that does not exist.
    missing = draft_url("00000000-0000-0000-0000-000000000000")
    assert_problem(await as_user(tenant, viewer, "PUT", missing, json=body({})), 403, "forbidden")
    assert_problem(
        await as_user(tenant, viewer, "DELETE", draft_url(workflow_id)), 403, "forbidden"
    )
    # A viewer may read its own (absent) draft.
    assert_problem(await as_user(tenant, viewer, "GET", draft_url(workflow_id)), 404, "not_found")
    # Nothing was saved for anyone.
    assert (await tenant.request("GET", draft_url(workflow_id))).status_code == 404


async def test_missing_workflow_and_other_tenants(tenant: Tenant, other_tenant: Tenant) -> None:
    workflow_id = await new_workflow(tenant)
    await save(tenant, workflow_id, body(edited("mine")))
    for method in ("GET", "PUT", "DELETE"):
        kw: dict[str, Any] = {"json": body(edited("x"))} if method == "PUT" else {}
        for url in (draft_url("00000000-0000-0000-0000-000000000000"), draft_url("nope")):
            assert_problem(await tenant.request(method, url, **kw), 404, "not_found")
        # Same user name ("admin") in another account: 404, exactly as a missing workflow.
        assert_problem(
            await other_tenant.request(method, draft_url(workflow_id), **kw), 404, "not_found"
        )
    # A save with a revision finds out in its own statement that there is no such workflow;
    # an invalid body (422) on a missing workflow is still a 404 (SPEC §4 order).
    missing = draft_url("00000000-0000-0000-0000-000000000000")
    for payload in (body(edited("x"), revision=1), {"definition": {}, "revision": 0}):
        assert_problem(await tenant.request("PUT", missing, json=payload), 404, "not_found")
        assert_problem(
            await other_tenant.request("PUT", draft_url(workflow_id), json=payload),
            404,
            "not_found",
        )
    # A JSON body sent as another content type is not read as JSON: 404 first, there too.
    plain = {"content-type": "text/plain"}
    content = json.dumps(body(edited("x"), revision=1))
    response = await tenant.request("PUT", missing, content=content, headers=plain)
    assert_problem(response, 404, "not_found")
    assert (await tenant.request("GET", draft_url(workflow_id))).json()["definition"] == edited(
        "mine"
    )


async def test_saving_a_draft_never_creates_a_version_nor_changes_the_etag(tenant: Tenant) -> None:
    workflow_id = await new_workflow(tenant)
    etag, numbers = await workflow_state(tenant, workflow_id)
    revision = None
    for i in range(5):
        saved = await save(tenant, workflow_id, body(edited(f"draft {i}"), revision=revision))
        revision = saved["revision"]
        assert await workflow_state(tenant, workflow_id) == (etag, numbers)
    # An If-Match with the etag read before the saves still matches.
    renamed = await tenant.request(
        "PATCH", wf_url(workflow_id), json={"name": "renamed"}, headers={"If-Match": etag}
    )
    assert renamed.status_code == 200, renamed.text
    audit = await tenant.request("GET", "/api/v1/audit", params={"workflow_id": workflow_id})
    assert not [e for e in audit.json()["items"] if "draft" in e["action"]]


async def test_the_draft_is_independent_of_the_versions(tenant: Tenant) -> None:
    """A draft based on version 1 survives versions created by others; its content is its own."""
    workflow_id = await new_workflow(tenant)
    bob = await tenant.key_for("editor", "bob@example.com")
    mine = await save(tenant, workflow_id, body(edited("mine")))
    created = await as_user(
        tenant,
        bob,
        "POST",
        f"{wf_url(workflow_id)}/versions",
        json={"definition": edited("bob's"), "change_summary": "bob", "base_version": 1},
    )
    assert created.status_code == 201
    assert (await tenant.request("GET", draft_url(workflow_id))).json() == mine
    # Creating a version from the stale base answers stale_base and keeps the draft.
    stale = await tenant.request(
        "POST",
        f"{wf_url(workflow_id)}/versions",
        json={"definition": edited("mine"), "change_summary": "mine", "base_version": 1},
    )
    assert_problem(stale, 409, "stale_base")
    assert (await tenant.request("GET", draft_url(workflow_id))).json() == mine


# --- races ------------------------------------------------------------------------------------

ROUNDS = 4


@pytest.fixture
async def racers(backend: str, fresh_database_url: str) -> AsyncIterator[Racers]:
    """Two clients reaching one database through different processes (tests/support/servers.py)."""
    async with racing_clients(backend, fresh_database_url) as clients:
        yield clients


async def test_two_saves_of_the_same_revision_at_once_one_wins(racers: Racers) -> None:
    create = await racers.call(
        0,
        "POST",
        "/api/v1/workflows",
        json={"name": "raced", "definition": simple_definition(), "change_summary": "first"},
    )
    assert create.status_code == 201, create.text
    workflow_id = create.json()["id"]
    url = draft_url(workflow_id)
    etag = create.json()["etag"]

    revision: int | None = None  # round 0 races the first save (no revision on either side)
    for round_ in range(ROUNDS + 1):
        payloads = [body(edited(f"round {round_} by {side}"), revision=revision) for side in (0, 1)]
        answers = await race(
            [partial(racers.call, side, "PUT", url, json=payloads[side]) for side in (0, 1)]
        )
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200, 409], [a.text for a in answers]
        won = next(a for a in answers if a.status_code == 200).json()
        lost = next(a for a in answers if a.status_code == 409).json()
        assert lost["code"] == "stale_draft"
        expected = 1 if revision is None else revision + 1
        assert won["revision"] == expected
        # The loser is handed the winner's draft, to merge with.
        assert lost["draft"] == won
        assert won["definition"] in [p["definition"] for p in payloads]
        recovered = await racers.call(round_, "GET", url)
        assert recovered.json() == won
        revision = won["revision"]

    # Every process sees the same draft; no version was created, the etag is unchanged.
    for side in range(len(racers.clients)):
        assert (await racers.call(side, "GET", url)).json()["revision"] == ROUNDS + 1
    workflow = await racers.call(1, "GET", wf_url(workflow_id))
    assert workflow.json()["etag"] == etag and workflow.json()["version_count"] == 1


async def test_a_save_parses_its_body_once_for_the_check_and_the_lookup_decision(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether a save needs the workflow looked up first (an invalid body: 404 before 422)
    is decided on the body the request's JSON check already parsed, not on a second parse;
    both decisions still come out right."""
    from revflow.workflows.routes import DraftIn

    def parsed_again(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the body was parsed a second time")

    monkeypatch.setattr(DraftIn, "model_validate_json", parsed_again)
    workflow_id = await new_workflow(tenant)
    assert (await save(tenant, workflow_id, body(edited("once"))))["revision"] == 1
    missing = await tenant.request(
        "PUT", draft_url("00000000-0000-4000-8000-000000000000"), json={"revision": "x"}
    )
    assert_problem(missing, 404, "not_found")
    invalid = await tenant.request("PUT", draft_url(workflow_id), json={"revision": "x"})
    assert_problem(invalid, 422, "validation_error")


def _keys_reversed(value: Any) -> Any:
    """``value`` with every object's keys in the reverse of their sorted order."""
    if isinstance(value, dict):
        return {key: _keys_reversed(value[key]) for key in sorted(value, reverse=True)}
    if isinstance(value, list):
        return [_keys_reversed(item) for item in value]
    return value


async def test_a_valid_definition_is_stored_from_the_canonical_json_of_its_check(
    engine: Engine,
) -> None:
    """The check of a valid draft writes its canonical JSON (sorted keys) anyway: the save
    stores that text rather than encoding the definition a second time. An invalid draft, which
    may have no canonical form, is stored as it came. Both read back as they were sent."""
    tenant = engine.tenant
    workflow_id = await new_workflow(tenant)
    await save(tenant, workflow_id, body(edited("first")))
    written: list[str] = []

    def seen(_c: Any, _cur: Any, statement: str, parameters: Any, _x: Any, _m: bool) -> None:
        if statement.lstrip().upper().startswith("UPDATE WORKING_DRAFTS"):
            written.extend(p for p in parameters if isinstance(p, str) and '"steps"' in p)

    valid = _keys_reversed(edited("sorted"))
    invalid = {"steps": [{"type": "nope", "id": "x"}], "trigger": {"type": "manual"}}
    sync_engine = engine.worker.db.engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", seen)
    try:
        saved = await save(tenant, workflow_id, body(valid, revision=1))
        assert saved["valid"] is True
        assert written == [canonical_json(valid).decode()]
        written.clear()
        saved = await save(tenant, workflow_id, body(invalid, revision=2))
        assert saved["valid"] is False
        assert len(written) == 1 and json.loads(written[0]) == invalid
    finally:
        event.remove(sync_engine, "before_cursor_execute", seen)
    recovered = await tenant.request("GET", draft_url(workflow_id))
    assert recovered.json()["definition"] == invalid
    again = await save(tenant, workflow_id, body(valid, revision=3))
    assert again["definition"] == valid
    assert (await tenant.request("GET", draft_url(workflow_id))).json()["definition"] == valid


async def test_a_valid_draft_answers_its_definition_as_stored(tenant: Tenant) -> None:
    """The answer to a save carries a valid definition as the canonical JSON it was stored
    from, written as it is; an invalid one as it came (the first save of a draft too)."""
    workflow_id = await new_workflow(tenant)
    valid = _keys_reversed(edited("sorted"))
    for revision in (None, 1):
        response = await tenant.request(
            "PUT", draft_url(workflow_id), json=body(valid, revision=revision)
        )
        assert response.status_code == 200, response.text
        assert b'"definition":' + canonical_json(valid) in response.content
        assert response.json()["definition"] == valid
    invalid = {"trigger": {"type": "manual"}, "steps": [{"type": "nope", "id": "x"}]}
    response = await tenant.request("PUT", draft_url(workflow_id), json=body(invalid, revision=2))
    assert response.status_code == 200 and response.json()["valid"] is False
    assert b'"definition":{"trigger":{"type":"manual"},"steps":' in response.content
