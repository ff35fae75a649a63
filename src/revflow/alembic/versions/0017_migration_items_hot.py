"""migration items: rewritten in place by their batch, picked after a cursor

A batch rewrites each of its items (pending → its final state, with the restore record). The
partial index of pending items named ``state``, so every rewrite was a new row version with an
entry in each index; without it, and with room left on each page (``fillfactor``, PostgreSQL),
the rewrite stays on its page (a HOT update). The next batch is found by key after the last
execution picked, ``migrations.picked_through``.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("migrations") as batch_op:
        batch_op.add_column(sa.Column("picked_through", sa.Uuid(), nullable=True))
    with op.batch_alter_table("migration_items") as batch_op:
        batch_op.drop_index("ix_migration_items_pending")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE migration_items SET (fillfactor = 40)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE migration_items RESET (fillfactor)")
    with op.batch_alter_table("migration_items") as batch_op:
        batch_op.create_index(
            "ix_migration_items_pending",
            ["account_id", "migration_id", "execution_id"],
            sqlite_where=sa.text("state = 'pending'"),
            postgresql_where=sa.text("state = 'pending'"),
        )
    with op.batch_alter_table("migrations") as batch_op:
        batch_op.drop_column("picked_through")
