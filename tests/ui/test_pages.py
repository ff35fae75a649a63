"""The console's pages through the app (httpx, no browser), on SQLite and PostgreSQL: sign-in,
the session cookie, CSRF, roles, problems shown in place, the editor's calls."""

from __future__ import annotations

import re
from html import unescape
from http.cookies import SimpleCookie

import httpx

from revflow.app import create_app
from revflow.config import Settings
from revflow.db import Database
from revflow.ui.session import COOKIE
from tests.support.console import console_session
from tests.support.tenants import Tenant
from tests.support.workflows import create_version, create_workflow, simple_definition


def _app(settings: Settings, db: Database) -> httpx.AsyncClient:
    app = create_app(settings, db)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://revflow.test")


def _etag(html: str) -> str:
    found = re.search(r'name="etag" value="([^"]+)"', html)
    assert found, html
    return unescape(found.group(1))


async def _sign_in_form(client: httpx.AsyncClient) -> str:
    page = await client.get("/ui/sign-in")
    assert page.status_code == 200
    assert re.search(r'<label for="api_key">API key</label>', page.text)
    found = re.search(r'name="sign_in_token" value="([^"]+)"', page.text)
    assert found
    return found.group(1)


async def test_sign_in_sets_a_strict_http_only_cookie_without_the_key(
    settings: Settings, db: Database, tenant: Tenant
) -> None:
    async with _app(settings, db) as client:
        first = await client.get("/ui/workflows/")
        assert first.status_code in (303, 404)
        redirected = await client.get("/ui/workflows")
        assert redirected.status_code == 303
        assert redirected.headers["location"] == "/ui/sign-in?next=%2Fui%2Fworkflows"
        token = await _sign_in_form(client)
        wrong = await client.post(
            "/ui/sign-in", data={"api_key": "rf_nope", "sign_in_token": token}
        )
        assert wrong.status_code == 401 and "unknown or revoked" in wrong.text
        token = await _sign_in_form(client)
        signed = await client.post(
            "/ui/sign-in",
            data={"api_key": tenant.key, "sign_in_token": token, "next": "https://evil.example/"},
        )
        assert signed.status_code == 303
        assert signed.headers["location"] == "/ui/workflows"  # never another site
        header = next(h for h in signed.headers.get_list("set-cookie") if h.startswith(COOKIE))
        assert "HttpOnly" in header and "SameSite=strict" in header and "Path=/ui" in header
        cookie = SimpleCookie(header)[COOKIE]
        assert tenant.key not in cookie.value and tenant.key[3:] not in cookie.value
        assert int(cookie["max-age"]) == 12 * 3600
        page = await client.get("/ui/workflows")
        assert page.status_code == 200 and "Workflows" in page.text


async def test_sign_in_needs_its_form_token(
    settings: Settings, db: Database, tenant: Tenant
) -> None:
    async with _app(settings, db) as client:
        refused = await client.post(
            "/ui/sign-in", data={"api_key": tenant.key, "sign_in_token": "forged"}
        )
        assert refused.status_code == 403
        assert COOKIE not in refused.headers.get("set-cookie", "")


async def test_revoking_the_key_or_tampering_with_the_cookie_ends_the_session(
    settings: Settings, db: Database, tenant: Tenant
) -> None:
    key = await tenant.key_for("editor", "leaver@a.example")
    app = create_app(settings, db)
    session = await console_session(app, key)
    assert (await session.get("/ui/workflows")).status_code == 200
    # A changed cookie is not accepted.
    value = session.client.cookies[COOKIE]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://revflow.test") as other:
        for cookie in (value, value[:-2] + ("aa" if value[-2:] != "aa" else "bb"), "x.y.z"):
            answer = await other.get("/ui/workflows", headers={"Cookie": f"{COOKIE}={cookie}"})
            assert answer.status_code == (200 if cookie == value else 303), cookie
    keys = (await tenant.request("GET", "/api/v1/api-keys")).json()["items"]
    key_id = next(k["id"] for k in keys if k["user"] == "leaver@a.example")
    assert (await tenant.request("DELETE", f"/api/v1/api-keys/{key_id}")).status_code == 200
    after = await session.get("/ui/workflows")
    assert after.status_code == 303 and after.headers["location"].startswith("/ui/sign-in")
    await session.client.aclose()


async def test_sign_out_clears_the_cookie(settings: Settings, db: Database, tenant: Tenant) -> None:
    session = await console_session(create_app(settings, db), tenant.key)
    refused = await session.client.post("/ui/sign-out")  # no CSRF token
    assert refused.status_code == 403
    out = await session.post("/ui/sign-out")
    assert out.status_code == 303 and out.headers["location"] == "/ui/sign-in"
    assert (await session.get("/ui/workflows")).status_code == 303
    await session.client.aclose()


