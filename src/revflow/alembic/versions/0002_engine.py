"""engine: execution history, messages, leases, trigger lookup

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 17:06:30.699087
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import revflow.db

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("to", sa.String(length=320), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("contact_id", sa.Uuid(), nullable=False),
        sa.Column("execution_id", sa.Uuid(), nullable=True),
        sa.Column("step", sa.String(length=64), nullable=True),
        sa.Column("created_at", revflow.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_messages_account_id_contact_id"),
            ["account_id", "contact_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_messages_account_id_created_at_id"),
            ["account_id", "created_at", "id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_messages_account_id_execution_id"),
            ["account_id", "execution_id"],
            unique=False,
        )

    op.create_table(
        "execution_history",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("execution_id", sa.Uuid(), nullable=False),
        sa.Column("at", revflow.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("step", sa.String(length=64), nullable=False),
        sa.Column("result", sa.String(length=32), nullable=False),
        sa.Column(
            "detail",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["executions.id"],
            name=op.f("fk_execution_history_execution_id_executions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_execution_history")),
    )
    with op.batch_alter_table("execution_history", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_execution_history_account_id_execution_id_id"),
            ["account_id", "execution_id", "id"],
            unique=False,
        )

    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("erased_at", revflow.db.UTCDateTime(timezone=True), nullable=True)
        )

    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("wait_started_at", revflow.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "fired_goals",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=False,
                server_default=sa.text("'[]'"),
            )
        )
        batch_op.add_column(sa.Column("error", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("lease_expires_at", revflow.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(
            batch_op.f("ix_executions_account_id_contact_id"),
            ["account_id", "contact_id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_executions_due",
            ["wake_at"],
            unique=False,
            sqlite_where=sa.text("status IN ('active', 'waiting')"),
            postgresql_where=sa.text("status IN ('active', 'waiting')"),
        )

    with op.batch_alter_table("versions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("trigger_type", sa.String(length=32), nullable=False, server_default="manual")
        )
        batch_op.add_column(sa.Column("trigger_key", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("versions", schema=None) as batch_op:
        batch_op.drop_column("trigger_key")
        batch_op.drop_column("trigger_type")

    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_executions_due",
            sqlite_where=sa.text("status IN ('active', 'waiting')"),
            postgresql_where=sa.text("status IN ('active', 'waiting')"),
        )
        batch_op.drop_index(batch_op.f("ix_executions_account_id_contact_id"))
        batch_op.drop_column("lease_expires_at")
        batch_op.drop_column("lease_owner")
        batch_op.drop_column("error")
        batch_op.drop_column("fired_goals")
        batch_op.drop_column("wait_started_at")

    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_column("erased_at")

    with op.batch_alter_table("execution_history", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_execution_history_account_id_execution_id_id"))

    op.drop_table("execution_history")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_messages_account_id_execution_id"))
        batch_op.drop_index(batch_op.f("ix_messages_account_id_created_at_id"))
        batch_op.drop_index(batch_op.f("ix_messages_account_id_contact_id"))

    op.drop_table("messages")
