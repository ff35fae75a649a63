"""Request and response bodies of workflows and versions (SPEC §4 "Shapes")."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema

from revflow.kit.etag import make_etag
from revflow.kit.ids import INT32_MAX
from revflow.models import Workflow

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Summary = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Label = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
VersionStatus = Literal["draft", "published", "canary", "retired", "archived"]
# Any JSON value, documented as the definition's schema (the ``Definition`` component of the
# OpenAPI document): whatever does not match it is refused by the definition validator (422
# invalid_definition with a JSON Pointer to each problem), not by the body's model.
DefinitionDocument = Annotated[
    Any,
    WithJsonSchema(
        {
            "allOf": [{"$ref": "#/components/schemas/Definition"}],
            "description": "The workflow definition (also at GET /api/v1/schema/definition).",
        }
    ),
]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkflowCreate(Body):
    name: Name
    description: str = Field(default="", max_length=5000)
    definition: DefinitionDocument = None
    change_summary: Summary | None = None


class WorkflowUpdate(Body):
    name: Name | None = None
    description: str | None = Field(default=None, max_length=5000)


class CanaryOut(BaseModel):
    version: int
    percent: int


class WorkflowOut(BaseModel):
    id: uuid.UUID
    name: str
    description: str
    status: Literal["active", "paused"]
    current_version: int | None
    canary: CanaryOut | None
    etag: str
    version_count: int
    created_at: dt.datetime
    updated_at: dt.datetime


class WorkflowDetail(WorkflowOut):
    versions_by_status: dict[str, int]


class VersionCreate(Body):
    definition: DefinitionDocument
    change_summary: Summary
    base_version: int | None = Field(
        le=INT32_MAX,
        description="The number the edit started from; null for the first version.",
    )
    publish: bool = False


class DefinitionWarning(BaseModel):
    """Something worth a look in a valid definition, e.g. an unreachable step."""

    pointer: str
    message: str


class VersionOut(BaseModel):
    id: uuid.UUID
    workflow_id: uuid.UUID
    number: int
    status: VersionStatus
    content_hash: str
    change_summary: str
    created_by: str
    created_at: dt.datetime
    published_at: dt.datetime | None
    archived_at: dt.datetime | None
    parent: int | None
    semver: str
    tags: list[str]
    live_executions: int
    warnings: list[DefinitionWarning]
    step_count: int


class VersionDetail(VersionOut):
    definition: dict[str, Any]


class VersionList(BaseModel):
    items: list[VersionOut]
    next_cursor: str | None


class WorkflowList(BaseModel):
    items: list[WorkflowOut]
    next_cursor: str | None


class PublishBody(Body):
    canary_percent: int | None = Field(
        default=None,
        ge=1,
        le=99,
        description="Make the version the workflow's canary for this share of new enrollments.",
    )


class CanaryAbortBody(Body):
    reason: Reason = "aborted by an operator"


class TagsBody(Body):
    tags: list[Label] = Field(max_length=50)


class FieldChangeOut(BaseModel):
    path: str
    before: Any
    after: Any


class ChangeOut(BaseModel):
    entity: Literal["trigger", "start", "step", "goal"]
    kind: Literal["added", "removed", "modified"]
    id: str | None
    before: Any
    after: Any
    fields: list[FieldChangeOut]
    rewired: bool


class BreakingOut(BaseModel):
    step: str | None
    goal: str | None
    reason: str
    executions_affected: int


class SummaryOut(BaseModel):
    steps_added: int
    steps_removed: int
    steps_modified: int
    goals_changed: int
    trigger_changed: bool
    start_changed: bool


class CompareSide(BaseModel):
    number: int
    semver: str
    status: VersionStatus


class CompareOut(BaseModel):
    changes: list[ChangeOut]
    summary: SummaryOut
    breaking: list[BreakingOut]
    breaking_count: int
    suggested_bump: Literal["major", "minor", "patch"]
    suggested_mapping: dict[str, str | None]
    live_executions: int
    from_: CompareSide = Field(alias="from")
    to: CompareSide


def workflow_out(workflow: Workflow) -> dict[str, Any]:
    canary = None
    if workflow.canary_version is not None:
        canary = {"version": workflow.canary_version, "percent": workflow.canary_percent}
    return WorkflowOut(
        id=workflow.id,
        name=workflow.name,
        description=workflow.description,
        status=workflow.status,
        current_version=workflow.current_version,
        canary=canary,
        etag=make_etag(workflow.id, workflow.revision),
        version_count=workflow.version_count,
        created_at=workflow.created_at,
        updated_at=workflow.updated_at,
    ).model_dump(mode="json")


def version_out(version: Any, live: int, *, with_definition: bool = False) -> dict[str, Any]:
    fields = {
        name: getattr(version, name)
        for name in VersionOut.model_fields
        if name not in ("live_executions",)
    }
    answer = VersionOut(**fields, live_executions=live).model_dump(mode="json")
    if with_definition:
        # The definition is stored JSON already: passed through, not re-validated and re-dumped.
        answer["definition"] = version.definition
    return answer
