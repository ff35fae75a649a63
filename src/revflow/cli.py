"""The ``revflow`` command line (Typer)."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from typing import Annotated, Any

import typer
import uvicorn
from rich.console import Console
from sqlalchemy import select

from revflow.audit.service import SYSTEM, Actor, verify_account
from revflow.auth import service as auth_service
from revflow.config import Settings, get_settings
from revflow.db import Database
from revflow.logging import configure as configure_logging
from revflow.migrate import upgrade as upgrade_database
from revflow.models import Account, Version

app = typer.Typer(
    help="revflow: workflow automation with safe, versioned change.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
accounts_app = typer.Typer(help="Accounts (tenants).", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(accounts_app, name="accounts")
app.add_typer(audit_app, name="audit")
versions_app = typer.Typer(help="Workflow versions.", no_args_is_help=True)
app.add_typer(versions_app, name="versions")

err = Console(stderr=True)


def _database() -> Database:
    settings = get_settings()
    return Database(settings.database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply the schema migrations (Alembic) to REVFLOW_DATABASE_URL."""
    upgrade_database(get_settings().database_url, revision)
    err.print(f"[green]database at {revision}[/green]")


async def _create_account(name: str, actor: Actor) -> dict[str, object]:
    db = _database()
    try:
        async with db.session(write=True) as session:
            account, clear = await auth_service.create_account(session, name, actor)
            await session.commit()
        return {"account": {"id": str(account.id), "name": account.name}, "api_key": clear}
    finally:
        await db.dispose()


@accounts_app.command("create")
def accounts_create(name: str) -> None:
    """Create an account; prints it and its admin key as JSON (the key is shown only here)."""
    print(json.dumps(asyncio.run(_create_account(name, Actor(user="operator")))))


async def _verify(account: uuid.UUID | None) -> bool:
    db = _database()
    ok = True
    try:
        async with db.session() as session:
            ids = [account] if account else list(await session.scalars(select(Account.id)))
            for account_id in ids:
                result = await verify_account(session, account_id)
                if result.ok:
                    err.print(f"[green]ok[/green] account {account_id}: {result.entries} entries")
                else:
                    ok = False
                    err.print(
                        f"[bold red]MISMATCH[/bold red] account {account_id}: entry "
                        f"seq={result.first_bad_seq} id={result.first_bad_id}: {result.problem}"
                    )
    finally:
        await db.dispose()
    return ok


@audit_app.command("verify")
def audit_verify(
    account: Annotated[str | None, typer.Option(help="Only this account id.")] = None,
) -> None:
    """Check every account's audit hash chain; exit 1 naming the first entry that does not match."""
    account_id = uuid.UUID(account) if account else None
    if not asyncio.run(_verify(account_id)):
        raise typer.Exit(1)


def _serve(host: str, port: int, with_worker: bool | None) -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    from revflow.app import create_app
    from revflow.db import is_sqlite_url

    if with_worker is None:
        with_worker = is_sqlite_url(settings.database_url)
    uvicorn.run(
        create_app(settings, with_worker=with_worker),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
    )


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    with_worker: Annotated[
        bool | None,
        typer.Option(
            "--with-worker/--no-worker",
            help="Run a worker in this process (default: on with SQLite, off with PostgreSQL).",
        ),
    ] = None,
) -> None:
    """Serve the API (and, on SQLite or with --with-worker, run the worker in-process)."""
    _serve(host, port, with_worker)


@app.command()
def worker() -> None:
    """Run a worker alone (PostgreSQL: start as many as you need). Stops cleanly on SIGTERM."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    asyncio.run(_run_worker(settings))


async def _run_worker(settings: Settings) -> None:
    from revflow.engine.worker import Worker

    db = Database(
        settings.database_url,
        pool_size=settings.db_pool_size,
        busy_timeout_ms=settings.sqlite_busy_timeout_ms,
    )
    worker = Worker(db, settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    try:
        await worker.run()
    finally:
        await db.dispose()


async def _demo_key() -> tuple[str, str]:
    """An admin key for the demo account (created on first run); a new key on every run."""
    db = _database()
    try:
        async with db.session(write=True) as session:
            account = await session.scalar(select(Account).where(Account.name == "demo"))
            if account is None:
                account, clear = await auth_service.create_account(session, "demo", SYSTEM)
            else:
                _key, clear = await auth_service.create_key(
                    session, account.id, user="admin", role="admin", actor=SYSTEM
                )
            await session.commit()
            return str(account.id), clear
    finally:
        await db.dispose()


@app.command()
def run(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
) -> None:
    """Migrate the database, print the URL and a demo admin key, and serve."""
    upgrade_database(get_settings().database_url)
    account_id, clear = asyncio.run(_demo_key())
    err.print(f"[bold]revflow[/bold] on http://{host}:{port}  (API docs: /docs)")
    err.print(f"demo account {account_id}")
    err.print(f"admin key: [bold]{clear}[/bold]")
    _serve(host, port, None)


async def _load_pair(
    workflow: str, first: int, second: int
) -> tuple[dict[str, Any], dict[str, Any]] | str:
    db = _database()
    try:
        async with db.session() as session:
            try:
                workflow_id = uuid.UUID(workflow)
            except ValueError:
                return f"no workflow {workflow}"
            rows = {
                v.number: v
                for v in await session.scalars(
                    select(Version).where(
                        Version.workflow_id == workflow_id, Version.number.in_([first, second])
                    )
                )
            }
            for number in (first, second):
                if number not in rows:
                    return f"workflow {workflow} has no version {number}"

            def side(v: Version) -> dict[str, Any]:
                return {"number": v.number, "semver": v.semver, "definition": v.definition}

            return side(rows[first]), side(rows[second])
    finally:
        await db.dispose()


@versions_app.command("diff")
def versions_diff(
    workflow: str,
    first: int,
    second: int,
    output: Annotated[
        str, typer.Option("--format", help="text (coloured in a terminal) or json")
    ] = "text",
) -> None:
    """Compare two versions of a workflow (SPEC §5), coloured in a terminal."""
    from revflow.diff import compare, render_rich

    loaded = asyncio.run(_load_pair(workflow, first, second))
    if isinstance(loaded, str):
        err.print(f"[red]{loaded}[/red]")
        raise typer.Exit(1)
    before, after = loaded
    comparison = compare(before["definition"], after["definition"])
    if output == "json":
        print(json.dumps(comparison.to_dict(), indent=2, default=str))
        return
    Console().print(
        render_rich(
            comparison,
            f"v{before['number']} ({before['semver']})",
            f"v{after['number']} ({after['semver']})",
        )
    )
