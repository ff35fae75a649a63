"""The audit trail, newest first, filterable by workflow and action."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from revflow.kit.ids import parse_id
from revflow.ui import repository as ui_repo
from revflow.ui.page import PageRoute, ViewerPage

router = APIRouter(prefix="/ui", route_class=PageRoute, include_in_schema=False)

PAGE_SIZE = 100


@router.get("/audit")
async def audit(
    page: ViewerPage, workflow_id: str = "", action: str = "", before: str = ""
) -> HTMLResponse:
    account = page.principal.account_id
    # Another account's (or a malformed) workflow id filters to nothing, like a missing one.
    parsed = parse_id(workflow_id) if workflow_id else None
    entries = (
        []
        if workflow_id and parsed is None
        else await ui_repo.audit_entries(
            page.db,
            account,
            workflow_id=parsed,
            action=action or None,
            before_seq=int(before) if before.isdigit() else None,
            limit=PAGE_SIZE + 1,
        )
    )
    workflows = await ui_repo.workflows(page.db, account, 500)
    return page.render(
        "audit.html",
        entries=entries[:PAGE_SIZE],
        older=entries[PAGE_SIZE - 1].seq if len(entries) > PAGE_SIZE else None,
        workflows=workflows,
        names={w.id: w.name for w in workflows},
        actions=await ui_repo.audit_actions(page.db, account),
        workflow_id=workflow_id,
        action=action,
        now=page.now,
    )
