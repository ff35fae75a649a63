"""The audit trail (SPEC §1 "Audit entry"): one entry per change, in the change's transaction,
chained by hashes that ``revflow audit verify`` checks.

The tests of the chains have a database of their own, because ``revflow audit verify`` walks
every account; the list's filters are tested in one account of the shared database.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import Uuid, bindparam, event, text
from sqlalchemy.orm import Session

from revflow.app import create_app
from revflow.audit import service as audit_service
from revflow.audit.repository import append
from revflow.audit.service import SYSTEM, record, verify_account
from revflow.config import Settings
from revflow.db import Database
from tests.support.engine import Engine
from tests.support.processes import revflow_command
from tests.support.servers import race, racing_clients
from tests.support.tenants import Tenant, make_tenant
from tests.support.workflows import create_version, create_workflow, simple_definition

VERIFY_TIMEOUT_S = 120.0
LOCK_WAIT_BOUND_S = 30.0  # a commit still waiting after this is waiting on a lock


@pytest.fixture
async def fresh_db(fresh_database_url: str) -> AsyncIterator[Database]:
    database = Database(fresh_database_url, pool_size=5)
    yield database
    await database.dispose()


@pytest.fixture
async def fresh_client(
    fresh_database_url: str, fresh_db: Database
) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(database_url=fresh_database_url, log_json=False)
    transport = httpx.ASGITransport(app=create_app(settings, fresh_db))
    async with httpx.AsyncClient(transport=transport, base_url="http://revflow.test") as client:
        yield client


@pytest.fixture
async def owner(fresh_db: Database, fresh_client: httpx.AsyncClient) -> Tenant:
    return await make_tenant(fresh_db, fresh_client, "audited")


async def entries(tenant: Tenant, page_size: int = 200, **filters: Any) -> list[dict[str, Any]]:
    """Every audit entry visible to ``tenant`` (following the cursor), newest first."""
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": page_size, **filters}
    while True:
        response = await tenant.request("GET", "/api/v1/audit", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["items"])
        if page["next_cursor"] is None:
            return items
        params["cursor"] = page["next_cursor"]


@dataclass
class Verified:
    code: int
    output: str  # stdout and stderr, whitespace collapsed (the console may wrap lines)


async def verify(database_url: str, *args: str) -> Verified:
    """Run ``revflow audit verify`` as a real process against ``database_url``."""
    env = {**os.environ, "REVFLOW_DATABASE_URL": database_url, "COLUMNS": "300"}
    process = await asyncio.create_subprocess_exec(
        *revflow_command(),
        "audit",
        "verify",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        stdout, _ = await asyncio.wait_for(process.communicate(), VERIFY_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Verified(process.returncode, " ".join(stdout.decode(errors="replace").split()))


async def execute_sql(db: Database, sql: str, **params: Any) -> int:
    """Run raw SQL behind the application's back; ``id`` is bound as a UUID. Rows changed."""
    statement = text(sql)
    if "id" in params:
        statement = statement.bindparams(bindparam("id", type_=Uuid()))
        params["id"] = uuid.UUID(str(params["id"]))
    async with db.session(write=True) as session:
        result = await session.execute(statement, params)
        await session.commit()
    rowcount: int = result.rowcount  # type: ignore[attr-defined]
    return rowcount


async def make_history(tenant: Tenant) -> str:
    """A few changes of one workflow; answers its id."""
    workflow = await create_workflow(tenant, "History")
    await create_version(tenant, workflow["id"], simple_definition("one"), None, publish=True)
    await create_version(tenant, workflow["id"], simple_definition("two"), 1, publish=True)
    response = await tenant.request(
        "PATCH", f"/api/v1/workflows/{workflow['id']}", json={"name": "History, renamed"}
    )
    assert response.status_code == 200, response.text
    return str(workflow["id"])


async def assert_intact(db: Database, tenant: Tenant) -> None:
    """The account's chain verifies (in this process; the CLI is what the tests exercise)."""
    async with db.session() as session:
        result = await verify_account(session, uuid.UUID(tenant.account_id))
    assert result.ok, result


