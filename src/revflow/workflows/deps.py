"""The dependency of every change to one workflow: lock it, replay an idempotent retry,
check ``If-Match`` — in the order SPEC §4 gives (404 before 412)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from revflow.auth.service import Principal
from revflow.deps import Editor, WriteSession
from revflow.kit import idempotency
from revflow.kit.etag import check_if_match, make_etag
from revflow.models import Workflow
from revflow.workflows.service import require_workflow


@dataclass
class WorkflowChange:
    session: AsyncSession
    principal: Principal
    workflow: Workflow
    claim: idempotency.Claim | None

    @property
    def replay(self) -> JSONResponse | None:
        return self.claim.replay if self.claim else None

    @property
    def etag(self) -> str:
        return make_etag(self.workflow.id, self.workflow.revision)


async def workflow_change(
    request: Request, workflow_id: str, principal: Editor, session: WriteSession
) -> WorkflowChange:
    workflow = await require_workflow(session, principal.account_id, workflow_id, lock=True)
    claim = await idempotency.claim(session, request, principal.account_id)
    if claim is None or claim.replay is None:
        check_if_match(request.headers.get("if-match"), make_etag(workflow.id, workflow.revision))
    return WorkflowChange(session, principal, workflow, claim)


Change = Annotated[WorkflowChange, Depends(workflow_change)]
