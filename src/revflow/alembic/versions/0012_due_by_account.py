"""executions: live executions by account and due time, for fair claims

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

LIVE = "status IN ('active', 'waiting')"


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch_op:
        batch_op.create_index(
            "ix_executions_due_by_account",
            ["account_id", "wake_at"],
            sqlite_where=sa.text(LIVE),
            postgresql_where=sa.text(LIVE),
        )


def downgrade() -> None:
    with op.batch_alter_table("executions") as batch_op:
        batch_op.drop_index("ix_executions_due_by_account")