def assert_chained(items: list[dict[str, Any]]) -> None:
    """Newest first, seq gapless down to 1, each entry pointing at the hash of the one before."""
    assert [e["seq"] for e in items] == list(range(len(items), 0, -1))
    oldest_first = list(reversed(items))
    assert oldest_first[0]["prev_hash"] == ""
    for previous, entry in itertools.pairwise(oldest_first):
        assert entry["prev_hash"] == previous["hash"], entry


async def test_every_change_writes_an_entry_with_its_actor(
    owner: Tenant, fresh_db: Database, fresh_client: httpx.AsyncClient
) -> None:
    keys = (await owner.request("GET", "/api/v1/api-keys")).json()["items"]
    (admin_key_id,) = [k["id"] for k in keys if owner.key.startswith(k["prefix"])]
    created = await owner.request(
        "POST", "/api/v1/api-keys", json={"user": "editor@example.com", "role": "editor"}
    )
    assert created.status_code == 201, created.text
    editor_key_id = created.json()["id"]
    editor = Tenant(owner.account_id, created.json()["api_key"], fresh_client)
    spare = await owner.request(
        "POST", "/api/v1/api-keys", json={"user": "spare@example.com", "role": "viewer"}
    )
    spare_key_id = spare.json()["id"]

    workflow = await create_workflow(editor, "Audited")
    wf = workflow["id"]
    v1 = await create_version(editor, wf, simple_definition("one"), None)
    published = await editor.request("POST", f"/api/v1/workflows/{wf}/versions/1/publish")
    assert published.status_code == 200, published.text
    v2 = await create_version(editor, wf, simple_definition("two"), 1, publish=True)
    rolled_back = await editor.request(
        "POST", f"/api/v1/workflows/{wf}/versions/1/rollback", json={"reason": "two is broken"}
    )
    assert rolled_back.status_code == 200, rolled_back.text
    tagged = await editor.request(
        "PUT", f"/api/v1/workflows/{wf}/versions/1/tags", json={"tags": ["stable"]}
    )
    assert tagged.status_code == 200, tagged.text
    renamed = await editor.request("PATCH", f"/api/v1/workflows/{wf}", json={"name": "Renamed"})
    assert renamed.status_code == 200, renamed.text
    revoked = await owner.request("DELETE", f"/api/v1/api-keys/{spare_key_id}")
    assert revoked.status_code == 200, revoked.text

    admin = ("admin", admin_key_id)
    by_editor = ("editor@example.com", editor_key_id)
    expected = [  # (action, (user, key id), object id, workflow id), oldest first
        ("account.created", ("test", None), owner.account_id, None),
        ("api_key.created", ("test", None), admin_key_id, None),
        ("api_key.created", admin, editor_key_id, None),
        ("api_key.created", admin, spare_key_id, None),
        ("workflow.created", by_editor, wf, wf),
        ("version.created", by_editor, v1["id"], wf),
        ("version.published", by_editor, v1["id"], wf),
        ("version.created", by_editor, v2["id"], wf),
        ("version.published", by_editor, v2["id"], wf),
        ("version.rolled_back", by_editor, v1["id"], wf),
        ("version.tagged", by_editor, v1["id"], wf),
        ("workflow.updated", by_editor, wf, wf),
        ("api_key.revoked", admin, spare_key_id, None),
    ]
    items = await entries(owner)
    assert_chained(items)
    got = [
        (
            e["action"],
            (e["actor"]["user"], e["actor"]["key_id"]),
            e["object_id"],
            e["workflow_id"],
        )
        for e in reversed(items)
    ]
    assert got == expected
    by_action = {e["action"]: e["details"] for e in items}  # the oldest of each action wins
    assert by_action["version.rolled_back"] == {
        "number": 1,
        "previous": 2,
        "reason": "two is broken",
    }
    assert by_action["version.tagged"]["after"] == ["stable"]
    assert by_action["workflow.updated"]["name"] == {"before": "Audited", "after": "Renamed"}
    assert by_action["version.published"] == {"number": 1, "previous": None}
    assert by_action["api_key.created"]["role"] == "admin"

    # Filters, alone and together; pages of a few entries add up to the whole list.
    assert await entries(owner, page_size=3) == items
    assert [e["seq"] for e in await entries(owner, workflow_id=wf)] == list(range(12, 4, -1))
    assert [e["seq"] for e in await entries(owner, action="version.published")] == [9, 7]
    created_here = await entries(owner, action="version.created", workflow_id=wf)
    assert [e["seq"] for e in created_here] == [8, 6]
    assert await entries(owner, action="contact.created") == []
    since, until = items[-7]["at"], items[-10]["at"]  # the times of entries 7 and 10

    def at(entry: dict[str, Any]) -> dt.datetime:
        return dt.datetime.fromisoformat(entry["at"])

    lower, upper = dt.datetime.fromisoformat(since), dt.datetime.fromisoformat(until)
    window = await entries(owner, since=since, until=until)
    assert window == [e for e in items if lower <= at(e) < upper]
    from_seven = await entries(owner, since=since)
    assert from_seven == [e for e in items if at(e) >= lower]
    assert 7 in [e["seq"] for e in from_seven]  # since is inclusive, until exclusive
    assert 7 not in [e["seq"] for e in await entries(owner, until=since)]

    # Another account sees only its own entries.
    other = await make_tenant(fresh_db, fresh_client, "other")
    assert [e["action"] for e in await entries(other)] == ["api_key.created", "account.created"]
    assert await entries(other, workflow_id=wf) == []


