"""``revflow prune`` (both databases): ``--dry-run`` counts and deletes nothing; a run
deletes what it counted and prints it by kind; a second run finds nothing."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from revflow.db import Database
from tests.retention.command import counts, run_prune
from tests.support.retention import check_consistent, history_state, messages_left, seed_aged


@pytest.fixture
async def own_db(fresh_database_url: str) -> AsyncIterator[Database]:
    database = Database(fresh_database_url, pool_size=2)
    yield database
    await database.dispose()


async def test_dry_run_deletes_nothing_and_a_run_deletes_what_it_counted(
    fresh_database_url: str, own_db: Database, tmp_path: Path
) -> None:
    aged = await seed_aged(own_db, old=30, live=5, history=3, age=dt.timedelta(days=200))
    expected = {
        "history": 30 * 3,
        "messages": 30,
        "migration_items": 0,
        "idempotency_records": 0,
        "webhook_deliveries": 0,
    }

    dry = run_prune(fresh_database_url, "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "would be removed" in dry.stdout
    assert counts(dry.stdout) == expected
    assert check_consistent(await history_state(own_db, aged), aged) == 0
    assert await messages_left(own_db, aged) == aged.old | aged.live

    done = run_prune(fresh_database_url, cwd=tmp_path, batch_size=7)
    assert done.returncode == 0, done.stderr
    assert f"{sum(expected.values())} row(s) removed" in done.stdout
    assert counts(done.stdout) == expected
    assert check_consistent(await history_state(own_db, aged), aged) == len(aged.old)
    assert await messages_left(own_db, aged) == aged.live

    again = run_prune(fresh_database_url, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert counts(again.stdout) == dict.fromkeys(expected, 0)


def test_prune_never_creates_a_database(tmp_path: Path) -> None:
    missing = f"sqlite+aiosqlite:///{tmp_path / 'none.db'}"
    result = run_prune(missing, "--dry-run", cwd=tmp_path)
    assert result.returncode == 1
    assert (
        result.stderr.startswith("error: no database at") and "revflow db upgrade" in result.stderr
    )
    assert not (tmp_path / "none.db").exists()
