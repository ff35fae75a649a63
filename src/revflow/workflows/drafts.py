"""Working drafts: each user's auto-saved scratch copy of a workflow (SPEC §1, §4).

Any content may be saved; the answer carries the validation problems of that content so an
editor can show them while typing. ``revision`` protects against lost updates: a save names the
revision it was made from, and a conditional UPDATE lets exactly one of two racing saves win.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from dataclasses import dataclass
from typing import Any, Protocol, cast

from sqlalchemy import Executable, Table, bindparam, delete, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from revflow.config import Settings
from revflow.db import json_text_parameter
from revflow.definition import DefinitionInvalid, validate_definition
from revflow.errors import NotFound, StaleDraft
from revflow.models import Workflow, WorkingDraft


class WorkflowKey(Protocol):
    """What a draft needs of its workflow: a ``Workflow``, or a :class:`WorkflowRef` when the
    save itself finds out whether the workflow exists."""

    @property
    def account_id(self) -> uuid.UUID: ...

    @property
    def id(self) -> uuid.UUID: ...


@dataclass(frozen=True)
class WorkflowRef:
    """A workflow named by the request, not read yet."""

    account_id: uuid.UUID
    id: uuid.UUID


def draft_out(draft: WorkingDraft) -> dict[str, Any]:
    return {
        "workflow_id": str(draft.workflow_id),
        "user": draft.user,
        "definition": draft.definition,
        "base_version": draft.base_version,
        "revision": draft.revision,
        "saved_at": draft.saved_at.isoformat(),
        "valid": not draft.problems,
        "problems": draft.problems,
        "warnings": draft.warnings,
    }


def check(
    definition: Any, settings: Settings, *, parsed: bool = False
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(problems, warnings) of the draft's content (``parsed``: as ``validate_definition``'s);
    never raises."""
    problems, warnings, _canonical = _checked(definition, settings, parsed=parsed)
    return problems, warnings


def _checked(
    definition: Any, settings: Settings, *, parsed: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bytes | None]:
    """:func:`check`'s answer and, for a valid definition, its canonical JSON (``None`` for
    an invalid one, which may not be JSON the validation could write)."""
    try:
        validated = validate_definition(
            definition,
            max_steps=settings.max_steps,
            max_definition_bytes=settings.max_definition_bytes,
            parsed=parsed,
        )
    except DefinitionInvalid as exc:
        return [dict(e) for e in exc.errors], [], None
    return [], [dict(w) for w in validated.warnings], validated.canonical


async def get(session: AsyncSession, workflow: WorkflowKey, user: str) -> WorkingDraft | None:
    return await session.scalar(
        select(WorkingDraft).where(
            WorkingDraft.account_id == workflow.account_id,
            WorkingDraft.workflow_id == workflow.id,
            WorkingDraft.user == user,
        )
    )


async def _refused(
    session: AsyncSession, workflow: WorkflowKey, user: str, message: str
) -> NotFound | StaleDraft:
    """Why a save wrote nothing: the workflow does not exist (404), or the draft is not at
    the revision the save was made from (409, with the current draft)."""
    if not isinstance(workflow, Workflow):
        exists = await session.scalar(
            select(Workflow.id).where(
                Workflow.account_id == workflow.account_id, Workflow.id == workflow.id
            )
        )
        if exists is None:
            return NotFound(f"No workflow {workflow.id}")
    current = await get(session, workflow, user)
    return StaleDraft(message, draft=draft_out(current) if current else None)


