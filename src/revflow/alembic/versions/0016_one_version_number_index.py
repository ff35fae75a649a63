"""versions: one index on (account, workflow, number), the unique constraint's own

The unique constraint on the version's number already indexes those columns; the second,
identical index only doubled the work of every version's insert.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("versions") as batch_op:
        batch_op.drop_index("ix_versions_account_id_workflow_id_number")


def downgrade() -> None:
    with op.batch_alter_table("versions") as batch_op:
        batch_op.create_index(
            "ix_versions_account_id_workflow_id_number",
            ["account_id", "workflow_id", "number"],
            unique=True,
        )
