"""The migrated schema keeps the tenancy rules the README states (both databases): every tenant
table carries ``account_id`` and every secondary or unique index leads with it, except the
workers' indexes that serve every account."""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

# The operator's tables: no tenant data.
GLOBAL_TABLES = {"accounts", "scheduled_jobs", "alembic_version"}
# Indexes that serve every account: the workers' (due work of all accounts) and the API key
# lookup (authentication finds the account from the key).
WORKER_INDEXES = {
    "ix_executions_due",
    "ix_migrations_runnable",
    "ix_webhook_deliveries_due",
    "uq_api_keys_key_hash",
}


async def read_schema(database_url: str) -> dict[str, Any]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:

            def read(sync: Any) -> dict[str, Any]:
                inspector = inspect(sync)
                tables = {}
                for table in inspector.get_table_names():
                    tables[table] = {
                        "columns": [c["name"] for c in inspector.get_columns(table)],
                        "indexes": [
                            (i["name"], list(i["column_names"]))
                            for i in inspector.get_indexes(table)
                        ]
                        + [
                            (u["name"], list(u["column_names"]))
                            for u in inspector.get_unique_constraints(table)
                        ],
                    }
                return tables

            return await connection.run_sync(read)
    finally:
        await engine.dispose()


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
