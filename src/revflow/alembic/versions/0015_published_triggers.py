"""versions: the published ones by trigger, which every contact change and event looks up

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

PUBLISHED = "status = 'published'"


def upgrade() -> None:
    with op.batch_alter_table("versions") as batch_op:
        batch_op.create_index(
            "ix_versions_published_trigger",
            ["account_id", "trigger_type"],
            sqlite_where=sa.text(PUBLISHED),
            postgresql_where=sa.text(PUBLISHED),
        )


def downgrade() -> None:
    with op.batch_alter_table("versions") as batch_op:
        batch_op.drop_index("ix_versions_published_trigger")
