"""The ``revflow`` command line (Typer).

Commands that act on workflows go through the API with :mod:`revflow.client` (``--url`` /
``REVFLOW_URL``, ``--key`` / ``REVFLOW_API_KEY``); the operator's commands (``db``, ``accounts``,
``audit``, ``archive``, ``prune``, ``serve``, ``worker``) use the database. Every error is one
line saying what to do, with exit code 1 (2 for a usage error).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from revflow.client import Client, errors
from revflow.client.api import DEFAULT_URL
from revflow.client.models import Migration, MigrationReport
from revflow.kit import collector

if TYPE_CHECKING:
    from revflow.apply import Applied, FileDiff, WorkflowFile
    from revflow.audit.service import Actor
    from revflow.config import Settings
    from revflow.db import Database

app = typer.Typer(
    help="revflow: workflow automation with safe, versioned change.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
accounts_app = typer.Typer(help="Accounts (tenants).", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(accounts_app, name="accounts")
app.add_typer(audit_app, name="audit")
versions_app = typer.Typer(
    help="Workflow versions, through the API (REVFLOW_URL, REVFLOW_API_KEY).", no_args_is_help=True
)
app.add_typer(versions_app, name="versions")
migrations_app = typer.Typer(
    help="Migrations, through the API (REVFLOW_URL, REVFLOW_API_KEY).", no_args_is_help=True
)
app.add_typer(migrations_app, name="migrations")

ApiUrl = Annotated[
    str, typer.Option("--url", envvar="REVFLOW_URL", help="The revflow server's URL.")
]
ApiKey = Annotated[
    str,
    typer.Option(
        "--key",
        envvar="REVFLOW_API_KEY",
        show_default=False,
        help="An API key (editor, or viewer for reads).",
    ),
]

err = Console(stderr=True)


class CliError(Exception):
    """An error the command reports in one line (exit code 1)."""


def _fail(message: str) -> NoReturn:
    raise CliError(message)


def _usage(message: str) -> NoReturn:
    _print_error(f"{message} (see --help)")
    raise typer.Exit(2)


def main() -> None:
    """The ``revflow`` command: every error one line on stderr, never a traceback."""
    try:
        app()
    except CliError as error:
        _print_error(str(error))
        sys.exit(1)
    except KeyboardInterrupt:
        _print_error("interrupted")
        sys.exit(130)


def _print_error(message: str) -> None:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)


# -- through the API --------------------------------------------------------------------


@contextlib.contextmanager
def _api(url: str, key: str) -> Iterator[Client]:
    """A client of the server; its errors become one line saying what to do."""
    if not key:
        _fail(
            "no API key: pass --key or set REVFLOW_API_KEY "
            "(`revflow accounts create NAME` or `revflow run` prints one)"
        )
    try:
        with Client(url, key) as client:
            yield client
    except errors.RevflowError as error:
        _fail(_explain(error, url))


def _explain(error: errors.RevflowError, url: str) -> str:
    match error:
        case errors.Unreachable():
            return (
                f"cannot reach revflow at {url}: start it with `revflow serve` "
                "or point --url / REVFLOW_URL at it"
            )
        case errors.Unauthorized():
            return (
                f"the server at {url} refused the API key: "
                "pass a valid one with --key or REVFLOW_API_KEY"
            )
        case errors.Forbidden():
            return f"{error.detail}: use a key with the editor role"
        case errors.ValidationError():
            where = "; ".join(
                f"{e.get('pointer') or '/'}: {e.get('message')}" for e in error.errors[:5]
            )
            return f"{error.detail}" if not where else f"{error.code}: {where}"
        case errors.StaleBase():
            return (
                f"{error.detail} (latest version {error.latest_version}): "
                "run it again to diff against it"
            )
        case _:
            return f"{error.code}: {error.detail}"


# -- the database ------------------------------------------------------------------------


def _database_url() -> str:
    from revflow.config import get_settings

    return get_settings().database_url


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _missing_sqlite_file(url: str) -> str | None:
    """The path of a SQLite database file that does not exist (connecting would create it)."""
    from sqlalchemy.engine import make_url

    path = make_url(url).database
    if path and path != ":memory:" and not Path(path).exists():
        return path
    return None


async def _open_database(url: str | None = None) -> Database:
    """The database of ``url`` (default: REVFLOW_DATABASE_URL), checked to exist and to be
    migrated; never creates one."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from revflow.config import get_settings
    from revflow.db import Database, is_sqlite_url
    from revflow.migrate import head_revision

    settings = get_settings()
    url = url or settings.database_url
    upgrade = "run `revflow db upgrade` (or set REVFLOW_DATABASE_URL to revflow's database)"
    missing = _missing_sqlite_file(url) if is_sqlite_url(url) else None
    if missing is not None:
        _fail(f"no database at {missing}: {upgrade}")
    db = Database(url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    try:
        async with db.session() as session:
            current = await session.scalar(text("SELECT version_num FROM alembic_version"))
    except (DBAPIError, OSError) as error:
        await db.dispose()
        if "alembic_version" in str(error):
            _fail(f"the database at {_shown(url)} is not migrated: {upgrade}")
        reason = str(getattr(error, "orig", error)).splitlines()[0]
        _fail(f"cannot open the database at {_shown(url)}: {reason}")
    head = head_revision()
    if current != head:
        await db.dispose()
        _fail(
            f"the database at {_shown(url)} is at revision {current}, not {head}: "
            "run `revflow db upgrade`"
        )
    return db


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[
        str, typer.Argument(help="The revision to migrate to (default: the latest).")
    ] = "head",
) -> None:
    """Create or migrate the database of REVFLOW_DATABASE_URL to the latest schema."""
    from sqlalchemy.exc import DBAPIError

    from revflow.migrate import upgrade as upgrade_database

    url = _database_url()
    try:
        upgrade_database(url, revision)
    except (DBAPIError, OSError) as error:
        reason = str(getattr(error, "orig", error)).splitlines()[0]
        _fail(f"cannot migrate the database at {_shown(url)}: {reason}")
    err.print(f"[green]database at {revision}[/green]: {_shown(url)}", soft_wrap=True)


