"""The migrated schema keeps the tenancy rules the README states (both databases): every tenant
table carries ``account_id`` and every secondary or unique index leads with it, except the
workers' indexes that serve every account; every key and foreign key between tenant tables
includes it, so that the tables can be distributed by account; on PostgreSQL every tenant
table is behind row-level security."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from revflow.alembic import rls
from revflow.db import ACCOUNT_SETTING, TENANT_ROLE
from revflow.migrate import alembic_config, downgrade, upgrade
from tests.support.schema import read_index_shapes, read_keys, read_schema

RLS_REVISION = "0011"

# The operator's tables: no tenant data.
GLOBAL_TABLES = {"accounts", "scheduled_jobs", "alembic_version"}
# Tables every node of a distributed database holds whole (reference tables): authentication
# finds the account from the API key, so the keys are looked up before any account is known.
REFERENCE_TABLES = {"api_keys"}
# SQLite's two append-only logs keep SQLite's rowid as their key (revision 0013).
SQLITE_ROWID_TABLES = {"execution_history", "held_reactions"}
# Indexes that serve every account: the workers' (due work of all accounts) and the API key
# lookup (authentication finds the account from the key).
WORKER_INDEXES = {
    "ix_executions_due",
    "ix_migrations_runnable",
    "ix_webhook_deliveries_due",
    "uq_api_keys_key_hash",
}


async def test_every_tenant_table_and_index_leads_with_the_account(database_url: str) -> None:
    schema = await read_schema(database_url)
    assert "executions" in schema and "held_reactions" in schema
    without_account = [
        t
        for t, info in schema.items()
        if t not in GLOBAL_TABLES and "account_id" not in info["columns"]
    ]
    assert without_account == []
    against = [
        f"{table}.{name} {columns}"
        for table, info in schema.items()
        if table not in GLOBAL_TABLES
        for name, columns in info["indexes"]
        if columns and columns[0] != "account_id" and name not in WORKER_INDEXES
    ]
    assert against == []


async def test_no_two_indexes_of_a_table_are_the_same(database_url: str) -> None:
    """Every write pays for every index: two on the same columns (and the same condition)
    cost an insert twice for one lookup."""
    twice = []
    for table, shapes in (await read_index_shapes(database_url)).items():
        seen: dict[tuple[tuple[str, ...], str], str] = {}
        for name, columns, options in shapes:
            if (columns, options) in seen:
                twice.append(f"{table}: {seen[columns, options]} and {name} on {columns}")
            seen[columns, options] = name
    assert twice == []


def key_problems(backend: str, keys: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """What keeps the tables from being distributed by ``account_id`` (README, "Distributing
    by account"): a tenant table's primary key or unique constraint without it, a foreign key
    between tenant tables that does not match it to the referred row's, or a table held whole
    on every node that refers to a distributed one."""
    distributed = {
        t
        for t, info in schema.items()
        if "account_id" in info["columns"] and t not in REFERENCE_TABLES
    }
    problems = []
    for table in sorted(distributed):
        primary = keys[table]["primary"]
        rowid = backend == "sqlite" and table in SQLITE_ROWID_TABLES and primary == ["id"]
        if "account_id" not in primary and not rowid:
            problems.append(f"{table}: primary key {primary} without account_id")
        for name, columns in keys[table]["unique"]:
            if "account_id" not in columns and name not in WORKER_INDEXES:
                problems.append(f"{table}.{name}: unique {columns} without account_id")
    for table, info in sorted(keys.items()):
        for name, columns, referred, referred_columns in info["foreign"]:
            if table not in distributed:
                if referred in distributed:
                    problems.append(f"{table}.{name}: a whole table refers to {referred}")
            elif referred in distributed and (
                "account_id" not in columns
                or referred_columns[columns.index("account_id")] != "account_id"
            ):
                problems.append(f"{table}.{name}: {columns} -> {referred} {referred_columns}")
    return problems


async def test_every_key_of_a_tenant_table_includes_the_account(
    database_url: str, backend: str
) -> None:
    schema, keys = await read_schema(database_url), await read_keys(database_url)
    assert {"executions", "execution_history", "migration_items"} <= keys.keys()
    assert keys["executions"]["primary"] == ["account_id", "id"]
    assert key_problems(backend, keys, schema) == []


def test_the_key_rules_catch_what_breaks_them() -> None:
    """The checker itself: each kind of break is found (so a green run means something)."""
    schema = {
        "accounts": {"columns": ["id"]},
        "api_keys": {"columns": ["id", "account_id"]},
        "executions": {"columns": ["id", "account_id"]},
        "execution_history": {"columns": ["id", "account_id", "execution_id"]},
    }
    good = {
        "accounts": {"primary": ["id"], "unique": [], "foreign": []},
        "api_keys": {
            "primary": ["id"],
            "unique": [("uq_api_keys_key_hash", ["key_hash"])],
            "foreign": [("fk_a", ["account_id"], "accounts", ["id"])],
        },
        "executions": {"primary": ["account_id", "id"], "unique": [], "foreign": []},
        "execution_history": {
            "primary": ["account_id", "id"],
            "unique": [],
            "foreign": [
                ("fk_h", ["account_id", "execution_id"], "executions", ["account_id", "id"])
            ],
        },
    }
    assert key_problems("postgresql", good, schema) == []
    rowid = {**good, "execution_history": {**good["execution_history"], "primary": ["id"]}}
    assert key_problems("sqlite", rowid, schema) == []
    assert len(key_problems("postgresql", rowid, schema)) == 1
    breaks = [
        ("executions", "primary", ["id"]),
        ("executions", "unique", [("uq_x", ["id"])]),
        ("execution_history", "foreign", [("fk_h", ["execution_id"], "executions", ["id"])]),
        (
            "execution_history",
            "foreign",
            [("fk_h", ["account_id", "execution_id"], "executions", ["id", "account_id"])],
        ),
        (
            "api_keys",
            "foreign",
            [("fk_r", ["account_id", "id"], "executions", ["account_id", "id"])],
        ),
    ]
    for table, part, value in breaks:
        broken = {**good, table: {**good[table], part: value}}
        assert len(key_problems("postgresql", broken, schema)) == 1, (table, part, value)


async def row_level_security(database_url: str) -> dict[str, Any]:
    """Per table of the schema: whether row-level security is enabled and forced, its policies
    (roles, USING and WITH CHECK) and whether the tenant role may read and change it."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text(
                    "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, t.tableowner, "
                    "has_table_privilege(:role, c.oid, 'SELECT') AS reads, "
                    "has_table_privilege(:role, c.oid, 'INSERT,UPDATE,DELETE') AS writes, "
                    "array(SELECT column_name::text FROM information_schema.columns i "
                    "      WHERE i.table_schema = t.schemaname AND i.table_name = c.relname) "
                    "  AS columns "
                    "FROM pg_class c JOIN pg_tables t "
                    "  ON t.tablename = c.relname AND t.schemaname = current_schema() "
                    "WHERE c.relnamespace = current_schema()::regnamespace"
                ),
                {"role": TENANT_ROLE},
            )
            tables = {row.relname: dict(row._mapping, policies={}) for row in rows}
            policies = await connection.execute(
                text(
                    "SELECT tablename, policyname, roles::text[] AS roles, cmd, qual, with_check "
                    "FROM pg_policies WHERE schemaname = current_schema()"
                )
            )
            for policy in policies:
                tables[policy.tablename]["policies"][policy.policyname] = policy
            return tables
    finally:
        await engine.dispose()