async def test_a_viewer_sees_no_change_buttons_and_is_refused_anyway(
    settings: Settings, db: Database, tenant: Tenant
) -> None:
    workflow = await create_workflow(tenant, "Viewed")
    await create_version(tenant, workflow["id"], simple_definition(), None, publish=True)
    await create_version(tenant, workflow["id"], simple_definition("Changed"), 1)
    app = create_app(settings, db)
    viewer = await console_session(app, await tenant.key_for("viewer", "v@a.example"))
    editor = await console_session(app, await tenant.key_for("editor", "e@a.example"))
    history = f"/ui/workflows/{workflow['id']}"
    for session, sees in ((viewer, False), (editor, True)):
        page = (await session.get(history)).text
        for button in ("Publish…", "New version", ">Pause<", "Canary…"):
            assert (button in page) is sees, (button, sees)
        listing = (await session.get("/ui/workflows")).text
        assert ("Create and edit" in listing) is sees
    refused = await viewer.post(f"{history}/pause")
    assert refused.status_code == 403 and "editor role" in refused.text
    detail = (await tenant.request("GET", f"/api/v1/workflows/{workflow['id']}")).json()
    assert detail["status"] == "active"
    await viewer.client.aclose()
    await editor.client.aclose()


async def test_problems_are_shown_in_place_never_a_trace(
    settings: Settings, db: Database, tenant: Tenant
) -> None:
    workflow = await create_workflow(tenant, "Problems")
    await create_version(tenant, workflow["id"], simple_definition(), None, publish=True)
    await create_version(tenant, workflow["id"], simple_definition("Two"), 1)
    session = await console_session(create_app(settings, db), tenant.key)
    base = f"/ui/workflows/{workflow['id']}"
    # A canary share out of range: the confirm page again, with the message under the input.
    page = await session.get(f"{base}/versions/2/publish?canary=1")
    etag = _etag(page.text)
    bad = await session.post(
        f"{base}/versions/2/publish?canary=1",
        data={"canary_percent": "0", "etag": etag},
    )
    assert bad.status_code == 422
    assert "a whole number from 1 to 99" in bad.text and "Traceback" not in bad.text
    # The workflow changed since the impact was shown: refused, with the new impact.
    await tenant.request("PATCH", f"/api/v1/workflows/{workflow['id']}", json={"name": "Renamed"})
    stale = await session.post(f"{base}/versions/2/publish", data={"etag": etag})
    assert stale.status_code == 412 and "changed since you read it" in stale.text
    # A rollback to a never-published draft: 409 in place.
    page = await session.get(f"{base}/versions/2/rollback")
    etag = _etag(page.text)
    never = await session.post(
        f"{base}/versions/2/rollback", data={"reason": "why not", "etag": etag}
    )
    assert never.status_code == 409 and "never published" in never.text
    # Unknown ids and pages: a 404 page.
    for url in (f"{base}/versions/99", "/ui/workflows/not-a-uuid", "/ui/nowhere"):
        missing = await session.get(url)
        assert missing.status_code == 404 and "Nothing here" in missing.text, url
    # Static files come from the package.
    viz = await session.get("/ui/static/vendor/viz-js/viz-global.js")
    assert viz.status_code == 200 and "Viz.js" in viz.text[:200]
    await session.client.aclose()


async def test_the_editors_calls_check_save_and_create(
    settings: Settings, db: Database, tenant: Tenant
) -> None:
    workflow = await create_workflow(tenant, "Edited")
    session = await console_session(create_app(settings, db), tenant.key)
    base = f"/ui/workflows/{workflow['id']}"
    editor = await session.get(f"{base}/edit")
    assert editor.status_code == 200 and "Create version 1" in editor.text
    text = "trigger:\n  type: manual\nsteps:\n  - id: a\n    type: end\n  - id: b\n    type: nope\n"
    checked = await session.send_json("POST", f"{base}/edit/check", {"text": text})
    assert checked.status_code == 200
    problems = checked.json()["problems"]
    assert problems and problems[0]["pointer"].startswith("/steps/1") and problems[0]["line"] == 7
    assert "digraph" in checked.json()["dot"]
    unparsed = await session.send_json("POST", f"{base}/edit/check", {"text": "a: [\n"})
    assert unparsed.json()["valid"] is False and unparsed.json()["dot"] is None
    # Auto-save: seen in the API; a save from an older revision is refused with the newer one.
    saved = await session.send_json("PUT", f"{base}/draft", {"text": text, "revision": None})
    assert saved.status_code == 200 and saved.json()["revision"] == 1
    api = await tenant.request("GET", f"/api/v1/workflows/{workflow['id']}/draft")
    assert api.json()["definition"]["steps"][1]["type"] == "nope"
    again = await session.send_json("PUT", f"{base}/draft", {"text": text + "#", "revision": 1})
    assert again.json()["revision"] == 2
    stale = await session.send_json("PUT", f"{base}/draft", {"text": "x: 1", "revision": 1})
    assert stale.status_code == 409 and stale.json()["code"] == "stale_draft"
    assert stale.json()["draft"]["revision"] == 2
    # Text that does not parse is kept as it is typed.
    kept = await session.send_json("PUT", f"{base}/draft", {"text": "a: [", "revision": 2})
    assert kept.status_code == 200
    api = await tenant.request("GET", f"/api/v1/workflows/{workflow['id']}/draft")
    assert api.json()["definition"] == "a: ["
    # Create: problems carry their line; then version 1; then a stale base answers 409.
    invalid = await session.send_json(
        "POST", f"{base}/versions", {"text": text, "change_summary": "x", "base_version": None}
    )
    assert invalid.status_code == 422 and invalid.json()["errors"][0]["line"] == 7
    good = text.replace("nope", "end")
    created = await session.send_json(
        "POST", f"{base}/versions", {"text": good, "change_summary": "First", "base_version": None}
    )
    assert created.status_code == 201, created.text
    assert created.json()["url"].endswith("/versions/1")
    draft = await tenant.request("GET", f"/api/v1/workflows/{workflow['id']}/draft")
    assert draft.status_code == 404  # creating the version ended the draft
    stale_base = await session.send_json(
        "POST", f"{base}/versions", {"text": good, "change_summary": "Again", "base_version": None}
    )
    assert stale_base.status_code == 409 and stale_base.json()["latest_version"] == 1
    no_summary = await session.send_json(
        "POST", f"{base}/versions", {"text": good, "change_summary": "", "base_version": 1}
    )
    assert no_summary.status_code == 422
    assert no_summary.json()["errors"][0]["pointer"] == "/change_summary"
    await session.client.aclose()


