"""keys by account: every tenant table's primary key and foreign keys include account_id

Revision ID: 0013
Revises: 0012

A sharding layer (Citus, or any distribution by ``account_id``) co-locates an account's rows
only when every primary key, unique constraint and foreign key between tenant tables holds the
distribution column. This revision moves the remaining single-column keys to
``(account_id, …)`` and points every foreign key between tenant tables at them. The
``UNIQUE (account_id, id)`` constraints that foreign keys used to refer to become the primary
keys themselves and are dropped.

On SQLite the two append-only logs, ``execution_history`` and ``held_reactions``, keep their
integer ``id`` as the primary key: it is SQLite's rowid, its only auto-increment, and an
embedded database is never distributed. Their foreign keys include ``account_id`` there too.
"""

from __future__ import annotations

from typing import NamedTuple

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# table: (primary key before, primary key after)
PRIMARY_KEYS = {
    "workflows": (["id"], ["account_id", "id"]),
    "contacts": (["id"], ["account_id", "id"]),
    "webhook_subscriptions": (["id"], ["account_id", "id"]),
    "versions": (["id"], ["account_id", "id"]),
    "version_tags": (["version_id", "tag"], ["account_id", "version_id", "tag"]),
    "executions": (["id"], ["account_id", "id"]),
    "execution_history": (["id"], ["account_id", "id"]),
    "held_reactions": (["id"], ["account_id", "id"]),
    "messages": (["id"], ["account_id", "id"]),
    "migrations": (["id"], ["account_id", "id"]),
    "migration_items": (
        ["migration_id", "execution_id"],
        ["account_id", "migration_id", "execution_id"],
    ),
    "working_drafts": (["id"], ["account_id", "id"]),
    "audit_entries": (["id"], ["account_id", "id"]),
    "webhook_deliveries": (["id"], ["account_id", "id"]),
}
# SQLite's rowid tables: their primary key stays ``id`` there.
ROWID_TABLES = {"execution_history", "held_reactions"}
# The unique constraints that the primary keys replace.
UNIQUES = {
    "workflows": "uq_workflows_account_id_id",
    "contacts": "uq_contacts_account_id_id",
    "webhook_subscriptions": "uq_webhook_subscriptions_account_id_id",
}


class ForeignKey(NamedTuple):
    table: str
    columns: list[str]
    referred: str

    @property
    def name(self) -> str:
        return f"fk_{self.table}_{self.columns[0]}_{self.referred}"

    @property
    def referred_columns(self) -> list[str]:
        return ["account_id", "id"] if self.columns[0] == "account_id" else ["id"]


# Foreign keys between tenant tables before and after. The composite ones that already
# existed are dropped and created again: they referred to the unique constraints above.
BEFORE = [
    ForeignKey("versions", ["account_id", "workflow_id"], "workflows"),
    ForeignKey("version_tags", ["version_id"], "versions"),
    ForeignKey("executions", ["account_id", "workflow_id"], "workflows"),
    ForeignKey("executions", ["account_id", "contact_id"], "contacts"),
    ForeignKey("execution_history", ["execution_id"], "executions"),
    ForeignKey("held_reactions", ["execution_id"], "executions"),
    ForeignKey("migrations", ["account_id", "workflow_id"], "workflows"),
    ForeignKey("migration_items", ["migration_id"], "migrations"),
    ForeignKey("migration_items", ["execution_id"], "executions"),
    ForeignKey("working_drafts", ["account_id", "workflow_id"], "workflows"),
    ForeignKey("webhook_deliveries", ["account_id", "subscription_id"], "webhook_subscriptions"),
]
AFTER = [
    ForeignKey("versions", ["account_id", "workflow_id"], "workflows"),
    ForeignKey("version_tags", ["account_id", "version_id"], "versions"),
    ForeignKey("executions", ["account_id", "workflow_id"], "workflows"),
    ForeignKey("executions", ["account_id", "contact_id"], "contacts"),
    ForeignKey("execution_history", ["account_id", "execution_id"], "executions"),
    ForeignKey("held_reactions", ["account_id", "execution_id"], "executions"),
    ForeignKey("migrations", ["account_id", "workflow_id"], "workflows"),
    ForeignKey("migration_items", ["account_id", "migration_id"], "migrations"),
    ForeignKey("migration_items", ["account_id", "execution_id"], "executions"),
    ForeignKey("working_drafts", ["account_id", "workflow_id"], "workflows"),
    ForeignKey("webhook_deliveries", ["account_id", "subscription_id"], "webhook_subscriptions"),
]


def upgrade() -> None:
    _move(drop=BEFORE, create=AFTER, keys={t: new for t, (_, new) in PRIMARY_KEYS.items()})


def downgrade() -> None:
    _move(drop=AFTER, create=BEFORE, keys={t: old for t, (old, _) in PRIMARY_KEYS.items()})


def _move(drop: list[ForeignKey], create: list[ForeignKey], keys: dict[str, list[str]]) -> None:
    upgrading = create is AFTER
    if op.get_bind().dialect.name == "sqlite":
        _move_on_sqlite(drop, create, keys, upgrading)
        return
    # PostgreSQL: a key cannot be dropped while a foreign key refers to it, so every foreign
    # key between tenant tables goes first and comes back last.
    for key in drop:
        op.drop_constraint(key.name, key.table, type_="foreignkey")
    if upgrading:
        for table, name in UNIQUES.items():
            op.drop_constraint(name, table, type_="unique")
    for table, columns in keys.items():
        op.drop_constraint(f"pk_{table}", table, type_="primary")
        op.create_primary_key(f"pk_{table}", table, columns)
    if not upgrading:
        for table, name in UNIQUES.items():
            op.create_unique_constraint(name, table, ["account_id", "id"])
    for key in create:
        op.create_foreign_key(
            key.name, key.table, key.referred, key.columns, key.referred_columns, ondelete="CASCADE"
        )


def _move_on_sqlite(
    drop: list[ForeignKey], create: list[ForeignKey], keys: dict[str, list[str]], upgrading: bool
) -> None:
    """SQLite changes a key by copying the table (Alembic's batch mode); the migration's
    connection runs without foreign-key enforcement, so copying a parent cascades nothing."""
    for table, columns in keys.items():
        with op.batch_alter_table(table, recreate="always") as batch_op:
            for key in drop:
                if key.table == table:
                    batch_op.drop_constraint(key.name, type_="foreignkey")
            if upgrading and table in UNIQUES:
                batch_op.drop_constraint(UNIQUES[table], type_="unique")
            if table not in ROWID_TABLES:
                batch_op.drop_constraint(f"pk_{table}", type_="primary")
                batch_op.create_primary_key(f"pk_{table}", columns)
            if not upgrading and table in UNIQUES:
                batch_op.create_unique_constraint(UNIQUES[table], ["account_id", "id"])
            for key in create:
                if key.table == table:
                    batch_op.create_foreign_key(
                        key.name,
                        key.referred,
                        key.columns,
                        key.referred_columns,
                        ondelete="CASCADE",
                    )
