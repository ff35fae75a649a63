"""Queries of workflows and versions, always scoped by account."""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import (
    BindParameter,
    Executable,
    Row,
    Select,
    Table,
    and_,
    bindparam,
    exists,
    func,
    insert,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from revflow.audit import repository as audit_repo
from revflow.db import json_text_parameter
from revflow.models import (
    Execution,
    Version,
    VersionTag,
    WebhookSubscription,
    Workflow,
    is_live,
)
from revflow.webhooks import repository as webhooks_repo
from revflow.workflows import drafts

# Every column of a version except its definition, for lists.
VERSION_SUMMARY_COLUMNS = [c for c in Version.__table__.c if c.name != "definition"]
VERSIONS = cast(Table, Version.__table__)
WORKFLOWS = cast(Table, Workflow.__table__)
_VERSION_KEYS = frozenset(column.key for column in VERSIONS.columns)
_VERSION_DEFAULTED = frozenset(
    column.key
    for column in VERSIONS.columns
    if column.default is not None or column.server_default is not None
)


async def get_workflow(
    session: AsyncSession, account_id: uuid.UUID, workflow_id: uuid.UUID, *, lock: bool = False
) -> Workflow | None:
    """The account's workflow; ``lock``: locked for a change, which will emit its webhook
    events, so the account's enabled subscriptions are read in the same statement (one round
    trip fewer for every change of a workflow or its versions)."""
    params = {"account_id": account_id, "workflow_id": workflow_id}
    if not lock:
        workflow: Workflow | None = await session.scalar(_WORKFLOW, params)
        return workflow
    rows = (await session.execute(_LOCKED_WORKFLOW, params)).all()
    if not rows:
        return None
    webhooks_repo.read_along(session, account_id, [(row[1], row[2]) for row in rows])
    locked: Workflow = rows[0][0]
    return locked


# The lookups of every route on one workflow, built once (values as parameters).
_WORKFLOW = select(Workflow).where(
    Workflow.account_id == bindparam("account_id"), Workflow.id == bindparam("workflow_id")
)
# One row per enabled subscription of the account (one with nulls when it has none); only the
# workflow's row is locked.
_LOCKED_WORKFLOW = (
    select(Workflow, WebhookSubscription.id, WebhookSubscription.events)
    .outerjoin(
        WebhookSubscription,
        and_(
            WebhookSubscription.account_id == Workflow.account_id,
            WebhookSubscription.enabled.is_(True),
        ),
    )
    .where(Workflow.account_id == bindparam("account_id"), Workflow.id == bindparam("workflow_id"))
    .with_for_update(of=Workflow)
)


async def add_version(
    session: AsyncSession,
    workflow: Workflow,
    version: Version,
    *,
    definition_json: bytes,
    updated_at: dt.datetime,
    ending_draft_of: str,
    audit_row: dict[str, Any] | None = None,
) -> bool:
    """Insert ``version`` (every column set) as the workflow's next, advance the workflow's
    version count and revision, and delete the working draft of the workflow that the
    version ends, ``ending_draft_of``'s (its creator's): one statement on PostgreSQL (the
    insert and the deletion in CTEs of the workflow's update), without the unit of work's
    bookkeeping on the path every version takes. The definition is stored from
    ``definition_json``, its JSON text (the canonical form the caller has made anyway), not
    encoded again. Both objects end up as if just loaded: ``version`` in the session, the
    workflow's new values committed to it (nothing left for a flush).

    ``audit_row`` (PostgreSQL only: ``audit.joining_row``) is appended to the account's audit
    chain in the same statement, where the chain's head still is the entry before it; answers
    whether it was (False without ``audit_row``)."""
    given = version.__dict__
    unset = _VERSION_KEYS - given.keys()
    if unset & _VERSION_DEFAULTED:
        raise ValueError(f"set every column with a default: {sorted(unset & _VERSION_DEFAULTED)}")
    advanced = {
        "version_count": version.number,
        "revision": workflow.revision + 1,
        "updated_at": updated_at,
    }
    inserted = {f"v_{key}": given.get(key) for key in _VERSION_KEYS}
    inserted["v_definition"] = definition_json.decode()
    updated = {f"w_{key}": value for key, value in advanced.items()}
    updated.update(w_account_id=workflow.account_id, w_id=workflow.id)
    ended = drafts.end_parameters(workflow, ending_draft_of)
    appended = False
    statements = _add_version_statements(session.get_bind().dialect.name)
    if audit_row is not None:
        parameters = inserted | updated | ended | audit_repo.append_after_parameters(audit_row)
        appended = bool((await session.execute(_ADD_VERSION_AND_ENTRY, parameters)).scalar())
    elif len(statements) == 1:
        await session.execute(statements[0], inserted | updated | ended)
    else:
        for statement, parameters in zip(statements, (inserted, updated, ended), strict=True):
            await session.execute(statement, parameters)
    for key in unset:
        set_committed_value(version, key, None)  # loaded as NULL, not expired
    make_transient_to_detached(version)
    session.add(version)
    for key, value in advanced.items():
        set_committed_value(workflow, key, value)
    return appended


@functools.lru_cache(maxsize=2)
def _add_version_statements(dialect: str) -> tuple[Executable, ...]:
    """The statements of ``add_version``, built once with every value a parameter (building
    them per call, with a coercion per value, cost more than executing them): ``v_<column>``
    for the version, ``w_<column>`` for the workflow's new values, ``w_account_id`` and
    ``w_id`` for its key, ``drafts.end_parameters`` for the draft. ``v_definition`` is the
    definition's JSON text."""
    values: dict[str, Any] = {
        column.key: bindparam(f"v_{column.key}", type_=column.type) for column in VERSIONS.c
    }
    values["definition"] = json_text_parameter("v_definition", dialect)
    insert_version = insert(VERSIONS).values(values)
    advance = (
        update(WORKFLOWS)
        .where(
            WORKFLOWS.c.account_id == bindparam("w_account_id"),
            WORKFLOWS.c.id == bindparam("w_id"),
        )
        .values(
            {
                key: bindparam(f"w_{key}", type_=WORKFLOWS.c[key].type)
                for key in ("version_count", "revision", "updated_at")
            }
        )
    )
    if dialect == "postgresql":
        return (
            advance.add_cte(insert_version.cte("version")).add_cte(drafts.END.cte("ended_draft")),
        )
    return (insert_version, advance, drafts.END)


def _add_version_and_entry() -> Executable:
    """PostgreSQL's statement of ``add_version`` with an ``audit_row``: the version's CTEs and
    the conditional append of the entry, answering how many entries it appended (1 or 0)."""
    (advance,) = _add_version_statements("postgresql")
    return (
        select(func.count())
        .select_from(audit_repo.APPENDED_AFTER)
        .add_cte(cast(Any, advance).cte("advanced"))
    )


_ADD_VERSION_AND_ENTRY = _add_version_and_entry()


async def list_workflows(
    session: AsyncSession,
    account_id: uuid.UUID,
    *,
    after: tuple[dt.datetime, uuid.UUID] | None,
    limit: int,
) -> Sequence[Workflow]:
    query = select(Workflow).where(Workflow.account_id == account_id)
    if after is not None:
        query = query.where(tuple_(Workflow.created_at, Workflow.id) < tuple_(after[0], after[1]))
    query = query.order_by(Workflow.created_at.desc(), Workflow.id.desc()).limit(limit)
    return (await session.scalars(query)).all()


async def version_status_counts(
    session: AsyncSession, account_id: uuid.UUID, workflow_id: uuid.UUID
) -> dict[str, int]:
    rows = await session.execute(
        select(Version.status, func.count())
        .where(Version.account_id == account_id, Version.workflow_id == workflow_id)
        .group_by(Version.status)
    )
    return {status: count for status, count in rows.all()}


async def get_version(
    session: AsyncSession,
    account_id: uuid.UUID,
    workflow_id: uuid.UUID,
    number: int,
    *,
    with_definition: bool = True,
) -> Version | None:
    """One version; without its definition (not loadable later) when ``with_definition`` is
    false."""
    query = select(Version).where(
        Version.account_id == account_id,
        Version.workflow_id == workflow_id,
        Version.number == number,
    )
    if not with_definition:
        query = query.options(defer(Version.definition, raiseload=True))
    return await session.scalar(query)


async def get_versions_without_definitions(
    session: AsyncSession, account_id: uuid.UUID, workflow_id: uuid.UUID, numbers: Sequence[int]
) -> dict[int, Version]:
    """The workflow's versions numbered ``numbers`` that exist, by number, in one query;
    without their definitions (not loadable later)."""
    found = await session.scalars(
        _VERSIONS_BY_NUMBER,
        {"account_id": account_id, "workflow_id": workflow_id, "numbers": list(numbers)},
    )
    return {version.number: version for version in found}


# Built once, the numbers an expanding parameter.
_VERSIONS_BY_NUMBER = (
    select(Version)
    .where(
        Version.account_id == bindparam("account_id"),
        Version.workflow_id == bindparam("workflow_id"),
        Version.number.in_(bindparam("numbers", expanding=True)),
    )
    .options(defer(Version.definition, raiseload=True))
)


async def definitions(
    session: AsyncSession, account_id: uuid.UUID, version_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[str, Any]]:
    """The definitions of the account's versions ``version_ids``, by id."""
    rows = await session.execute(
        select(Version.id, Version.definition).where(
            Version.account_id == account_id, Version.id.in_(version_ids)
        )
    )
    return {row.id: row.definition for row in rows}


async def get_version_by_status(
    session: AsyncSession, account_id: uuid.UUID, workflow_id: uuid.UUID, status: str
) -> Version | None:
    return await session.scalar(
        select(Version).where(
            Version.account_id == account_id,
            Version.workflow_id == workflow_id,
            Version.status == status,
        )
    )


async def content_hash_of(
    session: AsyncSession, account_id: uuid.UUID, workflow_id: uuid.UUID, number: int
) -> str | None:
    return await session.scalar(
        select(Version.content_hash).where(
            Version.account_id == account_id,
            Version.workflow_id == workflow_id,
            Version.number == number,
        )
    )


async def version_page(
    session: AsyncSession,
    account_id: uuid.UUID,
    workflow_id: uuid.UUID,
    *,
    statuses: Sequence[str] | None,
    tag: str | None,
    include_archived: bool,
    before_number: int | None,
    limit: int,
    fields: tuple[str, ...],
) -> tuple[bool, list[Row[Any]]]:
    """Whether the workflow exists, and a page of its versions newest first — in one
    statement: the workflow's row joined with the page, each listed version's live executions
    counted beside it. A row holds the values of ``fields`` (a version's columns and
    ``live_executions``), in that order, and nothing else."""
    query = _version_page_statement(
        fields,
        by_status=bool(statuses),
        without_archived=not statuses and not include_archived,
        by_tag=tag is not None,
        before=before_number is not None,
    )
    params = {
        "account_id": account_id,
        "workflow_id": workflow_id,
        "statuses": list(statuses or []),
        "tag": tag,
        "before_number": before_number,
        "limit": limit,
    }
    # Plain rows, on the session's connection: the ORM's handling of a statement and of its
    # result buys nothing for columns.
    connection = await session.connection()
    rows = (await connection.execute(query, params)).all()
    if not rows:
        return False, []
    # An existing workflow without a version on the page is one row of nulls.
    if len(rows) == 1 and rows[0].number is None:
        return True, []
    return True, list(rows)


@functools.lru_cache(maxsize=16)
def _version_page_statement(
    fields: tuple[str, ...], *, by_status: bool, without_archived: bool, by_tag: bool, before: bool
) -> Select[Any]:
    """The statement of :func:`version_page` for one combination of filters, built once with
    its values as parameters (building it cost more than SQLAlchemy's cached compilation)."""
    account_id: BindParameter[uuid.UUID] = bindparam("account_id")
    workflow_id: BindParameter[uuid.UUID] = bindparam("workflow_id")
    # Only the columns asked for: each column of each row is decoded by the driver.
    columns = [VERSIONS.c[name] for name in fields if name in VERSIONS.c]
    if "number" not in fields:
        columns.append(VERSIONS.c.number)
    page_query = select(*columns).where(
        Version.account_id == account_id, Version.workflow_id == workflow_id
    )
    if by_status:
        page_query = page_query.where(Version.status.in_(bindparam("statuses", expanding=True)))
    elif without_archived:
        page_query = page_query.where(Version.status != "archived")
    if by_tag:
        page_query = page_query.where(
            exists().where(
                VersionTag.version_id == Version.id,
                VersionTag.account_id == account_id,
                VersionTag.tag == bindparam("tag"),
            )
        )
    if before:
        page_query = page_query.where(Version.number < bindparam("before_number"))
    page = page_query.order_by(Version.number.desc()).limit(bindparam("limit")).subquery("page")
    live = (
        select(func.count())
        .where(
            Execution.account_id == account_id,
            Execution.workflow_id == workflow_id,
            Execution.version == page.c.number,
            is_live(Execution.status),
        )
        .scalar_subquery()
    )
    listed = [live.label(name) if name == "live_executions" else page.c[name] for name in fields]
    # A workflow that exists answers one row at least (of nulls when its page is empty).
    return (
        select(*listed)
        .select_from(Workflow)
        .outerjoin(page, literal(True))
        .where(Workflow.account_id == account_id, Workflow.id == workflow_id)
        .order_by(page.c.number.desc())
    )


def _versions_query(
    account_id: uuid.UUID,
    workflow_id: uuid.UUID,
    *,
    statuses: Sequence[str] | None,
    tag: str | None,
    include_archived: bool,
    before_number: int | None,
    limit: int,
) -> Select[Any]:
    query = select(*VERSION_SUMMARY_COLUMNS).where(
        Version.account_id == account_id, Version.workflow_id == workflow_id
    )
    if statuses:
        query = query.where(Version.status.in_(statuses))
    elif not include_archived:
        query = query.where(Version.status != "archived")
    if tag is not None:
        query = query.where(
            exists().where(
                VersionTag.version_id == Version.id,
                VersionTag.account_id == account_id,
                VersionTag.tag == tag,
            )
        )
    if before_number is not None:
        query = query.where(Version.number < before_number)
    return query.order_by(Version.number.desc()).limit(limit)


async def list_versions(
    session: AsyncSession,
    account_id: uuid.UUID,
    workflow_id: uuid.UUID,
    *,
    statuses: Sequence[str] | None,
    tag: str | None,
    include_archived: bool,
    before_number: int | None,
    limit: int,
) -> Sequence[Row[Any]]:
    """Versions newest first, without their definitions."""
    query = _versions_query(
        account_id,
        workflow_id,
        statuses=statuses,
        tag=tag,
        include_archived=include_archived,
        before_number=before_number,
        limit=limit,
    )
    rows: Sequence[Row[Any]] = (await session.execute(query)).all()
    return rows


async def live_executions(
    session: AsyncSession, account_id: uuid.UUID, workflow_id: uuid.UUID, numbers: Sequence[int]
) -> dict[int, int]:
    """Number of unfinished executions of each of ``numbers``."""
    if not numbers:
        return {}
    rows = await session.execute(
        select(Execution.version, func.count())
        .where(
            and_(
                Execution.account_id == account_id,
                Execution.workflow_id == workflow_id,
                is_live(Execution.status),
                Execution.version.in_(numbers),
            )
        )
        .group_by(Execution.version)
    )
    return {version: count for version, count in rows.all()}