async def test_a_failed_change_leaves_no_entry(owner: Tenant) -> None:
    workflow = await create_workflow(owner)
    await create_version(owner, workflow["id"], simple_definition(), None)
    before = await entries(owner)

    stale = await owner.request(
        "POST",
        f"/api/v1/workflows/{workflow['id']}/versions",
        json={"definition": simple_definition("late"), "change_summary": "x", "base_version": None},
    )
    assert stale.status_code == 409 and stale.json()["code"] == "stale_base", stale.text
    assert stale.json()["latest_version"] == 1
    assert await entries(owner) == before

    # The workflow and its workflow.created entry are written before the definition is found
    # invalid: the whole transaction goes, entry included.
    broken = await owner.request(
        "POST",
        "/api/v1/workflows",
        json={"name": "broken", "definition": {"steps": []}, "change_summary": "first"},
    )
    assert broken.status_code == 422 and broken.json()["code"] == "invalid_definition", broken.text
    assert await entries(owner) == before
    names = [w["name"] for w in (await owner.request("GET", "/api/v1/workflows")).json()["items"]]
    assert "broken" not in names

    # The chain goes on from where it was: no seq was used up by the failures.
    await create_workflow(owner, "after")
    after = await entries(owner)
    assert after[1:] == before
    assert after[0]["seq"] == before[0]["seq"] + 1
    assert after[0]["prev_hash"] == before[0]["hash"]
    assert_chained(after)


