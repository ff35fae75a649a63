"""row-level security on every tenant table (PostgreSQL): the second wall of SPEC §1

Revision ID: 0011
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from revflow.alembic import rls

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def tenant_tables() -> list[str]:
    """Every table holding ``account_id`` now, so that tables added by earlier revisions are
    covered whatever they are; later revisions call ``rls.enable`` for their own."""
    rows = op.get_bind().execute(
        sa.text(
            "SELECT table_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND column_name = 'account_id' "
            "ORDER BY table_name"
        )
    )
    return [row.table_name for row in rows]


def upgrade() -> None:
    if not rls.on_postgresql():
        return
    rls.ensure_tenant_role()
    for table in tenant_tables():
        rls.enable(table)
    # A tenant reads its own account (by id); accounts are created on the operator's path.
    rls.enable("accounts", column="id", privileges="SELECT")


def downgrade() -> None:
    if not rls.on_postgresql():
        return
    rls.disable("accounts")
    for table in tenant_tables():
        rls.disable(table)