async def _create_account(name: str, actor: Actor) -> dict[str, object]:
    from revflow.auth import service as auth_service
    from revflow.engine.clock import SystemClock

    db = await _open_database()
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
def accounts_create(
    name: Annotated[str, typer.Argument(help="The account's name.")],
) -> None:
    """Create an account; prints it and its admin key as JSON (the key is shown only here)."""
    from revflow.audit.service import Actor

    print(json.dumps(asyncio.run(_create_account(name, Actor(user="operator")))))


async def _verify(account: uuid.UUID | None) -> bool:
    from sqlalchemy import select

    from revflow.audit.service import verify_account
    from revflow.models import Account

    db = await _open_database()
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
                        f"seq={result.first_bad_seq} id={result.first_bad_id}: {result.problem}",
                        soft_wrap=True,
                    )
    finally:
        await db.dispose()
    return ok


@audit_app.command("verify")
def audit_verify(
    account: Annotated[
        str | None, typer.Option(help="Check only this account (its id); default: all.")
    ] = None,
) -> None:
    """Check every account's audit hash chain; exit 1 naming the first entry that does not match."""
    try:
        account_id = uuid.UUID(account) if account else None
    except ValueError:
        _usage(f"--account takes an account id, not {account!r}")
    if not asyncio.run(_verify(account_id)):
        raise typer.Exit(1)


def _serve(host: str, port: int, with_worker: bool | None) -> None:
    import uvicorn

    from revflow.app import create_app
    from revflow.config import get_settings
    from revflow.db import is_sqlite_url
    from revflow.logging import configure as configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    if with_worker is None:
        with_worker = is_sqlite_url(settings.database_url)
    application = create_app(settings, with_worker=with_worker)
    collector.settle()  # what is loaded by now lives as long as the process
    uvicorn.run(
        application,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
    )


Host = Annotated[str, typer.Option(help="Address to listen on.")]
Port = Annotated[int, typer.Option(help="Port to listen on.")]


