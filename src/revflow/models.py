"""Every table of revflow. Each tenant row carries ``account_id``; every key, foreign key and
index leads with it (README, "Distributing by account")."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal, cast, get_args

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ColumnElement,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
    literal_column,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from revflow.db import Base, JSONType, UTCDateTime, new_id, utcnow

LIVE_STATUSES = ("active", "waiting")
_LIVE_STATUSES_SQL: ColumnElement[Any] = literal_column(
    "(" + ", ".join(f"'{s}'" for s in LIVE_STATUSES) + ")"
)
FINISHED_STATUSES = ("completed", "failed", "cancelled")
HISTORY_UNPRUNED = "status IN ('completed', 'failed', 'cancelled') AND history_pruned_at IS NULL"
ROLES = ("viewer", "editor", "admin")
VERSION_STATUSES = ("draft", "published", "canary", "retired", "archived")


def is_live(status: Any) -> ColumnElement[bool]:
    """``status IN ('active', 'waiting')``, the statuses written into the statement: a
    statement built once renders no list again at each run (as an expanding ``IN`` does), and
    a planner can match the partial indexes of live executions (PostgreSQL cannot to bound
    values in a prepared statement's generic plan)."""
    return cast(ColumnElement[bool], status.op("IN", is_comparison=True)(_LIVE_STATUSES_SQL))


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AuditHead(Base):
    """The last entry of an account's audit chain; its row lock orders the chain."""

    __tablename__ = "audit_heads"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    hash: Mapped[str] = mapped_column(String(64), default="")


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("role IN ('viewer', 'editor', 'admin')", name="role"),
        Index(None, "account_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    user: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class Workflow(Base):
    __tablename__ = "workflows"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'paused')", name="status"),
        PrimaryKeyConstraint("account_id", "id"),
        Index(None, "account_id", "created_at", "id"),
        # What every claim of due executions leaves out (a small set, read once a claim).
        Index(
            "ix_workflows_paused",
            "account_id",
            "id",
            sqlite_where=text("status = 'paused'"),
            postgresql_where=text("status = 'paused'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="active")
    current_version: Mapped[int | None] = mapped_column(Integer)
    canary_version: Mapped[int | None] = mapped_column(Integer)
    canary_percent: Mapped[int | None] = mapped_column(Integer)
    # Number of versions created so far; the next version is version_count + 1 (gapless).
    version_count: Mapped[int] = mapped_column(Integer, default=0)
    # Bumped on every change to the workflow or its versions; the ETag is derived from it.
    revision: Mapped[int] = mapped_column(BigInteger, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Version(Base):
    __tablename__ = "versions"
    __table_args__ = (
        PrimaryKeyConstraint("account_id", "id"),
        UniqueConstraint("account_id", "workflow_id", "number"),
        CheckConstraint(
            "status IN ('draft', 'published', 'canary', 'retired', 'archived')", name="status"
        ),
        CheckConstraint("number >= 1", name="number_positive"),
        ForeignKeyConstraint(
            ["account_id", "workflow_id"],
            ["workflows.account_id", "workflows.id"],
            ondelete="CASCADE",
        ),
        # The database guarantees at most one published version (and one canary) per workflow.
        Index(
            "uq_versions_one_published",
            "account_id",
            "workflow_id",
            unique=True,
            sqlite_where=text("status = 'published'"),
            postgresql_where=text("status = 'published'"),
        ),
        Index(
            "uq_versions_one_canary",
            "account_id",
            "workflow_id",
            unique=True,
            sqlite_where=text("status = 'canary'"),
            postgresql_where=text("status = 'canary'"),
        ),
        # The workflows a contact change or an event enrolls into (``fire_triggers``): found
        # from the few published versions of the trigger's type, whatever the planner knows.
        Index(
            "ix_versions_published_trigger",
            "account_id",
            "trigger_type",
            sqlite_where=text("status = 'published'"),
            postgresql_where=text("status = 'published'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column()
    workflow_id: Mapped[uuid.UUID] = mapped_column()
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    definition: Mapped[dict[str, Any]] = mapped_column(JSONType)
    content_hash: Mapped[str] = mapped_column(String(64))
    change_summary: Mapped[str] = mapped_column(String(500))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    published_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    archived_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    parent: Mapped[int | None] = mapped_column(Integer)
    semver: Mapped[str] = mapped_column(String(40))
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    warnings: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    step_count: Mapped[int] = mapped_column(Integer, default=0)
    # The trigger, denormalised so that a contact change finds the workflows it enrolls into
    # with one indexed query instead of reading every published definition.
    trigger_type: Mapped[str] = mapped_column(String(32), default="manual")
    trigger_key: Mapped[str | None] = mapped_column(String(200))


class VersionTag(Base):
    """One row per (version, label), so that lists filter by tag with an index on both databases."""

    __tablename__ = "version_tags"
    __table_args__ = (
        PrimaryKeyConstraint("account_id", "version_id", "tag"),
        ForeignKeyConstraint(
            ["account_id", "version_id"], ["versions.account_id", "versions.id"], ondelete="CASCADE"
        ),
        Index(None, "account_id", "workflow_id", "tag"),
    )

    version_id: Mapped[uuid.UUID] = mapped_column()
    tag: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[uuid.UUID] = mapped_column()
    workflow_id: Mapped[uuid.UUID] = mapped_column()


class Contact(Base):
    __tablename__ = "contacts"
    __table_args__ = (
        PrimaryKeyConstraint("account_id", "id"),
        Index(
            "uq_contacts_external_id",
            "account_id",
            "external_id",
            unique=True,
            sqlite_where=text("external_id IS NOT NULL"),
            postgresql_where=text("external_id IS NOT NULL"),
        ),
        Index(None, "account_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    external_id: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(64))
    fields: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Erasure keeps the row (executions and stats refer to it) but none of its personal data.
    erased_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class Execution(Base):
    __tablename__ = "executions"
    __table_args__ = (
        PrimaryKeyConstraint("account_id", "id"),
        CheckConstraint(
            "status IN ('active', 'waiting', 'completed', 'failed', 'cancelled')", name="status"
        ),
        ForeignKeyConstraint(
            ["account_id", "workflow_id"],
            ["workflows.account_id", "workflows.id"],
            ondelete="CASCADE",
        ),
        ForeignKeyConstraint(
            ["account_id", "contact_id"],
            ["contacts.account_id", "contacts.id"],
            ondelete="CASCADE",
        ),
        # At most one unfinished execution per (workflow, contact), enforced by the database.
        Index(
            "uq_executions_one_live",
            "account_id",
            "workflow_id",
            "contact_id",
            unique=True,
            sqlite_where=text("status IN ('active', 'waiting')"),
            postgresql_where=text("status IN ('active', 'waiting')"),
        ),
        Index(
            "ix_executions_live_by_version",
            "account_id",
            "workflow_id",
            "version",
            "current_step",
            sqlite_where=text("status IN ('active', 'waiting')"),
            postgresql_where=text("status IN ('active', 'waiting')"),
        ),
        Index(None, "account_id", "workflow_id", "started_at", "id"),
        Index(None, "account_id", "contact_id"),
        # What pruning looks for: finished executions whose history is still there.
        Index(
            "ix_executions_history_unpruned",
            "account_id",
            "finished_at",
            sqlite_where=text(HISTORY_UNPRUNED),
            postgresql_where=text(HISTORY_UNPRUNED),
        ),
        # What workers claim: each account's share of its due executions (fair claims) …
        Index(
            "ix_executions_due_by_account",
            "account_id",
            "wake_at",
            sqlite_where=text("status IN ('active', 'waiting')"),
            postgresql_where=text("status IN ('active', 'waiting')"),
        ),
        # … and the rest of a batch oldest first. The only index that does not lead with
        # account_id: it serves every account.
        Index(
            "ix_executions_due",
            "wake_at",
            sqlite_where=text("status IN ('active', 'waiting')"),
            postgresql_where=text("status IN ('active', 'waiting')"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column()
    workflow_id: Mapped[uuid.UUID] = mapped_column()
    version: Mapped[int] = mapped_column(Integer)
    contact_id: Mapped[uuid.UUID] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default="active")
    current_step: Mapped[str | None] = mapped_column(String(64))
    wake_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    outcome: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    wait_started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    fired_goals: Mapped[list[str]] = mapped_column(JSONType, default=list)
    error: Mapped[str | None] = mapped_column(Text)
    # Set while a worker performs an external call for this execution outside a transaction.
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # When pruning deleted the history of this finished execution (the row itself is kept).
    history_pruned_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


HistoryId = BigInteger().with_variant(Integer(), "sqlite")


class HistoryEntry(Base):
    """One entry of an execution's history: a step taken, a wait begun or ended, a goal."""

    __tablename__ = "execution_history"
    __table_args__ = (
        # On SQLite the key is ``id`` alone, SQLite's rowid (revision 0013).
        PrimaryKeyConstraint("account_id", "id"),
        ForeignKeyConstraint(
            ["account_id", "execution_id"],
            ["executions.account_id", "executions.id"],
            ondelete="CASCADE",
        ),
        Index(None, "account_id", "execution_id", "id"),
    )

    id: Mapped[int] = mapped_column(HistoryId, autoincrement=True)
    account_id: Mapped[uuid.UUID] = mapped_column()
    execution_id: Mapped[uuid.UUID] = mapped_column()
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    step: Mapped[str] = mapped_column(String(64))
    result: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    error: Mapped[str | None] = mapped_column(Text)


class Message(Base):
    """An email or SMS sent by a step; the outbox channel's messages are only these rows."""

    __tablename__ = "messages"
    __table_args__ = (
        PrimaryKeyConstraint("account_id", "id"),
        Index(None, "account_id", "created_at", "id"),
        Index(None, "account_id", "contact_id"),
        Index(None, "account_id", "execution_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column()
    channel: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(8))
    to: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str | None] = mapped_column(Text)
    contact_id: Mapped[uuid.UUID] = mapped_column()
    execution_id: Mapped[uuid.UUID | None] = mapped_column()
    step: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


MIGRATION_UNFINISHED = ("pending", "in_progress", "paused")


class Migration(Base):
    """Moving the live executions of one version onto another, in batches (SPEC §6)."""

    __tablename__ = "migrations"
    __table_args__ = (
        PrimaryKeyConstraint("account_id", "id"),
        CheckConstraint(
            "status IN ('pending', 'in_progress', 'paused', 'completed', 'failed', 'cancelled')",
            name="status",
        ),
        ForeignKeyConstraint(
            ["account_id", "workflow_id"],
            ["workflows.account_id", "workflows.id"],
            ondelete="CASCADE",
        ),
        Index(None, "account_id", "workflow_id", "created_at"),
        # At most one unfinished migration per workflow, enforced by the database.
        Index(
            "uq_migrations_one_unfinished",
            "account_id",
            "workflow_id",
            unique=True,
            sqlite_where=text("status IN ('pending', 'in_progress', 'paused')"),
            postgresql_where=text("status IN ('pending', 'in_progress', 'paused')"),
        ),
        Index(
            "ix_migrations_runnable",
            "next_batch_at",
            sqlite_where=text("status IN ('pending', 'in_progress')"),
            postgresql_where=text("status IN ('pending', 'in_progress')"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column()
    workflow_id: Mapped[uuid.UUID] = mapped_column()
    from_version: Mapped[int] = mapped_column(Integer)
    to_version: Mapped[int] = mapped_column(Integer)
    strategy: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    mapping: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    plan: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    batch_size: Mapped[int] = mapped_column(Integer, default=500)
    interval_seconds: Mapped[float] = mapped_column(default=0.0)
    wait_policy: Mapped[str] = mapped_column(String(16), default="keep")
    halt_failure_rate: Mapped[float] = mapped_column(default=0.2)
    total: Mapped[int] = mapped_column(Integer, default=0)
    migrated: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    batches: Mapped[int] = mapped_column(Integer, default=0)
    report: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    # The first LISTED_LIMIT skipped executions with their reasons (``skipped`` counts all).
    skips: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list, server_default="[]")
    status_reason: Mapped[str | None] = mapped_column(Text)
    reverts: Mapped[uuid.UUID | None] = mapped_column()
    # The last execution a batch picked: the next batch picks pending items after it, in key
    # order, and starts again from the first once it finds none after it (SPEC §6).
    picked_through: Mapped[uuid.UUID | None] = mapped_column()
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    next_batch_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class MigrationItem(Base):
    """One execution a migration covers, and — once moved — where it was (for revert)."""

    __tablename__ = "migration_items"
    __table_args__ = (
        PrimaryKeyConstraint("account_id", "migration_id", "execution_id"),
        ForeignKeyConstraint(
            ["account_id", "migration_id"],
            ["migrations.account_id", "migrations.id"],
            ondelete="CASCADE",
        ),
        ForeignKeyConstraint(
            ["account_id", "execution_id"],
            ["executions.account_id", "executions.id"],
            ondelete="CASCADE",
        ),
        CheckConstraint("state IN ('pending', 'migrated', 'skipped', 'failed')", name="state"),
        Index(None, "account_id", "execution_id"),
        # A batch rewrites each of its items once (pending → its final state, with the restore
        # record). No index names a column that changes, and the pages keep room for the new
        # version beside the old, so the rewrite stays on its page and touches no index (a HOT
        # update). The next batch is found by key after ``Migration.picked_through``.
        {"postgresql_with": {"fillfactor": 40}},
    )

    migration_id: Mapped[uuid.UUID] = mapped_column()
    execution_id: Mapped[uuid.UUID] = mapped_column()
    account_id: Mapped[uuid.UUID] = mapped_column()
    state: Mapped[str] = mapped_column(String(16), default="pending")
    reason: Mapped[str | None] = mapped_column(String(64))
    from_step: Mapped[str | None] = mapped_column(String(64))
    from_status: Mapped[str | None] = mapped_column(String(16))
    from_wake_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    to_step: Mapped[str | None] = mapped_column(String(64))
    moved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class WorkingDraft(Base):
    """A user's scratch copy of a workflow being edited (auto-saved; any content)."""

    __tablename__ = "working_drafts"
    __table_args__ = (
        PrimaryKeyConstraint("account_id", "id"),
        UniqueConstraint("account_id", "workflow_id", "user"),
        ForeignKeyConstraint(
            ["account_id", "workflow_id"],
            ["workflows.account_id", "workflows.id"],
            ondelete="CASCADE",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column()
    workflow_id: Mapped[uuid.UUID] = mapped_column()
    user: Mapped[str] = mapped_column(String(200))
    definition: Mapped[Any] = mapped_column(JSONType, nullable=True)
    base_version: Mapped[int | None] = mapped_column(Integer)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    problems: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    warnings: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    saved_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ScheduledJob(Base):
    """When a periodic job (archival) last ran; claiming it is one conditional UPDATE, so
    any number of workers run it once per interval. The operator's table, like ``accounts``:
    it holds no tenant's data (a job covers every account), so it has no ``account_id``."""

    __tablename__ = "scheduled_jobs"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_run_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_run_by: Mapped[str | None] = mapped_column(String(200))


class AuditEntry(Base):
    __tablename__ = "audit_entries"
    __table_args__ = (
        PrimaryKeyConstraint("account_id", "id"),
        UniqueConstraint("account_id", "seq"),
        Index(None, "account_id", "workflow_id", "seq"),
    )

    id: Mapped[uuid.UUID] = mapped_column(default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    actor_user: Mapped[str] = mapped_column(String(200))
    actor_key_id: Mapped[uuid.UUID | None] = mapped_column()
    action: Mapped[str] = mapped_column(String(64))
    workflow_id: Mapped[uuid.UUID | None] = mapped_column()
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class IdempotencyRecord(Base):
    """The first answer to a creating POST, replayed to a retry with the same key and body."""

    __tablename__ = "idempotency_records"
    # Pruning deletes the records past ``idempotency_ttl_hours`` oldest first.
    __table_args__ = (Index(None, "account_id", "created_at"),)

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    scope: Mapped[str] = mapped_column(String(300), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[Any | None] = mapped_column(JSONType, nullable=True)
    headers: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class HeldReaction(Base):
    """An event or contact change that reached an execution of a paused workflow: kept, in
    arrival order, and applied when the workflow is resumed (SPEC §1: paused means no
    execution advances, and nothing is lost)."""

    __tablename__ = "held_reactions"
    __table_args__ = (
        # On SQLite the key is ``id`` alone, SQLite's rowid (revision 0013).
        PrimaryKeyConstraint("account_id", "id"),
        ForeignKeyConstraint(
            ["account_id", "execution_id"],
            ["executions.account_id", "executions.id"],
            ondelete="CASCADE",
        ),
        CheckConstraint("kind IN ('event', 'change')", name="kind"),
        Index(None, "account_id", "workflow_id", "id"),
    )

    id: Mapped[int] = mapped_column(HistoryId, autoincrement=True)
    account_id: Mapped[uuid.UUID] = mapped_column()
    workflow_id: Mapped[uuid.UUID] = mapped_column()
    execution_id: Mapped[uuid.UUID] = mapped_column()
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(String(200))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


# The events a webhook subscription can ask for (SPEC §8).
WebhookEvent = Literal[
    "version.created",
    "version.published",
    "version.rolled_back",
    "version.archived",
    "canary.started",
    "canary.promoted",
    "canary.aborted",
    "migration.started",
    "migration.completed",
    "migration.failed",
    "execution.failed",
    "workflow.paused",
    "workflow.resumed",
]
WEBHOOK_EVENTS: tuple[WebhookEvent, ...] = get_args(WebhookEvent)


class WebhookSubscription(Base):
    """An admin's subscription of a URL to events (SPEC §8)."""

    __tablename__ = "webhook_subscriptions"
    __table_args__ = (
        PrimaryKeyConstraint("account_id", "id"),
        Index(None, "account_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    events: Mapped[list[str]] = mapped_column(JSONType, default=list)
    enabled: Mapped[bool] = mapped_column(default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    # The signing secrets are needed in clear to sign; they never leave this table except in
    # the answer that creates or rotates them.
    secret: Mapped[str] = mapped_column(String(128))
    previous_secret: Mapped[str | None] = mapped_column(String(128))
    previous_secret_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WebhookDelivery(Base):
    """One event for one subscription: the outbox row written with the change that caused it,
    and every attempt to send it. Its id is the ``webhook-id`` receivers de-duplicate on."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        PrimaryKeyConstraint("account_id", "id"),
        CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="status"),
        ForeignKeyConstraint(
            ["account_id", "subscription_id"],
            ["webhook_subscriptions.account_id", "webhook_subscriptions.id"],
            ondelete="CASCADE",
        ),
        Index(None, "account_id", "subscription_id", "created_at", "id"),
        # What workers claim: pending deliveries by the time they are due. Like the
        # due-execution index it serves every account, so it does not lead with account_id.
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column()
    subscription_id: Mapped[uuid.UUID] = mapped_column()
    event: Mapped[str] = mapped_column(String(64))
    # The exact bytes signed and sent, the same on every attempt.
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