async def test_verify_names_an_edited_entry(
    fresh_database_url: str,
    backend: str,
    owner: Tenant,
    fresh_db: Database,
    fresh_client: httpx.AsyncClient,
) -> None:
    await make_history(owner)
    bystander = await make_tenant(fresh_db, fresh_client, "bystander")
    await make_history(bystander)
    intact = await verify(fresh_database_url)
    assert intact.code == 0, intact.output
    assert owner.account_id in intact.output and bystander.account_id in intact.output

    items = await entries(owner)
    victim = items[len(items) // 2]
    details = json.dumps({**victim["details"], "tampered": True})
    value = "CAST(CAST(:details AS TEXT) AS JSONB)" if backend == "postgresql" else ":details"
    changed = await execute_sql(
        fresh_db,
        f"UPDATE audit_entries SET details = {value} WHERE id = :id",
        details=details,
        id=victim["id"],
    )
    assert changed == 1

    broken = await verify(fresh_database_url)
    assert broken.code == 1, broken.output
    assert f"seq={victim['seq']} " in broken.output
    assert victim["id"] in broken.output
    assert owner.account_id in broken.output
    only_bystander = await verify(fresh_database_url, "--account", bystander.account_id)
    assert only_bystander.code == 0, only_bystander.output


async def test_verify_names_a_deleted_entry(
    fresh_database_url: str, owner: Tenant, fresh_db: Database
) -> None:
    await make_history(owner)
    await assert_intact(fresh_db, owner)
    items = await entries(owner)
    victim = items[len(items) // 2]
    deleted = await execute_sql(
        fresh_db, "DELETE FROM audit_entries WHERE id = :id", id=victim["id"]
    )
    assert deleted == 1

    broken = await verify(fresh_database_url)
    assert broken.code == 1, broken.output
    assert f"seq={victim['seq']} " in broken.output
    assert f"entry {victim['seq']} is missing" in broken.output


async def test_verify_notices_that_the_last_entry_was_deleted(
    fresh_database_url: str, owner: Tenant, fresh_db: Database
) -> None:
    await make_history(owner)
    await assert_intact(fresh_db, owner)
    last = (await entries(owner))[0]
    deleted = await execute_sql(fresh_db, "DELETE FROM audit_entries WHERE id = :id", id=last["id"])
    assert deleted == 1

    # Every remaining entry is intact; only the chain's head knows that one is gone.
    broken = await verify(fresh_database_url)
    assert broken.code == 1, broken.output
    assert f"seq={last['seq']} " in broken.output
    assert "missing" in broken.output


async def test_concurrent_changes_keep_the_chain_valid(
    backend: str, fresh_database_url: str
) -> None:
    async with racing_clients(backend, fresh_database_url) as racers:
        created = await race(
            [
                partial(racers.call, i, "POST", "/api/v1/workflows", json={"name": f"wf {i}"})
                for i in range(10)
            ]
        )
        assert [r.status_code for r in created] == [201] * 10, [r.text for r in created]
        # A mix: the first version of each workflow, published, and new keys.
        mixed = await race(
            [
                partial(
                    racers.call,
                    i,
                    "POST",
                    f"/api/v1/workflows/{r.json()['id']}/versions",
                    json={
                        "definition": simple_definition(f"wf {i}"),
                        "change_summary": "first",
                        "base_version": None,
                        "publish": True,
                    },
                )
                for i, r in enumerate(created)
            ]
            + [
                partial(
                    racers.call,
                    i,
                    "POST",
                    "/api/v1/api-keys",
                    json={"user": f"user{i}@example.com", "role": "viewer"},
                )
                for i in range(5)
            ]
        )
        assert [r.status_code for r in mixed] == [201] * 15, [r.text for r in mixed]

        items = await entries(racers.tenant)
        assert_chained(items)
        # 2 for the account, 10 workflows, 10 versions created and published, 5 keys.
        assert len(items) == 2 + 10 + 20 + 5

    result = await verify(fresh_database_url)
    assert result.code == 0, result.output
    assert f"{len(items)} entries" in result.output


async def test_the_audit_list_filters_by_since_and_until(engine: Engine) -> None:
    # The clock of the engine stamps the entries: one change an hour.
    t0 = engine.clock.now()
    wf = await engine.workflow(simple_definition(), publish=False)  # 2 entries at t0
    engine.clock.advance(dt.timedelta(hours=1))
    await engine.new_version(wf, simple_definition("Two"), 1, publish=False)  # 1 at t0+1h
    engine.clock.advance(dt.timedelta(hours=1))
    published = await engine.tenant.request("POST", f"/api/v1/workflows/{wf}/versions/2/publish")
    assert published.status_code == 200, published.text  # 1 at t0+2h

    async def actions(**params: dt.datetime) -> list[str]:
        query = {"workflow_id": wf, "limit": 200, **{k: v.isoformat() for k, v in params.items()}}
        response = await engine.tenant.request("GET", "/api/v1/audit", params=query)
        assert response.status_code == 200, response.text
        return [e["action"] for e in response.json()["items"]]

    everything = ["version.published", "version.created", "version.created", "workflow.created"]
    assert await actions() == everything
    hour = dt.timedelta(hours=1)
    assert await actions(since=t0 + hour) == ["version.published", "version.created"]
    assert await actions(since=t0 + 2 * hour) == ["version.published"]
    assert await actions(until=t0 + hour) == ["version.created", "workflow.created"]
    assert await actions(since=t0 + hour, until=t0 + 2 * hour) == ["version.created"]
    assert await actions(since=t0 + 3 * hour) == []
    assert await actions(until=t0) == []


async def test_a_change_holds_the_chain_only_while_it_commits(
    backend: str, fresh_db: Database, owner: Tenant
) -> None:
    """A change whose entry is recorded but not yet committed does not hold the account's
    other changes: the chain's head is locked as the change commits, not when it records."""
    if backend != "postgresql":
        pytest.skip("SQLite runs one write transaction at a time")
    account = uuid.UUID(owner.account_id)
    now = dt.datetime.now(dt.UTC)
    async with fresh_db.session(write=True) as slow, fresh_db.session(write=True) as quick:
        await record(slow, account, SYSTEM, "test.slow", object_type="test", object_id="1", now=now)
        await slow.flush()

        async def quick_change() -> None:
            await record(
                quick, account, SYSTEM, "test.quick", object_type="test", object_id="2", now=now
            )
            await quick.commit()

        # Before, the slow change's record had locked the head: this one waited for it.
        await asyncio.wait_for(quick_change(), LOCK_WAIT_BOUND_S)
        await slow.commit()
    async with fresh_db.session(write=True) as rolled_back:
        await record(
            rolled_back, account, SYSTEM, "test.gone", object_type="test", object_id="3", now=now
        )
        await rolled_back.rollback()
        await rolled_back.commit()  # an empty transaction: nothing left over from the first
    items = await entries(owner)
    assert [item["action"] for item in items[:2]] == ["test.slow", "test.quick"]
    assert "test.gone" not in {item["action"] for item in items}
    assert_chained(items)
    async with fresh_db.session() as session:
        assert (await verify_account(session, account)).ok


async def _record_and_commit(db: Database, account: uuid.UUID, action: str) -> list[str]:
    """Record one entry and commit it; answers the statements that touched the chain's head."""
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "audit_heads" in statement:
            statements.append(statement)

    sync_engine = db.engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", seen)
    try:
        async with db.session(write=True) as session:
            now = dt.datetime.now(dt.UTC)
            await record(
                session, account, SYSTEM, action, object_type="test", object_id="1", now=now
            )
            await session.commit()
    finally:
        event.remove(sync_engine, "before_cursor_execute", seen)
    return statements


async def test_an_entry_after_a_head_this_process_left_is_one_statement(
    backend: str, fresh_db: Database, owner: Tenant
) -> None:
    """Where this process left the account's head is where the next entry goes: appended and
    made the head in one statement, on the condition that the head is still there."""
    account = uuid.UUID(owner.account_id)
    await _record_and_commit(fresh_db, account, "test.first")
    second = await _record_and_commit(fresh_db, account, "test.second")
    if backend == "postgresql":
        assert len(second) == 1 and "moved_head" in second[0], second
    else:  # no UPDATE in a CTE: the head is advanced, then the entry appended
        assert len(second) == 2, second
    items = await entries(owner)
    assert [item["action"] for item in items[:2]] == ["test.second", "test.first"]
    assert_chained(items)


async def test_a_head_left_elsewhere_costs_a_statement_not_the_chain(
    backend: str, fresh_db: Database, owner: Tenant
) -> None:
    """The head this process remembers can be wrong: its entry was appended in a savepoint
    whose transaction rolled back, and another process appended since — the same number, a
    different hash. The next entry finds the head is not where it was left and joins the
    chain where the chain really ends."""
    account = uuid.UUID(owner.account_id)
    await _record_and_commit(fresh_db, account, "test.first")
    async with fresh_db.session(write=True) as session:
        async with session.begin_nested():
            now = dt.datetime.now(dt.UTC)
            # Inside a savepoint the entry is appended at once: the head moves, then not.
            await record(
                session, account, SYSTEM, "test.gone", object_type="t", object_id="2", now=now
            )
        await session.rollback()
    # Another process appends: as if this one had never seen that entry.
    left_after_gone = dict(audit_service._HEADS)
    await _record_and_commit(fresh_db, account, "test.elsewhere")
    audit_service._HEADS.clear()
    audit_service._HEADS.update(left_after_gone)
    statements = await _record_and_commit(fresh_db, account, "test.after")
    if backend == "postgresql":
        # The conditional append (no row), then the advance and the append.
        assert len(statements) == 3 and "moved_head" in statements[0], statements
    items = await entries(owner)
    assert [item["action"] for item in items[:3]] == ["test.after", "test.elsewhere", "test.first"]
    assert_chained(items)
    async with fresh_db.session() as session:
        assert (await verify_account(session, account)).ok


async def _statements_on_the_head(db: Database, change: Any) -> list[str]:
    """The statements that touched the chain's head while ``change()`` ran."""
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "audit_heads" in statement:
            statements.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", seen)
    try:
        await change()
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", seen)
    return statements


async def test_a_new_version_joins_the_chain_in_its_own_statement(
    backend: str, fresh_db: Database, owner: Tenant
) -> None:
    """On PostgreSQL, a version's entry joins the chain in the statement that inserts the
    version, where this process left the head. Where the head has moved since (another
    process), the entry joins at the commit where the chain really ends; with a publish to
    follow, both entries join at the commit."""
    account = uuid.UUID(owner.account_id)
    workflow = await create_workflow(owner, "Joined")  # this process now knows the head
    created = await _statements_on_the_head(
        fresh_db, partial(create_version, owner, workflow["id"], simple_definition("one"), None)
    )
    # Another process appends: the head is no longer where this one left it.
    left = dict(audit_service._HEADS)
    await _record_and_commit(fresh_db, account, "test.elsewhere")
    audit_service._HEADS.clear()
    audit_service._HEADS.update(left)
    after_elsewhere = await _statements_on_the_head(
        fresh_db, partial(create_version, owner, workflow["id"], simple_definition("two"), 1)
    )
    published = await _statements_on_the_head(
        fresh_db,
        partial(create_version, owner, workflow["id"], simple_definition("three"), 2, publish=True),
    )
    if backend == "postgresql":
        assert len(created) == 1 and "INSERT INTO versions" in created[0], created
        # The version's statement appends nothing; the commit advances the head and appends.
        assert len(after_elsewhere) == 3, after_elsewhere
        assert "INSERT INTO versions" in after_elsewhere[0], after_elsewhere
        assert not any("INSERT INTO versions" in statement for statement in published), published
    items = await entries(owner)
    assert [(item["action"], item["details"].get("number")) for item in items[:5]] == [
        ("version.published", 3),
        ("version.created", 3),
        ("version.created", 2),
        ("test.elsewhere", None),
        ("version.created", 1),
    ]
    assert_chained(items)
    await assert_intact(fresh_db, owner)


def _entry_row(account_id: uuid.UUID, seq: int) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "account_id": account_id,
        "seq": seq,
        "at": dt.datetime.now(dt.UTC),
        "actor_user": "someone@example.com",
        "actor_key_id": None,
        "action": "version.created",
        "workflow_id": uuid.uuid4(),
        "object_type": "version",
        "object_id": str(uuid.uuid4()),
        "details": {"number": seq},
        "prev_hash": f"{seq - 1:064x}",
        "hash": f"{seq:064x}",
    }


class _Recording:
    """Stands in for a session: records the statements executed and their parameters."""

    def __init__(self, dialect: str) -> None:
        self.executed: list[tuple[Any, dict[str, Any]]] = []
        self.dialect = dialect

    def get_bind(self) -> Any:
        return SimpleNamespace(dialect=SimpleNamespace(name=self.dialect))

    def execute(self, statement: Any, params: dict[str, Any]) -> None:
        self.executed.append((statement, params))


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_one_entry_appends_by_statements_built_once(dialect: str) -> None:
    """Every API change appends one entry: by the same statements whatever the entry (built
    once, the entry's values as parameters), so no statement is built or compiled per change."""
    runs = []
    for seq in (1, 2):
        session = _Recording(dialect)
        account_id = uuid.uuid4()
        row = _entry_row(account_id, seq)
        append(cast(Session, session), account_id, [row])
        runs.append(session.executed)
        params = {key: value for _, given in session.executed for key, value in given.items()}
        assert params["e_hash"] == row["hash"] and params["head_hash"] == row["hash"]
        assert params["e_details"] == {"number": seq}
    assert [id(statement) for statement, _ in runs[0]] == [id(s) for s, _ in runs[1]]
    assert len(runs[0]) == (1 if dialect == "postgresql" else 2)
