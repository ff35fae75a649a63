"""The dependency of every change to one workflow: lock it, replay an idempotent retry,
check ``If-Match`` — in the order SPEC §4 gives (404 before 412)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from revflow.auth.service import Principal
from revflow.deps import Editor, Now, WriteSession
from revflow.errors import PreconditionFailed
from revflow.kit import idempotency
from revflow.kit.etag import check_if_match, make_etag
from revflow.kit.responses import committed
from revflow.models import Version, Workflow
from revflow.problems import raises
from revflow.workflows.service import require_version, require_workflow, version_number


@dataclass
class WorkflowChange:
    session: AsyncSession
    principal: Principal
    workflow: Workflow
    claim: idempotency.Claim | None
    now: dt.datetime
    version: Version | None = None

    @property
    def replay(self) -> JSONResponse | None:
        return self.claim.replay if self.claim else None

    def require_version(self) -> Version:
        assert self.version is not None, "route is not declared with VersionChange"
        return self.version

    @property
    def etag(self) -> str:
        return make_etag(self.workflow.id, self.workflow.revision)

    async def respond(self, body: Any, status: int = 200) -> JSONResponse:
        """Store the answer for idempotent retries, commit, and answer with the new ETag."""
        return await committed(self.session, self.claim, body, status, {"ETag": self.etag})


async def _locked_workflow(
    workflow_id: str, principal: Editor, session: WriteSession, now: Now
) -> WorkflowChange:
    workflow = await require_workflow(session, principal.account_id, workflow_id, lock=True)
    return WorkflowChange(session, principal, workflow, claim=None, now=now)


IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        description="The workflow's etag (from `ETag` or `etag`), quoted or not; `*` matches "
        "any. A mismatch answers 412 `etag_mismatch` and changes nothing.",
    ),
]
IdempotencyKey = Annotated[str | None, Depends(idempotency.key_header)]


async def _claim_and_check(
    request: Request, change: WorkflowChange, if_match: str | None
) -> WorkflowChange:
    change.claim = await idempotency.claim(change.session, request, change.principal.account_id)
    if change.replay is None:
        check_if_match(if_match, change.etag)
    return change


@raises(PreconditionFailed)
async def workflow_change(
    request: Request,
    change: Annotated[WorkflowChange, Depends(_locked_workflow)],
    _key: IdempotencyKey,
    if_match: IfMatch = None,
) -> WorkflowChange:
    return await _claim_and_check(request, change, if_match)


@raises(PreconditionFailed)
async def version_change(
    request: Request,
    number: str,
    change: Annotated[WorkflowChange, Depends(_locked_workflow)],
    _key: IdempotencyKey,
    if_match: IfMatch = None,
) -> WorkflowChange:
    """Like ``workflow_change`` for a route on one version: its 404 comes before the 412."""
    change.version = await require_version(
        change.session, change.workflow, version_number(change.workflow, number)
    )
    return await _claim_and_check(request, change, if_match)


Change = Annotated[WorkflowChange, Depends(workflow_change)]
VersionChange = Annotated[WorkflowChange, Depends(version_change)]