async def test_every_tenant_table_is_behind_row_level_security(
    backend: str, database_url: str
) -> None:
    """SPEC §1's second wall, checked on the migrated schema so that a later table holding
    ``account_id`` cannot forget it (``revflow.alembic.rls.enable``)."""
    if backend != "postgresql":
        pytest.skip("row-level security is PostgreSQL's")
    tables = await row_level_security(database_url)
    walled = {t: "account_id" for t, info in tables.items() if "account_id" in info["columns"]}
    walled["accounts"] = "id"
    assert len(walled) > 15
    problems = []
    for table, column in walled.items():
        info = tables[table]
        if not (info["relrowsecurity"] and info["relforcerowsecurity"]):
            problems.append(f"{table}: row-level security is not enabled and forced")
        tenant = info["policies"].get(rls.TENANT_POLICY)
        mine = f"({column} = (NULLIF(current_setting('{ACCOUNT_SETTING}'::text, true)"
        if tenant is None or tenant.roles != [TENANT_ROLE] or tenant.cmd != "ALL":
            problems.append(f"{table}: no {rls.TENANT_POLICY} policy for {TENANT_ROLE}")
        elif not (tenant.qual.startswith(mine) and tenant.with_check == tenant.qual):
            problems.append(f"{table}: {rls.TENANT_POLICY} is {tenant.qual} / {tenant.with_check}")
        owner = info["policies"].get(rls.OWNER_POLICY)
        if owner is None or owner.roles != [info["tableowner"]]:
            problems.append(f"{table}: no {rls.OWNER_POLICY} policy for its owner")
        if set(info["policies"]) != {rls.TENANT_POLICY, rls.OWNER_POLICY}:
            problems.append(f"{table}: unexpected policies {sorted(info['policies'])}")
        if not info["reads"] or info["writes"] != (table != "accounts"):
            problems.append(f"{table}: {TENANT_ROLE} may not read and change it as it should")
    for table in tables.keys() - walled.keys():
        if tables[table]["reads"] or tables[table]["writes"]:
            problems.append(f"{table}: an operator's table open to {TENANT_ROLE}")
    assert problems == []


async def test_the_row_level_security_revision_goes_down_and_up(
    backend: str, fresh_database_url: str
) -> None:
    script = ScriptDirectory.from_config(alembic_config(fresh_database_url))
    revision = script.get_revision(RLS_REVISION)
    assert revision is not None and isinstance(revision.down_revision, str)
    # Alembic starts event loops of its own: run it beside this test's loop.
    await asyncio.to_thread(downgrade, fresh_database_url, revision.down_revision)
    if backend == "postgresql":
        tables = await row_level_security(fresh_database_url)
        assert not any(info["relrowsecurity"] or info["policies"] for info in tables.values())
        assert not any(info["reads"] or info["writes"] for info in tables.values())
    await asyncio.to_thread(upgrade, fresh_database_url)
    if backend == "postgresql":
        tables = await row_level_security(fresh_database_url)
        assert tables["contacts"]["relforcerowsecurity"] and tables["contacts"]["writes"]
        assert set(tables["contacts"]["policies"]) == {rls.TENANT_POLICY, rls.OWNER_POLICY}