async def save(
    session: AsyncSession,
    workflow: WorkflowKey,
    user: str,
    *,
    definition: Any,
    base_version: int | None,
    revision: int | None,
    settings: Settings,
    now: dt.datetime,
    parsed: bool = False,
) -> tuple[WorkingDraft, bytes | None]:
    """Save ``user``'s draft of ``workflow`` with its problems and warnings (``parsed``: the
    definition is the request's JSON value, checked without a copy of it). Returns the draft
    and, for a valid definition, its canonical JSON (for an answer to carry as it is)."""
    problems, warnings, canonical = _checked(definition, settings, parsed=parsed)
    values = {
        "definition": definition,
        "base_version": base_version,
        "problems": problems,
        "warnings": warnings,
        "saved_at": now,
    }
    if revision is None:
        try:
            async with session.begin_nested():
                session.add(
                    WorkingDraft(
                        id=uuid.uuid4(),
                        account_id=workflow.account_id,
                        workflow_id=workflow.id,
                        user=user,
                        revision=1,
                        **values,
                    )
                )
        except IntegrityError:
            raise await _refused(
                session,
                workflow,
                user,
                "You have a saved draft; send its revision to overwrite it",
            ) from None
        draft = await get(session, workflow, user)
        assert draft is not None
        await session.refresh(draft)
        return draft, canonical
    # One conditional UPDATE … RETURNING decides a lost update and answers the new revision;
    # the rest of the answer is what was just written, so nothing is read back. A valid
    # definition is stored from the canonical JSON its validation wrote, not encoded again.
    parameters = {f"v_{key}": value for key, value in values.items()}
    if canonical is not None:
        parameters["v_definition"] = canonical.decode()
    statement = _save_statement(session.get_bind().dialect.name, as_text=canonical is not None)
    saved = (
        await session.execute(
            statement,
            {
                "d_account_id": workflow.account_id,
                "d_workflow_id": workflow.id,
                "d_user": user,
                "d_revision": revision,
                **parameters,
            },
        )
    ).first()
    if saved is None:
        raise await _refused(
            session, workflow, user, f"Revision {revision} is not the draft's current one"
        )
    draft = WorkingDraft(
        id=saved.id,
        account_id=workflow.account_id,
        workflow_id=workflow.id,
        user=user,
        revision=saved.revision,
        **values,
    )
    return draft, canonical


_DRAFTS = cast(Table, WorkingDraft.__table__)


@functools.lru_cache(maxsize=4)
def _save_statement(dialect: str, *, as_text: bool) -> Executable:
    """The conditional save, built once per database and form: ``d_*`` name the draft and
    the revision it was made from, ``v_*`` are the values written; ``as_text``: the
    definition is bound as its JSON text (which PostgreSQL parses into JSONB), not as a
    value to encode."""
    values: dict[str, Any] = {
        key: bindparam(f"v_{key}", type_=_DRAFTS.c[key].type)
        for key in ("definition", "base_version", "problems", "warnings", "saved_at")
    }
    if as_text:
        values["definition"] = json_text_parameter("v_definition", dialect)
    return (
        update(_DRAFTS)
        .where(
            _DRAFTS.c.account_id == bindparam("d_account_id"),
            _DRAFTS.c.workflow_id == bindparam("d_workflow_id"),
            _DRAFTS.c.user == bindparam("d_user"),
            _DRAFTS.c.revision == bindparam("d_revision"),
        )
        .values(revision=_DRAFTS.c.revision + 1, **values)
        .returning(_DRAFTS.c.id, _DRAFTS.c.revision)
    )


async def discard(session: AsyncSession, workflow: Workflow, user: str) -> None:
    if not await end(session, workflow, user):
        raise NotFound("You have no draft of this workflow")


async def end(session: AsyncSession, workflow: WorkflowKey, user: str) -> int:
    """Delete ``user``'s draft of ``workflow``; answers how many were deleted (0 or 1)."""
    result = await session.execute(END, end_parameters(workflow, user))
    return result.rowcount if isinstance(result, CursorResult) else 0


def end_parameters(workflow: WorkflowKey, user: str) -> dict[str, Any]:
    """The parameters of :data:`END` for ``user``'s draft of ``workflow``."""
    return {"end_account_id": workflow.account_id, "end_workflow_id": workflow.id, "end_user": user}


# The deletion of a user's draft, built once; also a part of the statement that creates a
# version (which ends its creator's draft).
END = delete(_DRAFTS).where(
    _DRAFTS.c.account_id == bindparam("end_account_id"),
    _DRAFTS.c.workflow_id == bindparam("end_workflow_id"),
    _DRAFTS.c.user == bindparam("end_user"),
)
