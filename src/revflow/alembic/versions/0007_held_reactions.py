"""held reactions of paused workflows; migrations list their skips; tenant indexes lead
with account_id

Revision ID: 0007
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import revflow.db

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None

LIVE = "status IN ('active', 'waiting')"
UNFINISHED = "status IN ('pending', 'in_progress', 'paused')"

# (table, index, columns before, columns after, partial condition)
PARTIAL_UNIQUE = [
    ("versions", "uq_versions_one_published", ["workflow_id"], "status = 'published'"),
    ("versions", "uq_versions_one_canary", ["workflow_id"], "status = 'canary'"),
    ("executions", "uq_executions_one_live", ["workflow_id", "contact_id"], LIVE),
    ("migrations", "uq_migrations_one_unfinished", ["workflow_id"], UNFINISHED),
]


def _swap_indexes(lead: list[str]) -> None:
    for table, name, columns, where in PARTIAL_UNIQUE:
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_index(name)
            batch_op.create_index(
                name,
                [*lead, *columns],
                unique=True,
                sqlite_where=sa.text(where),
                postgresql_where=sa.text(where),
            )
    with op.batch_alter_table("migration_items") as batch_op:
        batch_op.drop_index("ix_migration_items_pending")
        batch_op.create_index(
            "ix_migration_items_pending",
            [*lead, "migration_id", "execution_id"],
            sqlite_where=sa.text("state = 'pending'"),
            postgresql_where=sa.text("state = 'pending'"),
        )


def upgrade() -> None:
    op.create_table(
        "held_reactions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("workflow_id", sa.Uuid(), nullable=False),
        sa.Column("execution_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("at", revflow.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('event', 'change')", name=op.f("ck_held_reactions_kind")),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["executions.id"],
            name=op.f("fk_held_reactions_execution_id_executions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_held_reactions")),
    )
    op.create_index(
        op.f("ix_held_reactions_account_id_workflow_id_id"),
        "held_reactions",
        ["account_id", "workflow_id", "id"],
    )
    _swap_indexes(["account_id"])
    with op.batch_alter_table("migrations") as batch_op:
        batch_op.add_column(
            sa.Column(
                "skips",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=False,
                server_default="[]",
            )
        )
    with op.batch_alter_table("versions") as batch_op:
        batch_op.drop_constraint("uq_versions_workflow_id_number", type_="unique")
        batch_op.create_unique_constraint(
            "uq_versions_account_id_workflow_id_number", ["account_id", "workflow_id", "number"]
        )


def downgrade() -> None:
    with op.batch_alter_table("migrations") as batch_op:
        batch_op.drop_column("skips")
    with op.batch_alter_table("versions") as batch_op:
        batch_op.drop_constraint("uq_versions_account_id_workflow_id_number", type_="unique")
        batch_op.create_unique_constraint(
            "uq_versions_workflow_id_number", ["workflow_id", "number"]
        )
    _swap_indexes([])
    op.drop_index(op.f("ix_held_reactions_account_id_workflow_id_id"), table_name="held_reactions")
    op.drop_table("held_reactions")
