"""The ``revflow`` command as people run it: workflows as code (apply, diff, export),
``versions diff`` and ``migrations`` through the API of a real ``revflow serve``, and every
mistake answered in one line without a traceback."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from revflow.cli import app
from revflow.client import Client
from tests.support.databases import DatabaseFactory
from tests.support.processes import revflow_command
from tests.support.servers import RevflowServers


@dataclass
class Server:
    url: str
    key: str
    database_url: str

    def client(self) -> Client:
        return Client(self.url, self.key)


@pytest.fixture(scope="module")
def server(backend: str, database_factories: dict[str, DatabaseFactory]) -> Iterator[Server]:
    """A ``revflow serve`` of a database of this module's own, and an account's admin key."""
    database_url = database_factories[backend].create()
    created = subprocess.run(
        [*revflow_command(), "accounts", "create", "cli"],
        env={**os.environ, "REVFLOW_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        check=True,
    )
    key = json.loads(created.stdout)["api_key"]
    with RevflowServers(database_url, 1) as servers:
        yield Server(servers.urls[0], key, database_url)


def cli(server: Server, *args: str) -> Any:
    """Run a command in this process (CliRunner), against the server."""
    env = {"REVFLOW_URL": server.url, "REVFLOW_API_KEY": server.key, "COLUMNS": "200"}
    return CliRunner().invoke(app, list(args), env=env)


def command(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real ``revflow`` command in ``cwd``."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("REVFLOW_")} | (
        env or {}
    )
    return subprocess.run(
        [*revflow_command(), *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def held(subject: str, *, hold: bool = True) -> dict[str, Any]:
    """A manual workflow whose executions wait on ``hold`` (with or without a worker)."""
    steps: list[dict[str, Any]] = [
        {"id": "greet", "type": "send_email", "subject": subject, "body": "b"},
    ]
    if hold:
        steps.insert(0, {"id": "hold", "type": "wait", "duration": "3d", "next": "greet"})
    return {"trigger": {"type": "manual"}, "steps": steps}


def write_folder(folder: Path, prefix: str) -> dict[str, Path]:
    folder.mkdir()
    files = {
        "a": folder / "a.yaml",
        "b": folder / "b.json",
        "c": folder / "nested" / "c.yml",
    }
    files["c"].parent.mkdir()
    files["a"].write_text(
        yaml.safe_dump(
            {
                "name": f"{prefix} onboarding",
                "description": "welcome new leads",
                "definition": held("Welcome"),
                "change_summary": "first cut",
            },
            sort_keys=False,
        )
    )
    files["b"].write_text(json.dumps({"name": f"{prefix} billing", "definition": held("Bill")}))
    files["c"].write_text(
        yaml.safe_dump({"name": f"{prefix} churn", "definition": held("Miss you", hold=False)})
    )
    return files


def test_apply_twice_then_a_breaking_edit_then_export_round_trip(
    server: Server, tmp_path: Path, backend: str
) -> None:
    prefix = f"wac-{backend}"
    files = write_folder(tmp_path / "workflows", prefix)
    folder = str(tmp_path / "workflows")

    first = cli(server, "apply", "-f", folder, "--publish")
    assert first.exit_code == 0, first.output
    assert first.output.count("+++ ") == 3 and "(no version)" in first.output
    assert "created version 1 (1.0.0), published: version 1" in first.output

    with server.client() as api:
        names = {w.name: w for w in api.list_workflows(limit=200).items}
        onboarding = names[f"{prefix} onboarding"]
        assert onboarding.current_version == 1 and onboarding.description == "welcome new leads"
        assert api.get_version(onboarding.id, 1).change_summary == "first cut"

    again = cli(server, "apply", "-f", folder, "--publish")
    assert again.exit_code == 0, again.output
    assert again.output.count("no changes; suggested bump: patch") == 3
    assert again.output.count(": no changes") == 3
    with server.client() as api:
        assert all(
            api.get_workflow(w.id).version_count == 1
            for w in names.values()
            if w.name.startswith(prefix)
        )
        contacts = [api.create_contact(email=f"{backend}{i}@example.com").id for i in range(3)]
        assert api.enroll(onboarding.id, contacts).enrolled == 3

    # Removing the step the live executions wait on is a breaking change that reaches them.
    edited = yaml.safe_load(files["a"].read_text())
    edited["definition"] = held("Welcome")
    edited["definition"]["steps"] = edited["definition"]["steps"][1:]
    files["a"].write_text(yaml.safe_dump(edited, sort_keys=False))

    checked = cli(server, "diff", "-f", folder)
    assert checked.exit_code == 1, checked.output
    assert "  ! step hold: step removed (3 live executions)" in checked.output
    assert "breaking changes reach 3 live executions" in checked.output

    dry = cli(server, "apply", "-f", folder, "--dry-run")
    assert dry.exit_code == 0 and "step hold" in dry.output
    with server.client() as api:
        assert api.get_workflow(onboarding.id).version_count == 1

    applied = cli(server, "apply", "-f", str(files["a"]), "-m", "no more waiting")
    assert applied.exit_code == 0, applied.output
    assert "created version 2 (2.0.0)" in applied.output
    with server.client() as api:
        v2 = api.get_version(onboarding.id, 2)
        assert v2.change_summary == "no more waiting" and v2.status == "draft"
        stats = api.version_stats(onboarding.id, 1)
        assert stats.by_step == {"hold": 3}

    # Against the latest (a draft nobody runs) nothing breaking reaches anyone.
    assert cli(server, "diff", "-f", str(files["a"])).exit_code == 0
    against = cli(server, "diff", "-f", str(files["a"]), "--against", "1")
    assert against.exit_code == 1 and "(3 live executions)" in against.output

    exported = tmp_path / "exported.yaml"
    out = cli(server, "export", f"{prefix} onboarding", "-o", str(exported))
    assert out.exit_code == 0, out.output
    document = yaml.safe_load(exported.read_text())
    assert document["name"] == f"{prefix} onboarding"
    assert document["definition"] == edited["definition"]
    round_trip = cli(server, "apply", "-f", str(exported))
    assert round_trip.exit_code == 0 and ": no changes" in round_trip.output

    old = cli(server, "export", onboarding.id, "--version", "1")
    assert old.exit_code == 0 and yaml.safe_load(old.output)["definition"] == held("Welcome")


def test_versions_diff_and_migrations_through_the_api(
    server: Server, tmp_path: Path, backend: str
) -> None:
    name = f"diffs-{backend}"
    with server.client() as api:
        wf = api.create_workflow(name, definition=held("v1"), change_summary="v1")
        api.publish_version(wf.id, 1)
        contacts = [api.create_contact(email=f"diff{i}-{backend}@example.com").id for i in (1, 2)]
        api.enroll(wf.id, contacts)
        api.create_version(wf.id, held("v2", hold=False), "v2", base_version=1)

    text = cli(server, "versions", "diff", name, "1", "2")
    assert text.exit_code == 0, text.output
    assert "--- v1 (1.0.0)" in text.output and "+++ v2 (2.0.0)" in text.output
    assert "  ! step hold: step removed (2 live executions)" in text.output
    with server.client() as api:
        api_text = api.compare_versions_text(wf.id, 1, 2)
    assert text.output == api_text

    as_json = cli(server, "versions", "diff", wf.id, "1", "2", "--format", "json")
    assert as_json.exit_code == 0, as_json.output
    body = json.loads(as_json.stdout)
    assert body["breaking"][0]["executions_affected"] == 2 and body["from"]["number"] == 1

    started = cli(
        server,
        "migrations",
        "start",
        name,
        "2",
        "--from",
        "1",
        "--map",
        "hold=greet",
        "--strategy",
        "gradual",
        "--interval-seconds",
        "3600",
        "--batch-size",
        "1",
        "--allow-unreleased",
    )
    assert started.exit_code == 0, started.output
    migration = json.loads(started.stdout)["id"]
    listed = cli(server, "migrations", "list", name, "--json")
    assert listed.exit_code == 0 and migration in listed.output
    # One execution a batch, a batch an hour: it is still running when paused.
    paused = cli(server, "migrations", "pause", migration)
    assert paused.exit_code == 0, paused.output
    assert json.loads(paused.stdout)["status"] == "paused"
    cancelled = cli(server, "migrations", "cancel", migration)
    assert cancelled.exit_code == 0, cancelled.output
    assert json.loads(cancelled.stdout)["status"] == "cancelled"
    resumed = cli(server, "migrations", "resume", migration)
    assert resumed.exit_code == 1 and "migration_not_running" in str(resumed.exception)
    reverted = cli(server, "migrations", "revert", migration)
    # Without a worker (PostgreSQL here) the migration moved nothing, so there is nothing to revert.
    assert reverted.exit_code == 0 or "nothing_to_revert" in str(reverted.exception)

    # The real command: one line naming what is missing.
    missing = command(
        "versions",
        "diff",
        f"no such {backend}",
        "1",
        "2",
        cwd=tmp_path,
        env={"REVFLOW_URL": server.url, "REVFLOW_API_KEY": server.key},
    )
    assert missing.returncode == 1
    assert missing.stderr == f"error: not_found: no workflow is named 'no such {backend}'\n"
    no_version = command(
        "versions",
        "diff",
        name,
        "1",
        "9",
        cwd=tmp_path,
        env={"REVFLOW_URL": server.url, "REVFLOW_API_KEY": server.key},
    )
    assert no_version.returncode == 1 and "no version 9" in no_version.stderr
    assert len(no_version.stderr.splitlines()) == 1
    broken = command(
        "diff",
        "-f",
        str(tmp_path / "nowhere.yaml"),
        cwd=tmp_path,
        env={"REVFLOW_URL": server.url, "REVFLOW_API_KEY": server.key},
    )
    assert broken.returncode == 2 and "no such file or folder" in broken.stderr


def one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: ")
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_first_hour_mistakes_are_one_line(tmp_path: Path) -> None:
    one_line_error(
        command("migrations", "start", "Welcome", "2", "--from", "1", cwd=tmp_path),
        "no API key",
        "REVFLOW_API_KEY",
    )
    unreachable = {"REVFLOW_URL": "http://127.0.0.1:9", "REVFLOW_API_KEY": "rf_x"}
    one_line_error(
        command("versions", "diff", "Welcome", "1", "2", cwd=tmp_path, env=unreachable),
        "cannot reach revflow at http://127.0.0.1:9",
        "revflow serve",
    )
    one_line_error(command("audit", "verify", cwd=tmp_path), "no database at", "revflow db upgrade")
    one_line_error(command("archive", "--dry-run", cwd=tmp_path), "no database at")
    assert not (tmp_path / "revflow.db").exists(), "a read created a database"

    (tmp_path / "empty.db").touch()
    empty = {"REVFLOW_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"}
    one_line_error(
        command("accounts", "create", "x", cwd=tmp_path, env=empty),
        "is not migrated",
        "revflow db upgrade",
    )
    usage = command("apply", "-f", "x.yaml", "--publish", "--canary", "5", cwd=tmp_path)
    assert usage.returncode == 2 and "Traceback" not in usage.stderr


def test_help_describes_every_option() -> None:
    from typer.main import get_command

    root = get_command(app)

    def walk(cmd: Any, path: str) -> Iterator[tuple[str, Any]]:
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, f"{path} {name}")

    for path, cmd in walk(root, "revflow"):
        assert cmd.help, f"{path} has no help"
        assert "SPEC" not in (cmd.help or ""), path
        for param in cmd.params:
            if param.param_type_name == "option" and param.name not in ("help",):
                if param.name in ("install_completion", "show_completion"):
                    continue
                assert param.help, f"{path} {param.opts} has no help"
            if param.param_type_name == "argument":
                assert getattr(param, "help", None), f"{path} {param.name} has no help"
