"""Enrollment, execution and message bodies (SPEC §4 "Shapes")."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ExecutionStatus = Literal["active", "waiting", "completed", "failed", "cancelled"]


MAX_ENROLLMENT = 10_000


class EnrollmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    contact_ids: list[uuid.UUID] = Field(min_length=1, max_length=MAX_ENROLLMENT)


class Skipped(BaseModel):
    contact_id: str
    reason: str


class EnrollmentOut(BaseModel):
    enrolled: int
    executions: list[uuid.UUID]
    skipped: list[Skipped]


class HistoryOut(BaseModel):
    at: dt.datetime
    step: str
    result: str
    detail: dict[str, Any]
    error: str | None


class ExecutionOut(BaseModel):
    id: uuid.UUID
    workflow_id: uuid.UUID
    version: int
    contact_id: uuid.UUID
    status: ExecutionStatus
    current_step: str | None
    wake_at: dt.datetime | None
    outcome: str | None
    started_at: dt.datetime
    finished_at: dt.datetime | None
    error: str | None


class ExecutionDetail(ExecutionOut):
    history: list[HistoryOut]
    history_pruned: bool = Field(
        description="True once the execution's history was pruned (it finished more than "
        "REVFLOW_HISTORY_RETENTION_DAYS ago): `history` is then empty."
    )


class ExecutionList(BaseModel):
    items: list[ExecutionOut]
    next_cursor: str | None


class MessageOut(BaseModel):
    id: uuid.UUID
    channel: str
    kind: Literal["email", "sms"]
    to: str | None
    subject: str | None
    body: str | None
    contact_id: uuid.UUID
    execution_id: uuid.UUID | None
    step: str | None
    created_at: dt.datetime


class MessageList(BaseModel):
    items: list[MessageOut]
    next_cursor: str | None


class VersionStats(BaseModel):
    workflow_id: uuid.UUID
    version: int
    total: int
    by_status: dict[str, int]
    by_step: dict[str, int]
    completions: int
    goal_conversions: dict[str, int]
    failed: int
    failure_rate: float | None