async def test_audit_page_filters_by_workflow_and_action(
    settings: Settings, db: Database, tenant: Tenant
) -> None:
    first = await create_workflow(tenant, "Audited one")
    await create_workflow(tenant, "Audited two")
    session = await console_session(create_app(settings, db), tenant.key)
    everything = (await session.get("/ui/audit")).text
    assert everything.count("workflow.created") >= 3  # two rows and the filter's option
    only = await session.get(
        "/ui/audit", params={"workflow_id": first["id"], "action": "workflow.created"}
    )
    rows = re.findall(r"<tr>\s*<td data-label=\"When\"", only.text)
    assert len(rows) == 1 and "Audited one" in only.text
    await session.client.aclose()


async def test_a_migration_onto_a_version_never_released_needs_a_tick(
    settings: Settings, db: Database, tenant: Tenant
) -> None:
    workflow = await create_workflow(tenant, "Unreleased")
    await create_version(tenant, workflow["id"], simple_definition(), None, publish=True)
    await create_version(tenant, workflow["id"], simple_definition("Two"), 1)
    contact = await tenant.request("POST", "/api/v1/contacts", json={"email": "u@a.example"})
    enrolled = await tenant.request(
        "POST",
        f"/api/v1/workflows/{workflow['id']}/enrollments",
        json={"contact_ids": [contact.json()["id"]]},
    )
    assert enrolled.json()["enrolled"] == 1
    session = await console_session(create_app(settings, db), tenant.key)
    url = f"/ui/workflows/{workflow['id']}/migrate"
    plan = await session.get(url, params={"from": "1", "to": "2"})
    assert plan.status_code == 200 and "never published or canaried" in plan.text
    refused = await session.post(url, data={"from": "1", "to": "2", "checked": "1"})
    assert refused.status_code == 409 and "publish it first" in refused.text
    started = await session.post(
        url, data={"from": "1", "to": "2", "checked": "1", "allow_unreleased": "true"}
    )
    assert started.status_code == 303 and started.headers["location"].startswith("/ui/migrations/")
    await session.client.aclose()


async def test_resuming_from_the_console_applies_what_was_held_while_paused(
    settings: Settings, db: Database, tenant: Tenant
) -> None:
    workflow = await create_workflow(tenant, "Held")
    definition = {
        "trigger": {"type": "manual"},
        "steps": [{"id": "hold", "type": "wait", "duration": "2d"}],
        "goals": [{"id": "purchased", "event": "purchase"}],
    }
    await create_version(tenant, workflow["id"], definition, None, publish=True)
    contact = await tenant.request("POST", "/api/v1/contacts", json={"email": "h@a.example"})
    enrolled = await tenant.request(
        "POST",
        f"/api/v1/workflows/{workflow['id']}/enrollments",
        json={"contact_ids": [contact.json()["id"]]},
    )
    execution = f"/api/v1/executions/{enrolled.json()['executions'][0]}"
    session = await console_session(create_app(settings, db), tenant.key)
    history = f"/ui/workflows/{workflow['id']}"
    assert (await session.post(f"{history}/pause")).status_code == 303
    event = {"contact_id": contact.json()["id"], "name": "purchase"}
    assert (await tenant.request("POST", "/api/v1/events", json=event)).status_code < 300
    assert (await tenant.request("GET", execution)).json()["status"] == "active"  # held
    assert (await session.post(f"{history}/resume")).status_code == 303
    after = (await tenant.request("GET", execution)).json()
    assert (after["status"], after["outcome"]) == ("completed", "goal:purchased")
    await session.client.aclose()
