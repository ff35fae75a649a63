"""A client *generated* from ``/openapi.json`` by openapi-python-client builds and can create a
workflow and a version: the document is good enough for other people's tools."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from revflow.app import create_app
from revflow.config import Settings
from revflow.db import Database
from tests.support.tenants import Tenant
from tests.support.workflows import simple_definition

PACKAGE = "revflow_generated_client"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The package generated from the application's OpenAPI document, importable."""
    folder = tmp_path_factory.mktemp("generated")
    document = folder / "openapi.json"
    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{folder}/unused.db"))
    document.write_text(json.dumps(app.openapi()))
    config = folder / "config.json"
    config.write_text(json.dumps({"package_name_override": PACKAGE, "post_hooks": []}))
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("openapi-python-client")),
            "generate",
            "--path",
            str(document),
            "--config",
            str(config),
            "--meta",
            "none",
            "--output-path",
            str(folder / PACKAGE),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Warnings mean that parts of the document could not be turned into code.
    assert "Warning" not in result.stdout.replace("Warning(s) encountered", ""), result.stdout
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder))
        for name in [m for m in sys.modules if m.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def operation(package: ModuleType, method: str, url: str) -> ModuleType:
    """The generated module of the operation ``method url``, whatever its operationId."""
    root = Path(package.__file__ or "").parent / "api"
    needle = f'"method": "{method}",\n        "url": "{url}"'
    for path in sorted(root.rglob("*.py")):
        if needle in path.read_text():
            name = ".".join(path.relative_to(root.parent).with_suffix("").parts)
            return importlib.import_module(f"{package.__name__}.{name}")
    raise AssertionError(f"no generated operation for {method.upper()} {url}")


def body_type(module: ModuleType) -> Any:
    return typing.get_type_hints(module.asyncio_detailed)["body"]


async def test_generated_client_creates_a_workflow_and_a_version(
    generated: ModuleType, settings: Settings, db: Database, tenant: Tenant
) -> None:
    transport = httpx.ASGITransport(app=create_app(settings, db))
    client = generated.AuthenticatedClient(
        base_url="http://revflow.test", token=tenant.key, httpx_args={"transport": transport}
    )
    create_workflow = operation(generated, "post", "/api/v1/workflows")
    create_version = operation(generated, "post", "/api/v1/workflows/{workflow_id}/versions")
    get_version = operation(generated, "get", "/api/v1/workflows/{workflow_id}/versions/{number}")
    async with client:
        made = await create_workflow.asyncio_detailed(
            client=client, body=body_type(create_workflow).from_dict({"name": "Generated"})
        )
        assert made.status_code == 201, made.content
        workflow = made.parsed
        assert workflow.name == "Generated" and workflow.current_version is None

        body = body_type(create_version).from_dict(
            {
                "definition": simple_definition(),
                "change_summary": "from a generated client",
                "base_version": None,
                "publish": True,
            }
        )
        version = await create_version.asyncio_detailed(str(workflow.id), client=client, body=body)
        assert version.status_code == 201, version.content
        assert (version.parsed.number, version.parsed.semver) == (1, "1.0.0")

        read = await get_version.asyncio_detailed(str(workflow.id), 1, client=client)
        assert read.status_code == 200, read.content
        assert read.parsed.definition.to_dict() == simple_definition()
