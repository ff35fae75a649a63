"""workflows: the paused ones, which every claim of due executions leaves out

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

PAUSED = "status = 'paused'"


def upgrade() -> None:
    with op.batch_alter_table("workflows") as batch_op:
        batch_op.create_index(
            "ix_workflows_paused",
            ["account_id", "id"],
            sqlite_where=sa.text(PAUSED),
            postgresql_where=sa.text(PAUSED),
        )


def downgrade() -> None:
    with op.batch_alter_table("workflows") as batch_op:
        batch_op.drop_index("ix_workflows_paused")
