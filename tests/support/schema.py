"""The live schema of a database as SQLAlchemy's inspector reads it (both databases)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Inspector, inspect
from sqlalchemy.ext.asyncio import create_async_engine


async def _per_table(
    database_url: str, describe: Callable[[Inspector, str], dict[str, Any]]
) -> dict[str, Any]:
    """``describe(inspector, table)`` for every table of the database."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:

            def read(sync: Any) -> dict[str, Any]:
                inspector = inspect(sync)
                return {table: describe(inspector, table) for table in inspector.get_table_names()}

            return await connection.run_sync(read)
    finally:
        await engine.dispose()


def _columns_and_indexes(inspector: Inspector, table: str) -> dict[str, Any]:
    return {
        "columns": [c["name"] for c in inspector.get_columns(table)],
        "indexes": [(i["name"], list(i["column_names"])) for i in inspector.get_indexes(table)]
        + [(u["name"], list(u["column_names"])) for u in inspector.get_unique_constraints(table)],
    }


def _keys(inspector: Inspector, table: str) -> dict[str, Any]:
    return {
        "primary": inspector.get_pk_constraint(table)["constrained_columns"],
        "unique": [
            (u["name"], list(u["column_names"])) for u in inspector.get_unique_constraints(table)
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


async def read_schema(database_url: str) -> dict[str, Any]:
    """Per table: its columns, and its indexes and unique constraints with their columns."""
    return await _per_table(database_url, _columns_and_indexes)


async def read_keys(database_url: str) -> dict[str, Any]:
    """Per table: its primary key, its unique constraints and indexes, its foreign keys."""
    return await _per_table(database_url, _keys)


def _condition(options: dict[str, Any]) -> str:
    """A partial index's condition (its text), or "" for a whole one."""
    where = options.get("postgresql_where", options.get("sqlite_where"))
    return "" if where is None else str(where)


def _index_shapes(inspector: Inspector, table: str) -> list[tuple[str, tuple[str, ...], str]]:
    shapes = [
        (
            index["name"] or "",
            tuple(str(c) for c in index["column_names"]),
            _condition(index.get("dialect_options") or {}),
        )
        for index in inspector.get_indexes(table)
        if not index.get("duplicates_constraint")  # PostgreSQL: a unique constraint's own
    ]
    shapes += [
        (u["name"] or "", tuple(u["column_names"]), "")
        for u in inspector.get_unique_constraints(table)
    ]
    return shapes


async def read_index_shapes(database_url: str) -> dict[str, Any]:
    """Per table: its indexes and unique constraints as (name, columns, a partial index's
    condition or "")."""
    return await _per_table(database_url, _index_shapes)
