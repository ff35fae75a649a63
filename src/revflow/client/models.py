"""What the API answers, as typed objects (SPEC §4's shapes; members added later are kept)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Model(BaseModel):
    """An answer of the API; members this client does not know yet are kept, not refused."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Page(Model, Generic[T]):
    """One page of a list; pass ``next_cursor`` as ``cursor`` for the next one (None: the end)."""

    items: list[T]
    next_cursor: str | None = None


class Account(Model):
    id: str
    name: str


class AccountCreated(Model):
    account: Account
    api_key: str


class ApiKey(Model):
    id: str
    user: str
    role: Literal["viewer", "editor", "admin"]
    prefix: str | None = None
    created_at: str | None = None
    revoked_at: str | None = None


class ApiKeyCreated(Model):
    id: str
    user: str
    role: Literal["viewer", "editor", "admin"]
    api_key: str


class Canary(Model):
    version: int
    percent: int


class Workflow(Model):
    id: str
    name: str
    description: str = ""
    status: Literal["active", "paused"]
    current_version: int | None
    canary: Canary | None = None
    etag: str
    version_count: int = 0
    created_at: dt.datetime
    versions_by_status: dict[str, int] | None = None


class Version(Model):
    id: str
    workflow_id: str
    number: int
    status: Literal["draft", "published", "canary", "retired", "archived"]
    content_hash: str
    change_summary: str
    created_by: str
    created_at: dt.datetime
    published_at: dt.datetime | None = None
    parent: int | None = None
    semver: str
    tags: list[str] = Field(default_factory=list)
    live_executions: int = 0
    warnings: list[dict[str, Any]] = Field(default_factory=list)
    definition: dict[str, Any] | None = None


class Breaking(Model):
    step: str | None
    goal: str | None = None
    reason: str
    executions_affected: int = 0


class Comparison(Model):
    """A comparison of two versions (SPEC §5) with the live executions each break affects."""

    changes: list[dict[str, Any]]
    summary: dict[str, Any]
    breaking: list[Breaking]
    breaking_count: int
    suggested_bump: Literal["major", "minor", "patch"]
    suggested_mapping: dict[str, str | None]
    from_: dict[str, Any] | None = Field(default=None, alias="from")
    to: dict[str, Any] | None = None
    live_executions: int = 0


class VersionStats(Model):
    workflow_id: str
    version: int
    total: int
    by_status: dict[str, int]
    by_step: dict[str, int]
    completions: int
    goal_conversions: dict[str, int]
    failed: int
    failure_rate: float | None


class Draft(Model):
    workflow_id: str
    user: str
    definition: Any
    base_version: int | None
    revision: int
    saved_at: str
    valid: bool
    problems: list[dict[str, Any]] = Field(default_factory=list)
    warnings: list[dict[str, Any]] = Field(default_factory=list)


class Skipped(Model):
    contact_id: str
    reason: str


class Enrollment(Model):
    enrolled: int
    executions: list[str]
    skipped: list[Skipped]


class Execution(Model):
    id: str
    workflow_id: str
    version: int
    contact_id: str
    status: Literal["active", "waiting", "completed", "failed", "cancelled"]
    current_step: str | None
    wake_at: dt.datetime | None = None
    outcome: str | None = None
    started_at: dt.datetime
    finished_at: dt.datetime | None = None
    history: list[dict[str, Any]] | None = None
    history_pruned: bool | None = None


class Group(Model):
    step: str
    count: int
    target: str | None
    reason: str | None


class MigrationReport(Model):
    """What a migration would do (a dry run), and what it planned (a migration's ``report``)."""

    total: int
    movable: int
    unmovable: int
    groups: list[Group]
    warnings: list[dict[str, Any]] = Field(default_factory=list)


class Migration(Model):
    id: str
    workflow_id: str
    from_version: int
    to_version: int
    strategy: str
    status: Literal["pending", "in_progress", "paused", "completed", "failed", "cancelled"]
    status_reason: str | None = None
    total: int
    migrated: int
    skipped: int
    failed: int
    report: dict[str, Any] = Field(default_factory=dict)
    errors: list[dict[str, Any]] = Field(default_factory=list)
    created_by: str
    created_at: dt.datetime
    finished_at: dt.datetime | None = None

    @property
    def done(self) -> int:
        """Executions settled so far (moved, skipped or failed)."""
        return self.migrated + self.skipped + self.failed

    @property
    def running(self) -> bool:
        return self.status in ("pending", "in_progress")


class HistoryEntry(Model):
    at: dt.datetime
    step: str
    result: str
    detail: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None


class SimulatedMessage(Model):
    """A message a simulated execution would send; ``id`` is its entry's ``message_id``."""

    at: dt.datetime
    id: str
    step: str
    channel: str
    kind: Literal["email", "sms"]
    to: str
    subject: str | None = None
    body: str


class SimulatedRequest(Model):
    """An ``http_request`` a simulated execution would make (none is made)."""

    at: dt.datetime
    step: str
    method: str
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = None


class GoalReached(Model):
    at: dt.datetime
    goal: str
    then: str | None = None


class SimulatedState(Model):
    """Where a simulated execution ended, and its contact then."""

    status: Literal["active", "waiting", "completed", "failed", "cancelled"]
    outcome: str | None = None
    current_step: str | None = None
    wake_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    error: str | None = None
    contact: dict[str, Any]


class Simulation(Model):
    """A version run for one contact on a simulated clock (nothing stored, nothing sent)."""

    workflow_id: str
    version: int
    start: dt.datetime
    until: dt.datetime
    path: list[HistoryEntry]
    messages: list[SimulatedMessage]
    http_requests: list[SimulatedRequest]
    goals: list[GoalReached]
    final: SimulatedState
    steps: int
    stopped_reason: Literal["finished", "until", "step_limit"]


class Contact(Model):
    id: str
    external_id: str | None = None
    email: str | None = None
    phone: str | None = None
    fields: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    created_at: dt.datetime


class EventResult(Model):
    contact_id: str
    name: str
    executions_advanced: int
    enrolled: list[str]


class AuditEntry(Model):
    id: str
    seq: int
    at: dt.datetime
    actor: dict[str, Any]
    action: str
    workflow_id: str | None = None
    object_type: str
    object_id: str
    details: dict[str, Any]


class Message(Model):
    id: str
    channel: str
    kind: Literal["email", "sms"]
    to: str | None
    subject: str | None = None
    body: str | None = None
    contact_id: str
    execution_id: str | None = None
    step: str | None = None
    created_at: dt.datetime


class WebhookSubscription(Model):
    id: str
    url: str
    events: list[str]
    description: str = ""
    enabled: bool = True
    disabled_reason: str | None = None
    created_by: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    secret_rotated_until: str | None = None
    # In the answers to create and rotate-secret only.
    secret: str | None = None


class WebhookAttempt(Model):
    at: str
    status_code: int | None = None
    error: str | None = None
    duration_ms: int = 0


class WebhookDelivery(Model):
    id: str
    subscription_id: str
    event: str
    status: Literal["pending", "delivered", "failed"]
    attempts: list[WebhookAttempt] = []
    next_attempt_at: str | None = None
    created_at: str | None = None
    finished_at: str | None = None
