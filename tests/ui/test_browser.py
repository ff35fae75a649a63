"""The console in a real browser: Debian's Chromium driven by Playwright against a real
``revflow serve``. One walk through a workflow's whole life, the same pages at 390 px, and a
viewer. Screenshots are kept under ``test-artifacts/ui``."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.console import Console

V1 = """\
trigger:
  type: tag_added
  tag: lead
start: welcome
steps:
  - id: welcome
    type: send_email
    subject: "Welcome, {{contact.fields.first_name}}"
    body: Thanks for signing up.
    next: pause
  - id: pause
    type: wait
    duration: 2d
    next: is_vip
  - id: is_vip
    type: condition
    if: {field: tags, op: contains, value: vip}
    then: vip_offer
    else: nurture
  - id: vip_offer
    type: send_sms
    body: A gift for you
  - id: nurture
    type: add_tag
    tag: nurture
  - id: thank_you
    type: send_email
    subject: Thank you!
    body: Enjoy.
goals:
  - id: purchased
    event: purchase
    then: thank_you
"""
# Version 2 renames the wait (a breaking change for the contacts waiting on it; the same
# content under a new id, so the compare suggests the mapping) and rewrites the subject.
V2 = (
    V1.replace("next: pause", "next: cool_off")
    .replace("id: pause", "id: cool_off")
    .replace(
        "Welcome, {{contact.fields.first_name}}", "Hello {{contact.fields.first_name}}, welcome!"
    )
)
CONTACTS = 12
WIDE = {"width": 1280, "height": 900}
NARROW = {"width": 390, "height": 844}


def _wait_for(what: str, check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _live_at(console: Console, workflow_id: str, version: int, step: str) -> int | None:
    stats = console.call("GET", f"/api/v1/workflows/{workflow_id}/versions/{version}/stats")
    live: int | None = stats["by_step"].get(step)
    return live


def _no_horizontal_scroll(page: Any, what: str) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    viewport = page.evaluate("window.innerWidth")
    assert width <= viewport, f"{what}: the page scrolls sideways ({width} > {viewport})"


def _shot(page: Any, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)


def _sign_in(page: Any, console: Console, key: str) -> None:
    page.goto(f"{console.url}/ui/workflows")
    assert "/ui/sign-in" in page.url
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/ui/workflows$"))


def _graph_drawn(page: Any) -> None:
    page.wait_for_selector("figure.graph[data-drawn] svg", timeout=15_000)


def _edit(page: Any, text: str) -> None:
    area = page.get_by_role("textbox", name="Definition", exact=True)
    area.fill(text)
    page.wait_for_selector("#save-state.saved", timeout=15_000)


def test_a_workflows_life_in_the_browser(
    console_server: Console, browser: Any, artifacts: Path
) -> None:
    console = console_server
    context = browser.new_context(viewport=WIDE)
    page = context.new_page()
    page.set_default_timeout(15_000)
    _sign_in(page, console, console.key)

    # Create a workflow: the editor opens on a starter definition.
    page.get_by_label("Name", exact=True).fill("Welcome series")
    page.get_by_role("button", name="Create and edit").click()
    page.wait_for_url(re.compile(r"/edit$"))
    workflow_id = page.url.split("/")[-2]

    # Type an invalid definition: its problem is listed with its JSON Pointer.
    page.get_by_role("textbox", name="Definition", exact=True).fill(
        V1.replace("then: vip_offer", "then: nowhere")
    )
    page.wait_for_selector("#problems li:has-text('/steps/2/then')")
    # The valid one: the problems clear, the preview redraws, auto-save stores it.
    _edit(page, V1)
    page.wait_for_selector("#problems .ok-text")
    _graph_drawn(page)
    assert re.fullmatch(r"Saved \d\d:\d\d:\d\d", page.locator("#save-state").inner_text())
    draft = console.call("GET", f"/api/v1/workflows/{workflow_id}/draft")
    assert [s["id"] for s in draft["definition"]["steps"]][:2] == ["welcome", "pause"]
    _shot(page, artifacts, "editor")

    page.get_by_label("Change summary").fill("First welcome series")
    page.get_by_role("button", name="Create version").last.click()
    page.wait_for_url(re.compile(r"/versions/1$"))

    # Publish version 1 from the history, through its impact page.
    page.goto(f"{console.url}/ui/workflows/{workflow_id}")
    page.get_by_role("link", name="Publish…").click()
    page.get_by_role("button", name="Publish version 1").click()
    page.wait_for_url(re.compile(rf"/ui/workflows/{workflow_id}$"))
    assert page.locator("tr[data-version='1'] .badge-current").count() == 1

    # Contacts are enrolled and wait two days on `pause`.
    contacts = [
        console.call(
            "POST",
            "/api/v1/contacts",
            json={"email": f"c{i}@example.com", "fields": {"first_name": "A"}},
        )["id"]
        for i in range(CONTACTS)
    ]
    enrolled = console.call(
        "POST", f"/api/v1/workflows/{workflow_id}/enrollments", json={"contact_ids": contacts}
    )
    assert enrolled["enrolled"] == CONTACTS, enrolled
    _wait_for(
        "the contacts to wait on `pause`",
        lambda: _live_at(console, workflow_id, 1, "pause") == CONTACTS,
    )

    # Version 2 in the editor (which starts from version 1).
    page.goto(f"{console.url}/ui/workflows/{workflow_id}/edit")
    _edit(page, V2)
    page.get_by_label("Change summary").fill("Rename the wait, friendlier subject")
    page.get_by_role("button", name="Create version").last.click()
    page.wait_for_url(re.compile(r"/versions/2$"))
    with pytest.raises(AssertionError):  # the draft ended with the version
        console.call("GET", f"/api/v1/workflows/{workflow_id}/draft")

    # Version view of 1: the graph with its live badge.
    page.goto(f"{console.url}/ui/workflows/{workflow_id}/versions/1")
    _graph_drawn(page)
    assert page.get_by_test_id("live-total").inner_text() == str(CONTACTS)
    assert f"● {CONTACTS}" in (page.locator("figure.graph svg").text_content() or "")
    _shot(page, artifacts, "version")

    # Compare 1 ↔ 2: the breaking change and the executions it affects.
    page.goto(f"{console.url}/ui/workflows/{workflow_id}/compare?from=1&to=2")
    _graph_drawn(page)
    breaking = page.get_by_test_id("breaking")
    assert "pause" in breaking.inner_text()
    assert page.get_by_test_id("affected").first.inner_text() == f"{CONTACTS} executions"
    assert page.get_by_test_id("bump").inner_text() == "major"
    assert "/subject" in page.locator(".change.modified").first.inner_text()
    _shot(page, artifacts, "compare")

    # Canary at 20 %, then promote: both through their impact pages.
    page.goto(f"{console.url}/ui/workflows/{workflow_id}")
    page.get_by_role("link", name="Canary…").click()
    assert page.get_by_test_id("live-source").inner_text() == str(CONTACTS)
    page.get_by_label("Share of new enrollments (%)").fill("20")
    page.get_by_role("button", name="Start canary of version 2").click()
    page.wait_for_url(re.compile(rf"/ui/workflows/{workflow_id}$"))
    assert page.get_by_test_id("canary-percent").inner_text() == "20 %"
    _shot(page, artifacts, "history-canary")
    page.get_by_role("link", name="Promote…").click()
    page.get_by_role("button", name="Promote the canary").click()
    page.wait_for_url(re.compile(rf"/ui/workflows/{workflow_id}$"))
    assert page.locator("tr[data-version='2'] .badge-current").count() == 1
    _shot(page, artifacts, "history")

    # Migrate v1's executions with the suggested mapping, watch the bar reach 100 %.
    page.get_by_role("link", name=f"Migrate its {CONTACTS} executions…").click()
    mapping = page.get_by_label("Target step for pause")
    assert mapping.input_value() == "cool_off"  # pre-filled from suggested_mapping
    assert f"{CONTACTS} movable · 0 unmovable" in page.get_by_test_id("dry-run").inner_text()
    _shot(page, artifacts, "migration-plan")
    page.get_by_test_id("start").click()
    page.wait_for_url(re.compile(r"/ui/migrations/"))
    migration_url = page.url
    page.wait_for_selector("[data-testid=percent]:has-text('100 %')", timeout=20_000)
    assert f"{CONTACTS} / {CONTACTS} moved" in page.get_by_test_id("counts").inner_text()
    _shot(page, artifacts, "migration")
    stats = console.call("GET", f"/api/v1/workflows/{workflow_id}/versions/2/stats")
    assert stats["by_step"].get("cool_off") == CONTACTS

    # Revert: a new migration that moves them back, followed live too.
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revert…").click()
    page.wait_for_url(lambda url: url != migration_url and "/ui/migrations/" in url)
    page.wait_for_selector("[data-testid=percent]:has-text('100 %')", timeout=20_000)
    _wait_for(
        "the executions to be back on v1",
        lambda: _live_at(console, workflow_id, 1, "pause") == CONTACTS,
    )

    # The compare and migration views at 390 px: no sideways scrolling, buttons reachable.
    narrow = browser.new_context(viewport=NARROW)
    phone = narrow.new_page()
    _sign_in(phone, console, console.key)
    phone.goto(f"{console.url}/ui/workflows/{workflow_id}/compare?from=1&to=2")
    _graph_drawn(phone)
    _no_horizontal_scroll(phone, "compare at 390 px")
    _shot(phone, artifacts, "compare-390")
    phone.goto(migration_url)
    phone.wait_for_selector("[data-testid=percent]:has-text('100 %')")
    _no_horizontal_scroll(phone, "migration at 390 px")
    _shot(phone, artifacts, "migration-390")
    phone.goto(f"{console.url}/ui/workflows/{workflow_id}")
    _no_horizontal_scroll(phone, "history at 390 px")
    narrow.close()
    context.close()


def test_a_viewer_sees_no_change_button(
    console_server: Console, browser: Any, artifacts: Path
) -> None:
    console = console_server
    workflow = console.call("POST", "/api/v1/workflows", json={"name": "Read only"})
    definition = {"trigger": {"type": "manual"}, "steps": [{"id": "done", "type": "end"}]}
    for base in (None, 1):
        console.call(
            "POST",
            f"/api/v1/workflows/{workflow['id']}/versions",
            json={
                "definition": {**definition, "start": "done"} if base else definition,
                "change_summary": "v",
                "base_version": base,
                "publish": base is None,
            },
        )
    viewer = console.call(
        "POST", "/api/v1/api-keys", json={"user": "v@x.example", "role": "viewer"}
    )
    context = browser.new_context(viewport=WIDE)
    page = context.new_page()
    page.set_default_timeout(15_000)
    _sign_in(page, console, viewer["api_key"])
    pages = [
        "/ui/workflows",
        f"/ui/workflows/{workflow['id']}",
        f"/ui/workflows/{workflow['id']}/versions/2",
        f"/ui/workflows/{workflow['id']}/compare?from=1&to=2",
    ]
    for path in pages:
        page.goto(console.url + path)
        buttons = [b.strip() for b in page.locator("main button, main a.button").all_inner_texts()]
        changing = [b for b in buttons if b not in ("Compare", "Compare with current", "Filter")]
        assert not changing, f"{path}: a viewer sees {changing}"
    # The editor itself is refused, in place.
    response = page.goto(f"{console.url}/ui/workflows/{workflow['id']}/edit")
    assert response.status == 403
    assert "editor role" in page.get_by_test_id("problem").inner_text()
    context.close()