@app.command()
def serve(
    host: Host = "127.0.0.1",
    port: Port = 8000,
    with_worker: Annotated[
        bool | None,
        typer.Option(
            "--with-worker/--no-worker",
            help="Run a worker in this process (default: on with SQLite, off with PostgreSQL).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the API (and, on SQLite or with --with-worker, run the worker in-process)."""
    asyncio.run(_check_database(serves_api=True))
    _serve(host, port, with_worker)


async def _check_database(*, serves_api: bool = False) -> None:
    """The database is there and migrated; an API process's login may also take the role its
    requests run as (PostgreSQL), or every authenticated request would fail."""
    from revflow.db import TENANT_ROLE, login_outside_tenant_role

    db = await _open_database()
    try:
        login = await login_outside_tenant_role(db) if serves_api else None
    finally:
        await db.dispose()
    if login is not None:
        _fail(
            f"the login {login} is not a member of {TENANT_ROLE}, which API requests run as: "
            f'an administrator runs GRANT {TENANT_ROLE} TO "{login}"'
        )


@app.command()
def worker() -> None:
    """Run a worker alone (PostgreSQL: as many as you need); stops cleanly on SIGTERM."""
    from revflow.config import get_settings
    from revflow.logging import configure as configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    asyncio.run(_check_database())
    asyncio.run(_run_worker(settings))


async def _run_worker(settings: Settings) -> None:
    from revflow.db import Database
    from revflow.worker import Worker

    db = Database(
        settings.database_url,
        pool_size=settings.db_pool_size,
        busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        connect_timeout_s=settings.db_connect_timeout_seconds,
        ping_idle_s=settings.db_ping_idle_seconds,
    )
    worker = Worker(db, settings)
    collector.settle()  # as in ``serve``
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    try:
        await worker.run()
    finally:
        await db.dispose()


async def _demo_key() -> tuple[str, str]:
    """An admin key for the demo account (created on first run); a new key on every run."""
    from sqlalchemy import select

    from revflow.audit.service import SYSTEM
    from revflow.auth import service as auth_service
    from revflow.engine.clock import SystemClock
    from revflow.models import Account

    db = await _open_database()
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
def run(host: Host = "127.0.0.1", port: Port = 8000) -> None:
    """Create or migrate the database, print the URL and a demo admin key, and serve."""
    db_upgrade("head")
    account_id, clear = asyncio.run(_demo_key())
    err.print(f"[bold]revflow[/bold] on http://{host}:{port}  (API docs: /docs)")
    err.print(f"web console: [bold]http://{host}:{port}/ui[/bold]  (sign in with the key below)")
    err.print(f"demo account {account_id}")
    err.print(f"admin key: [bold]{clear}[/bold]")
    _serve(host, port, None)


WorkflowArg = Annotated[str, typer.Argument(help="The workflow's name or id.")]


@versions_app.command("diff")
def versions_diff(
    workflow: WorkflowArg,
    first: Annotated[int, typer.Argument(help="The version to compare from.")],
    second: Annotated[int, typer.Argument(help="The version to compare to.")],
    url: ApiUrl = DEFAULT_URL,
    key: ApiKey = "",
    output: Annotated[
        str, typer.Option("--format", help="text (coloured in a terminal) or json.")
    ] = "text",
) -> None:
    """Compare two versions: changes, breaking changes and the live executions they reach."""
    with _api(url, key) as api:
        workflow_id = api.find_workflow(workflow).id
        comparison = api.compare_versions(workflow_id, first, second)
    if output == "json":
        print(comparison.model_dump_json(indent=2, by_alias=True))
        return
    from revflow.diff import Comparison, render_rich

    before, after = comparison.from_ or {}, comparison.to or {}
    Console(soft_wrap=True).print(
        render_rich(
            Comparison.from_dict(comparison.model_dump(by_alias=True)),
            f"v{before.get('number', first)} ({before.get('semver', '?')})",
            f"v{after.get('number', second)} ({after.get('semver', '?')})",
            affected=[b.executions_affected for b in comparison.breaking],
        ),
        end="",
    )


@migrations_app.command("start")
def migrations_start(
    workflow: WorkflowArg,
    to_version: Annotated[int, typer.Argument(help="The version to move executions onto.")],
    from_version: Annotated[int, typer.Option("--from", help="The version to move from.")],
    url: ApiUrl = DEFAULT_URL,
    key: ApiKey = "",
    strategy: Annotated[
        str, typer.Option(help="immediate (all batches now), gradual or manual.")
    ] = "immediate",
    mapping: Annotated[
        list[str] | None,
        typer.Option("--map", help="OLD=NEW: executions on step OLD go to step NEW; repeatable."),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Executions moved per batch.")] = 500,
    interval_seconds: Annotated[
        float, typer.Option(help="Gradual: seconds between batches.")
    ] = 60.0,
    wait_policy: Annotated[
        str,
        typer.Option(help="A changed wait's wake time: keep, recompute or restart."),
    ] = "keep",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only report what would move; change nothing.")
    ] = False,
    follow: Annotated[
        bool, typer.Option("--follow", help="Show its progress until it stops.")
    ] = False,
    allow_unreleased: Annotated[
        bool,
        typer.Option(
            "--allow-unreleased",
            help="Migrate onto a version that was never published or canaried.",
        ),
    ] = False,
) -> None:
    """Start a migration (or, with --dry-run, print its report)."""
    bad = [item for item in mapping or [] if "=" not in item]
    if bad:
        _usage(f"--map takes OLD=NEW, not {bad[0]!r}")
    pairs = dict(item.split("=", 1) for item in mapping or [])
    with _api(url, key) as api:
        workflow_id = api.find_workflow(workflow).id
        if dry_run:
            _print_report(
                api.plan_migration(
                    workflow_id,
                    to_version,
                    from_version=from_version,
                    strategy=strategy,  # type: ignore[arg-type]
                    mapping=pairs,
                )
            )
            return
        started = api.start_migration(
            workflow_id,
            to_version,
            from_version=from_version,
            strategy=strategy,  # type: ignore[arg-type]
            mapping=pairs,
            batch_size=batch_size,
            interval_seconds=interval_seconds,
            wait_policy=wait_policy,  # type: ignore[arg-type]
            allow_unreleased=allow_unreleased,
        )
        print(started.model_dump_json())
        if follow:
            _watch(api, started.id)


def _print_report(report: MigrationReport) -> None:
    table = Table(title=f"{report.movable} of {report.total} executions can move")
    for column in ("step", "count", "target", "reason"):
        table.add_column(column)
    for group in report.groups:
        table.add_row(group.step, str(group.count), group.target or "-", group.reason or "")
    Console().print(table)
    for warning in report.warnings:
        err.print(f"[yellow]warning:[/yellow] {warning.get('message')}", soft_wrap=True)


def _watch(api: Client, migration_id: str, poll: float = 0.5) -> Migration:
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        console=err,
    ) as progress:
        task = progress.add_task("migration", total=None, counts="")
        while True:
            m = api.get_migration(migration_id)
            progress.update(
                task,
                total=m.total or 1,
                completed=m.done,
                description=m.status,
                counts=f"migrated {m.migrated} · skipped {m.skipped} · failed {m.failed}",
            )
            if not m.running:
                break
            time.sleep(poll)
    if m.status_reason:
        err.print(m.status_reason, soft_wrap=True)
    return m


@migrations_app.command("watch")
def migrations_watch(
    migration_id: Annotated[str, typer.Argument(help="The migration's id.")],
    url: ApiUrl = DEFAULT_URL,
    key: ApiKey = "",
) -> None:
    """Follow a migration with a progress bar until it stops; exit 1 unless it completed."""
    with _api(url, key) as api:
        final = _watch(api, migration_id)
    if final.status != "completed":
        raise typer.Exit(1)


@migrations_app.command("list")
def migrations_list(
    workflow: WorkflowArg,
    url: ApiUrl = DEFAULT_URL,
    key: ApiKey = "",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List a workflow's migrations, newest first, with their progress."""
    with _api(url, key) as api:
        workflow_id = api.find_workflow(workflow).id
        items: list[Migration] = []
        cursor: str | None = None
        while True:
            page = api.list_migrations(workflow_id, limit=200, cursor=cursor)
            items.extend(page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
    if as_json:
        for item in items:
            print(item.model_dump_json())
        return
    table = Table(title=f"{len(items)} migration(s)")
    for column in ("id", "from", "to", "strategy", "status", "migrated", "skipped", "failed"):
        table.add_column(column)
    for m in items:
        table.add_row(
            m.id,
            str(m.from_version),
            str(m.to_version),
            m.strategy,
            m.status,
            f"{m.migrated}/{m.total}",
            str(m.skipped),
            str(m.failed),
        )
    Console().print(table)


def _migration_action(name: str, doc: str) -> None:
    def command(
        migration_id: Annotated[str, typer.Argument(help="The migration's id.")],
        url: ApiUrl = DEFAULT_URL,
        key: ApiKey = "",
    ) -> None:
        with _api(url, key) as api:
            migration = getattr(api, f"{name}_migration")(migration_id)
        print(migration.model_dump_json())
        err.print(f"migration {migration.id}: {migration.status}", soft_wrap=True)

    command.__doc__ = doc
    migrations_app.command(name)(command)


_migration_action("cancel", "Stop a migration for good after its current batch; what moved stays.")
_migration_action("pause", "Hold a migration after its current batch.")
_migration_action("resume", "Let a paused migration go on.")
_migration_action(
    "revert",
    "Move back the executions a migration moved that are still where it put them "
    "(a new migration, printed).",
)


# -- workflows as code ------------------------------------------------------------------


def _read_files(path: Path) -> list[WorkflowFile]:
    from revflow.apply import FileProblem, read_files

    try:
        return read_files(path)
    except FileProblem as problem:
        _fail(str(problem))
        raise  # unreachable: _fail exits


def _print_diff(diff: FileDiff) -> None:
    if diff.workflow is None:
        err.print(f"[bold]{diff.file.name}[/bold]: new workflow", soft_wrap=True)
    print(diff.text(), end="")


@app.command("apply")
def apply_command(
    path: Annotated[
        Path, typer.Option("-f", "--file", help="A workflow file, or a folder of them.")
    ],
    url: ApiUrl = DEFAULT_URL,
    key: ApiKey = "",
    publish: Annotated[
        bool, typer.Option("--publish", help="Publish what was applied (make it current).")
    ] = False,
    canary: Annotated[
        int | None,
        typer.Option(
            "--canary",
            min=1,
            max=99,
            help="Publish what was applied as a canary taking this percent of new enrollments.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the diffs; change nothing.")
    ] = False,
    message: Annotated[
        str | None,
        typer.Option("-m", "--message", help="The change summary of the versions created."),
    ] = None,
) -> None:
    """Make the server match workflow files (YAML or JSON).

    Each file's workflow is matched by name; its diff against the latest version is printed
    and a version is created only where the content changed.
    """
    from revflow.apply import apply_diff, diff_file

    if publish and canary is not None:
        _usage("--publish and --canary exclude each other")
    files = _read_files(path)
    with _api(url, key) as api:
        for file in files:
            diff = diff_file(api, file)
            _print_diff(diff)
            if dry_run:
                continue
            done = apply_diff(api, diff, summary=message, publish=publish, canary_percent=canary)
            _report_applied(file.name, done)


def _report_applied(name: str, done: Applied) -> None:
    parts = []
    if done.version is not None:
        parts.append(f"created version {done.version.number} ({done.version.semver})")
    if done.published is not None:
        verb = "canary" if done.workflow.canary else "published"
        parts.append(f"{verb}: version {done.published.number}")
    if done.described:
        parts.append("description updated")
    err.print(f"{name}: {', '.join(parts) or 'no changes'}", soft_wrap=True)


@app.command("diff")
def diff_command(
    path: Annotated[
        Path, typer.Option("-f", "--file", help="A workflow file, or a folder of them.")
    ],
    url: ApiUrl = DEFAULT_URL,
    key: ApiKey = "",
    against: Annotated[
        int | None,
        typer.Option("--against", help="Compare with this version (default: the latest)."),
    ] = None,
) -> None:
    """Diff workflow files against the server: a check for CI.

    Exit 0 when no breaking change reaches a live execution, 1 when one does, 2 on an error.
    """
    from revflow.apply import diff_file

    reached = 0
    try:
        files = _read_files(path)
        with _api(url, key) as api:
            for file in files:
                diff = diff_file(api, file, against)
                _print_diff(diff)
                reached += diff.live_breaking
    except CliError as error:
        _print_error(str(error))
        raise typer.Exit(2) from None
    if reached:
        err.print(
            f"breaking changes reach {reached} live execution{'s' if reached != 1 else ''}",
            soft_wrap=True,
        )
        raise typer.Exit(1)


@app.command("export")
def export_command(
    workflow: WorkflowArg,
    url: ApiUrl = DEFAULT_URL,
    key: ApiKey = "",
    version: Annotated[
        int | None, typer.Option("--version", help="This version (default: the latest).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write to this file (default: stdout).")
    ] = None,
) -> None:
    """Write a workflow's definition as YAML that `revflow apply` accepts unchanged."""
    from revflow.apply import export_document, to_yaml

    with _api(url, key) as api:
        found = api.find_workflow(workflow)
        chosen = (
            api.get_version(found.id, version)
            if version is not None
            else api.latest_version(found.id)
        )
    if chosen is None:
        _fail(f"workflow {found.name!r} has no version yet")
        return
    text = to_yaml(export_document(found, chosen))
    if output is None:
        print(text, end="")
    else:
        output.write_text(text, encoding="utf-8")
        err.print(f"wrote version {chosen.number} of {found.name!r} to {output}", soft_wrap=True)


async def _archive(dry_run: bool) -> list[Any]:
    from revflow.config import get_settings
    from revflow.engine.clock import SystemClock
    from revflow.workflows.lifecycle import archivable, archive

    settings = get_settings()
    db = await _open_database()
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
    """Archive old versions by the retention rule; with --dry-run, list them.

    The rule: REVFLOW_ARCHIVE_AFTER_DAYS and REVFLOW_KEEP_VERSIONS.
    """
    items = asyncio.run(_archive(dry_run))
    table = Table(title=f"{len(items)} version(s) {'would be ' if dry_run else ''}archived")
    for column in ("workflow", "version"):
        table.add_column(column)
    for item in items:
        table.add_row(str(item.workflow_id), str(item.number))
    Console().print(table)


async def _prune(url: str | None, dry_run: bool) -> tuple[dict[str, int], dict[str, int]]:
    """What a pruning run would remove, and (without ``dry_run``) what it removed, by kind."""
    from revflow.config import get_settings
    from revflow.engine.clock import SystemClock
    from revflow.retention.service import Run, prunable

    settings = get_settings()
    db = await _open_database(url)
    try:
        now = SystemClock().now()
        found = await prunable(db, settings, now)
        counts = {str(kind): count for kind, count in found.items()}
        removed = dict.fromkeys(counts, 0)
        if dry_run:
            return counts, removed
        with Progress(
            TextColumn("{task.description:<20}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
        ) as progress:
            tasks = {kind: progress.add_task(kind, total=total) for kind, total in counts.items()}
            async for batch in Run(db, settings, now).batches():
                removed[batch.kind] += batch.rows
                # Another run may remove rows meanwhile, or rows may age in: keep the bar true.
                total = max(counts[batch.kind], removed[batch.kind])
                progress.update(tasks[batch.kind], completed=removed[batch.kind], total=total)
            for kind, task in tasks.items():
                progress.update(task, total=removed[kind], completed=removed[kind])
        return counts, removed
    finally:
        await db.dispose()


@app.command("prune")
def prune_command(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count what would be removed.")
    ] = False,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            show_default=False,
            help="The database (default: REVFLOW_DATABASE_URL).",
        ),
    ] = None,
) -> None:
    """Remove what finished work left behind, past its retention, in batches.

    Finished executions' history and finished migrations' records after
    REVFLOW_HISTORY_RETENTION_DAYS; outbox messages and finished webhook deliveries after
    REVFLOW_MESSAGE_RETENTION_DAYS; idempotency records after REVFLOW_IDEMPOTENCY_TTL_HOURS.
    Live executions are never touched. Stopping it midway is safe: run it again.
    """
    counts, removed = asyncio.run(_prune(database_url, dry_run))
    title = "would be removed" if dry_run else "removed"
    table = Table(title=f"{sum(counts.values() if dry_run else removed.values())} row(s) {title}")
    table.add_column("kind")
    table.add_column(title, justify="right")
    for kind, count in counts.items():
        table.add_row(kind, str(count if dry_run else removed[kind]))
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
    bench.exit_on_sigterm()  # a stage ended early still stops its servers, drops its database
    results = [bench.run(db, quick=quick, console=err) for db in databases]
    if as_json:
        print(json.dumps(results[0] if len(results) == 1 else {"results": results}))
        return
    for result in results:
        Console().print(bench.table(result))
