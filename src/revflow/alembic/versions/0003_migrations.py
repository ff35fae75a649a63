"""migrations: moving executions between versions

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 17:12:56.258544
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import revflow.db

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "migrations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("workflow_id", sa.Uuid(), nullable=False),
        sa.Column("from_version", sa.Integer(), nullable=False),
        sa.Column("to_version", sa.Integer(), nullable=False),
        sa.Column("strategy", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "mapping",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "plan",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("batch_size", sa.Integer(), nullable=False),
        sa.Column("interval_seconds", sa.Double(), nullable=False),
        sa.Column("wait_policy", sa.String(length=16), nullable=False),
        sa.Column("halt_failure_rate", sa.Double(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("migrated", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("batches", sa.Integer(), nullable=False),
        sa.Column(
            "report",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "errors",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("reverts", sa.Uuid(), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", revflow.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("next_batch_at", revflow.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", revflow.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'in_progress', 'paused', 'completed', 'failed', 'cancelled')",
            name=op.f("ck_migrations_status"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id", "workflow_id"],
            ["workflows.account_id", "workflows.id"],
            name=op.f("fk_migrations_account_id_workflows"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_migrations")),
    )
    with op.batch_alter_table("migrations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_migrations_account_id_workflow_id_created_at"),
            ["account_id", "workflow_id", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_migrations_runnable",
            ["next_batch_at"],
            unique=False,
            sqlite_where=sa.text("status IN ('pending', 'in_progress')"),
            postgresql_where=sa.text("status IN ('pending', 'in_progress')"),
        )
        batch_op.create_index(
            "uq_migrations_one_unfinished",
            ["workflow_id"],
            unique=True,
            sqlite_where=sa.text("status IN ('pending', 'in_progress', 'paused')"),
            postgresql_where=sa.text("status IN ('pending', 'in_progress', 'paused')"),
        )

    op.create_table(
        "migration_items",
        sa.Column("migration_id", sa.Uuid(), nullable=False),
        sa.Column("execution_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("from_step", sa.String(length=64), nullable=True),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("from_wake_at", revflow.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("to_step", sa.String(length=64), nullable=True),
        sa.Column("moved_at", revflow.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'migrated', 'skipped', 'failed')",
            name=op.f("ck_migration_items_state"),
        ),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["executions.id"],
            name=op.f("fk_migration_items_execution_id_executions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["migration_id"],
            ["migrations.id"],
            name=op.f("fk_migration_items_migration_id_migrations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("migration_id", "execution_id", name=op.f("pk_migration_items")),
    )
    with op.batch_alter_table("migration_items", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_migration_items_account_id_execution_id"),
            ["account_id", "execution_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_migration_items_migration_id_state_execution_id"),
            ["migration_id", "state", "execution_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("migration_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_migration_items_migration_id_state_execution_id"))
        batch_op.drop_index(batch_op.f("ix_migration_items_account_id_execution_id"))

    op.drop_table("migration_items")
    with op.batch_alter_table("migrations", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_migrations_one_unfinished",
            sqlite_where=sa.text("status IN ('pending', 'in_progress', 'paused')"),
            postgresql_where=sa.text("status IN ('pending', 'in_progress', 'paused')"),
        )
        batch_op.drop_index(
            "ix_migrations_runnable",
            sqlite_where=sa.text("status IN ('pending', 'in_progress')"),
            postgresql_where=sa.text("status IN ('pending', 'in_progress')"),
        )
        batch_op.drop_index(batch_op.f("ix_migrations_account_id_workflow_id_created_at"))

    op.drop_table("migrations")
