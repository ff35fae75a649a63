"""retention: executions remember when their history was pruned; indexes for pruning

Revision ID: 0010
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import revflow.db

revision = "0010"
down_revision = "0008"
branch_labels = None
depends_on = None

HISTORY_UNPRUNED = "status IN ('completed', 'failed', 'cancelled') AND history_pruned_at IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch_op:
        batch_op.add_column(
            sa.Column("history_pruned_at", revflow.db.UTCDateTime(timezone=True), nullable=True)
        )
    op.create_index(
        "ix_executions_history_unpruned",
        "executions",
        ["account_id", "finished_at"],
        sqlite_where=sa.text(HISTORY_UNPRUNED),
        postgresql_where=sa.text(HISTORY_UNPRUNED),
    )
    op.create_index(
        op.f("ix_idempotency_records_account_id_created_at"),
        "idempotency_records",
        ["account_id", "created_at"],
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_idempotency_records_account_id_created_at"), table_name="idempotency_records"
    )
    op.drop_index("ix_executions_history_unpruned", table_name="executions")
    with op.batch_alter_table("executions") as batch_op:
        batch_op.drop_column("history_pruned_at")
