"""migration items: a partial index of the pending ones

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("migration_items", schema=None) as batch_op:
        batch_op.drop_index("ix_migration_items_migration_id_state_execution_id")
        batch_op.create_index(
            "ix_migration_items_pending",
            ["migration_id", "execution_id"],
            unique=False,
            sqlite_where=sa.text("state = 'pending'"),
            postgresql_where=sa.text("state = 'pending'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("migration_items", schema=None) as batch_op:
        batch_op.drop_index("ix_migration_items_pending")
        batch_op.create_index(
            "ix_migration_items_migration_id_state_execution_id",
            ["migration_id", "state", "execution_id"],
            unique=False,
        )
