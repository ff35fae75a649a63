"""The ``revflow`` command line (Typer)."""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import time
import uuid
from typing import Annotated, Any

import httpx
import typer
import uvicorn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import select

from revflow.audit.service import SYSTEM, Actor, verify_account
from revflow.auth import service as auth_service
from revflow.config import Settings, get_settings
from revflow.db import Database
from revflow.engine.clock import SystemClock
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
migrations_app = typer.Typer(
    help="Migrations, through the API (REVFLOW_URL, REVFLOW_API_KEY).", no_args_is_help=True
)
app.add_typer(migrations_app, name="migrations")

ApiUrl = Annotated[str, typer.Option("--url", envvar="REVFLOW_URL", help="The API's base URL.")]
ApiKey = Annotated[str, typer.Option("--key", envvar="REVFLOW_API_KEY", help="An editor key.")]

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
            account, clear = await auth_service.create_account(
                session, name, actor, SystemClock().now()
            )
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
    application = create_app(settings, with_worker=with_worker)
    # Everything loaded so far lives as long as the process: keep it out of the collector's
    # full passes, which otherwise pause requests for tens of milliseconds.
    gc.collect()
    gc.freeze()
    uvicorn.run(
        application,
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
    from revflow.worker import Worker

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
                account, clear = await auth_service.create_account(
                    session, "demo", SYSTEM, SystemClock().now()
                )
            else:
                _key, clear = await auth_service.create_key(
                    session,
                    account.id,
                    user="admin",
                    role="admin",
                    actor=SYSTEM,
                    now=SystemClock().now(),
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
    err.print(f"web console: [bold]http://{host}:{port}/ui[/bold]  (sign in with the key below)")
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


def _api(url: str, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=url.rstrip("/") + "/api/v1",
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def _fail_on_problem(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    if response.status_code >= 400:
        err.print(
            f"[bold red]{response.status_code} {body.get('code')}[/bold red]: {body.get('detail')}"
        )
        for error in body.get("errors", []):
            err.print(f"  {error.get('pointer')}: {error.get('message')}")
        raise typer.Exit(1)
    return body


@migrations_app.command("start")
def migrations_start(
    workflow: str,
    to_version: int,
    from_version: Annotated[int, typer.Option("--from", help="The version to move from.")],
    url: ApiUrl = "http://127.0.0.1:8000",
    key: ApiKey = "",
    strategy: Annotated[str, typer.Option(help="immediate, gradual or manual")] = "immediate",
    mapping: Annotated[
        list[str] | None, typer.Option("--map", help="OLD=NEW step mapping, repeatable")
    ] = None,
    batch_size: Annotated[int, typer.Option()] = 500,
    interval_seconds: Annotated[float, typer.Option()] = 60.0,
    wait_policy: Annotated[str, typer.Option(help="keep, recompute or restart")] = "keep",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only report.")] = False,
    follow: Annotated[bool, typer.Option("--follow", help="Watch it to the end.")] = False,
    allow_unreleased: Annotated[
        bool,
        typer.Option(
            "--allow-unreleased",
            help="Migrate onto a version that was never published or canaried.",
        ),
    ] = False,
) -> None:
    """Start a migration (or, with --dry-run, print its report)."""
    pairs = dict(item.split("=", 1) for item in mapping or [] if "=" in item)
    body = {
        "from_version": from_version,
        "strategy": strategy,
        "mapping": pairs,
        "batch_size": batch_size,
        "interval_seconds": interval_seconds,
        "wait_policy": wait_policy,
        "dry_run": dry_run,
        "allow_unreleased": allow_unreleased,
    }
    with _api(url, key) as client:
        answer = _fail_on_problem(
            client.post(f"/workflows/{workflow}/versions/{to_version}/migrate", json=body)
        )
    if dry_run:
        _print_report(answer)
        return
    print(json.dumps(answer))
    if follow:
        _watch(url, key, answer["id"])


def _print_report(report: dict[str, Any]) -> None:
    table = Table(title=f"{report['movable']} of {report['total']} executions can move")
    for column in ("step", "count", "target", "reason"):
        table.add_column(column)
    for group in report["groups"]:
        table.add_row(
            group["step"], str(group["count"]), group["target"] or "-", group["reason"] or ""
        )
    Console().print(table)
    for warning in report.get("warnings", []):
        err.print(f"[yellow]warning:[/yellow] {warning['message']}")


def _watch(url: str, key: str, migration_id: str, poll: float = 0.5) -> dict[str, Any]:
    with (
        _api(url, key) as client,
        Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            console=err,
        ) as progress,
    ):
        task = progress.add_task("migration", total=None, counts="")
        while True:
            m = _fail_on_problem(client.get(f"/migrations/{migration_id}"))
            done = m["migrated"] + m["skipped"] + m["failed"]
            progress.update(
                task,
                total=m["total"] or 1,
                completed=done,
                description=m["status"],
                counts=f"migrated {m['migrated']} · skipped {m['skipped']} · failed {m['failed']}",
            )
            if m["status"] not in ("pending", "in_progress"):
                break
            time.sleep(poll)
    if m.get("status_reason"):
        err.print(m["status_reason"])
    return m


@migrations_app.command("watch")
def migrations_watch(
    migration_id: str, url: ApiUrl = "http://127.0.0.1:8000", key: ApiKey = ""
) -> None:
    """Follow a migration with a progress bar until it stops; exit 1 unless it completed."""
    final = _watch(url, key, migration_id)
    if final["status"] != "completed":
        raise typer.Exit(1)


async def _archive(dry_run: bool) -> list[Any]:
    from revflow.workflows.lifecycle import archivable, archive

    settings = get_settings()
    db = _database()
    try:
        async with db.session(write=not dry_run) as session:
            now = SystemClock().now()
            if dry_run:
                return list(await archivable(session, settings, now))
            with Progress(
                TextColumn("archiving"), BarColumn(), TimeElapsedColumn(), console=err
            ) as progress:
                progress.add_task("archive", total=None)
                done = await archive(session, settings, now)
                await session.commit()
            return list(done)
    finally:
        await db.dispose()


@app.command("archive")
def archive_command(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would go.")] = False,
) -> None:
    """Archive old versions by the retention rule (REVFLOW_ARCHIVE_AFTER_DAYS,
    REVFLOW_KEEP_VERSIONS); with --dry-run, list them."""
    items = asyncio.run(_archive(dry_run))
    table = Table(title=f"{len(items)} version(s) {'would be ' if dry_run else ''}archived")
    for column in ("workflow", "version"):
        table.add_column(column)
    for item in items:
        table.add_row(str(item.workflow_id), str(item.number))
    Console().print(table)


@app.command("bench")
def bench_command(
    database: Annotated[str, typer.Option(help="sqlite, postgresql or both")] = "postgresql",
    quick: Annotated[
        bool, typer.Option("--quick", help="Smaller workloads (< 5 minutes).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print exactly one JSON object.")] = False,
) -> None:
    """Measure revflow against its goals, the original requirements and the baselines."""
    from revflow import bench

    if database not in ("sqlite", "postgresql", "both"):
        err.print("[red]--database is sqlite, postgresql or both[/red]")
        raise typer.Exit(2)
    databases = ["sqlite", "postgresql"] if database == "both" else [database]
    results = [bench.run(db, quick=quick, console=err) for db in databases]
    if as_json:
        print(json.dumps(results[0] if len(results) == 1 else {"results": results}))
        return
    for result in results:
        Console().print(bench.table(result))
