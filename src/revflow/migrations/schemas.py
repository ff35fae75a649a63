"""Migration bodies (SPEC §4 "Shapes", §6)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from revflow.kit.ids import INT32_MAX
from revflow.models import Migration


class MigrationOptions(BaseModel):
    """How a migration moves its executions (SPEC §6)."""

    model_config = ConfigDict(extra="forbid")

    strategy: Literal["immediate", "gradual", "manual"] = "immediate"
    mapping: dict[str, str] = Field(default_factory=dict)
    execution_ids: list[uuid.UUID] | None = Field(default=None, max_length=100_000)
    batch_size: int = Field(default=500, ge=1, le=10_000)
    interval_seconds: float = Field(default=60.0, ge=0, le=86_400)
    wait_policy: Literal["keep", "recompute", "restart"] = "keep"
    halt_failure_rate: float = Field(default=0.2, ge=0, le=1)


class MigrationIn(MigrationOptions):
    from_version: int = Field(ge=1, le=INT32_MAX)
    dry_run: bool = False
    allow_unreleased: bool = Field(
        default=False,
        description="Start even when the target version was never published or canaried "
        "(otherwise 409 not_released; the dry run warns either way).",
    )


class Group(BaseModel):
    step: str
    count: int
    target: str | None
    reason: str | None


class Report(BaseModel):
    total: int
    movable: int
    unmovable: int
    groups: list[Group]
    warnings: list[dict[str, Any]] = Field(default_factory=list)


class MigrationOut(BaseModel):
    id: uuid.UUID
    workflow_id: uuid.UUID
    from_version: int
    to_version: int
    strategy: str
    status: str
    status_reason: str | None
    mapping: dict[str, str]
    batch_size: int
    interval_seconds: float
    wait_policy: str
    halt_failure_rate: float
    total: int
    migrated: int
    skipped: int
    failed: int
    pending: int
    batches: int
    report: dict[str, Any]
    errors: list[dict[str, Any]]
    skips: list[dict[str, Any]]
    reverts: uuid.UUID | None
    created_by: str
    created_at: dt.datetime
    next_batch_at: dt.datetime | None
    finished_at: dt.datetime | None


class MigrationList(BaseModel):
    items: list[MigrationOut]
    next_cursor: str | None


def migration_out(migration: Migration) -> dict[str, Any]:
    """A migration as the API shows it, with its ``pending`` count."""
    pending = migration.total - migration.migrated - migration.skipped - migration.failed
    data = {c.name: getattr(migration, c.name) for c in Migration.__table__.columns}
    data["pending"] = max(pending, 0)
    return MigrationOut.model_validate(data).model_dump(mode="json")
