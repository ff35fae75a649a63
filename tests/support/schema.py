"""The live schema of a database as SQLAlchemy's inspector reads it (both databases)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine


async def read_schema(database_url: str) -> dict[str, Any]:
    """Per table: its columns, and its indexes and unique constraints with their columns."""
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


async def read_keys(database_url: str) -> dict[str, Any]:
    """Per table: its primary key, its unique constraints and indexes, its foreign keys."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:

            def read(sync: Any) -> dict[str, Any]:
                inspector = inspect(sync)
                return {
                    table: {
                        "primary": inspector.get_pk_constraint(table)["constrained_columns"],
                        "unique": [
                            (u["name"], list(u["column_names"]))
                            for u in inspector.get_unique_constraints(table)
                        ]
                        + [
                            (i["name"], list(i["column_names"]))
                            for i in inspector.get_indexes(table)
                            if i["unique"]
                        ],
                        "foreign": [
                            (
                                fk["name"],
                                list(fk["constrained_columns"]),
                                fk["referred_table"],
                                list(fk["referred_columns"]),
                            )
                            for fk in inspector.get_foreign_keys(table)
                        ],
                    }
                    for table in inspector.get_table_names()
                }

            return await connection.run_sync(read)
    finally:
        await engine.dispose()
