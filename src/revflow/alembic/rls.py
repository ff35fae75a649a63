"""Row-level security on tenant tables: SPEC §1's second wall, on PostgreSQL.

Every tenant table gets the same treatment: the tenant role may read and change its rows, the
table's row-level security is enabled and forced, and two policies decide what a role sees:

- ``tenant_isolation``, for ``revflow_tenant`` (the role the API's transactions run as): the
  rows whose account column equals ``app.account_id``, set per transaction; rows it writes
  must carry that account too (``WITH CHECK``). Without the setting it sees nothing.
- ``owner_cross_account``, for the table's owner (the role that ran the migrations, which
  every revflow process connects as): every row. This is the cross-account path of the worker
  and the operator (README, "PostgreSQL").

FORCE puts the owner under the policies too, so that no role sees across accounts merely by
owning the tables: every such role is named in ``pg_policies``.

A revision that creates a table holding ``account_id`` calls ``enable(table)`` after creating
it, and ``disable(table)`` in its downgrade before dropping it; ``tests/test_schema.py`` fails
for a tenant table without them. On SQLite every function here does nothing.
"""

from __future__ import annotations

from alembic import op

from revflow.db import ACCOUNT_SETTING, TENANT_ROLE

TENANT_POLICY = "tenant_isolation"
OWNER_POLICY = "owner_cross_account"
DML = "SELECT, INSERT, UPDATE, DELETE"


def on_postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def ensure_tenant_role() -> None:
    """Create ``revflow_tenant`` (NOLOGIN, NOBYPASSRLS) unless it exists, and make the role
    running the migration a member when it may (then one login serves, migrates and works).

    Roles belong to the whole PostgreSQL cluster, so databases share it. Creating it needs
    CREATEROLE; without it, and without the role, the migration stops and says what an
    administrator runs. A role of that name that could bypass the policies is refused.
    """
    if on_postgresql():
        op.execute(tenant_role_statement(TENANT_ROLE))


def tenant_role_statement(role: str) -> str:
    """The statement of ``ensure_tenant_role`` for ``role`` (a parameter for its tests)."""
    return f"""
        DO $rls$
        DECLARE
            existing pg_roles%ROWTYPE;
        BEGIN
            SELECT * INTO existing FROM pg_roles WHERE rolname = '{role}';
            IF NOT FOUND THEN
                BEGIN
                    CREATE ROLE {role} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE
                        NOREPLICATION NOBYPASSRLS;
                EXCEPTION
                    WHEN duplicate_object THEN
                        NULL;  -- the migration of another database created it meanwhile
                    WHEN insufficient_privilege THEN
                        RAISE EXCEPTION 'the role {role} does not exist and % may not create '
                            'roles: as a superuser run CREATE ROLE {role} NOLOGIN; GRANT {role} '
                            'TO %; then revflow db upgrade again',
                            current_user, quote_ident(current_user);
                END;
            ELSIF existing.rolsuper OR existing.rolbypassrls THEN
                RAISE EXCEPTION 'the role {role} is a superuser or has BYPASSRLS, so row-level '
                    'security would not hold it: run ALTER ROLE {role} NOSUPERUSER NOBYPASSRLS';
            END IF;
            IF NOT pg_has_role(current_user, '{role}', 'MEMBER') THEN
                BEGIN
                    EXECUTE format('GRANT {role} TO %I', current_user);
                EXCEPTION WHEN insufficient_privilege THEN
                    RAISE WARNING '% is not a member of {role}, which the API needs: as a '
                        'superuser run GRANT {role} TO %', current_user, quote_ident(current_user);
                END;
            END IF;
        END
        $rls$
    """


def enable(table: str, column: str = "account_id", privileges: str = DML) -> None:
    """Put ``table`` behind row-level security on ``column`` (its account)."""
    if not on_postgresql():
        return
    mine = f"{column} = NULLIF(current_setting('{ACCOUNT_SETTING}', true), '')::uuid"
    op.execute(f"GRANT {privileges} ON {table} TO {TENANT_ROLE}")
    # Row ids drawn from a sequence (history, held reactions) need it too.
    _each_sequence(table, f"GRANT USAGE, SELECT ON SEQUENCE %s TO {TENANT_ROLE}")
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY {TENANT_POLICY} ON {table} AS PERMISSIVE FOR ALL TO {TENANT_ROLE} "
        f"USING ({mine}) WITH CHECK ({mine})"
    )
    op.execute(
        f"""
        DO $rls$
        BEGIN
            EXECUTE format(
                'CREATE POLICY {OWNER_POLICY} ON {table} AS PERMISSIVE FOR ALL TO %I '
                'USING (true) WITH CHECK (true)',
                (SELECT tableowner FROM pg_tables
                 WHERE schemaname = current_schema() AND tablename = '{table}'));
        END
        $rls$
        """
    )


def disable(table: str) -> None:
    """Undo ``enable`` (the role itself stays: other databases of the cluster may use it)."""
    if not on_postgresql():
        return
    op.execute(f"DROP POLICY IF EXISTS {OWNER_POLICY} ON {table}")
    op.execute(f"DROP POLICY IF EXISTS {TENANT_POLICY} ON {table}")
    op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.execute(f"REVOKE ALL ON {table} FROM {TENANT_ROLE}")
    _each_sequence(table, f"REVOKE ALL ON SEQUENCE %s FROM {TENANT_ROLE}")


def _each_sequence(table: str, statement: str) -> None:
    """Run ``statement`` (``%s`` standing for the sequence) on each sequence of ``table``."""
    op.execute(
        f"""
        DO $rls$
        DECLARE
            sequence text;
        BEGIN
            FOR sequence IN
                SELECT pg_get_serial_sequence(quote_ident('{table}'), attname)
                FROM pg_attribute
                WHERE attrelid = '{table}'::regclass AND attnum > 0 AND NOT attisdropped
            LOOP
                IF sequence IS NOT NULL THEN
                    EXECUTE format('{statement}', sequence);
                END IF;
            END LOOP;
        END
        $rls$
        """
    )
