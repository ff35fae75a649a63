"""The OpenAPI document describes every route's parameters, bodies and answers (SPEC §4)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from revflow.app import create_app
from revflow.config import Settings
from tests.support.problems import PROBLEM_JSON, assert_problem

API = "/api/v1"
PROBLEM_REF = "#/components/schemas/Problem"


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The document of an app that never touches its database."""
    path: Path = tmp_path_factory.mktemp("openapi") / "unused.db"
    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{path}", log_json=False))
    return app.openapi()


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def header_names(operation: dict[str, Any]) -> set[str]:
    return {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A schema with its top-level ``$ref`` (or its non-null ``anyOf`` branch) followed."""
    if "anyOf" in schema:
        schema = next(s for s in schema["anyOf"] if s.get("type") != "null")
    ref = schema.get("$ref")
    if ref:
        return dict(document["components"]["schemas"][ref.rsplit("/", 1)[-1]])
    return schema


def body_schema(document: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any]:
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    return resolve(document, schema)


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"].startswith("3.1")


def test_every_problem_answer_is_a_problem_document(document: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in document["components"]["schemas"]
    assert "ValidationError" not in document["components"]["schemas"]
    problem = document["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "code"} <= set(problem["required"])
    assert problem["additionalProperties"] is True
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if path.startswith(API) and int(status) >= 400:
                schema = response["content"][PROBLEM_JSON]["schema"]
                assert schema == {"$ref": PROBLEM_REF}, f"{method} {path} {status}"
                assert set(response["content"]) == {PROBLEM_JSON}, f"{method} {path} {status}"


def test_every_route_with_an_input_documents_422_as_a_problem(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        if operation.get("parameters") or "requestBody" in operation:
            assert "422" in operation["responses"], f"{method} {path}"


def test_authenticated_routes_name_the_bearer_scheme_401_and_403(
    document: dict[str, Any],
) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["ApiKey"]["description"],
    }
    assert schemes["OperatorToken"]["scheme"] == "bearer"
    for method, path, operation in operations(document):
        if not path.startswith(API) or path == f"{API}/schema/definition":
            continue
        assert operation.get("security"), f"{method} {path} names no security scheme"
        assert "401" in operation["responses"], f"{method} {path}"
        assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]
        assert "503" in operation["responses"], f"{method} {path}"
    for method, path in [("POST", "/workflows"), ("DELETE", "/api-keys/{key_id}")]:
        assert "403" in document["paths"][API + path][method.lower()]["responses"]
    # A viewer key can read: reading never answers 403.
    assert "403" not in document["paths"][f"{API}/workflows"]["get"]["responses"]


def test_routes_with_ids_answer_404_and_bodies_400_and_413(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        if "{" in path:
            assert "404" in operation["responses"], f"{method} {path}"
        if "requestBody" in operation:
            assert {"400", "413"} <= set(operation["responses"]), f"{method} {path}"


def test_workflow_changes_take_if_match_and_an_idempotency_key(document: dict[str, Any]) -> None:
    changes = [
        ("patch", "/workflows/{workflow_id}"),
        ("post", "/workflows/{workflow_id}/versions"),
        ("post", "/workflows/{workflow_id}/versions/{number}/publish"),
        ("post", "/workflows/{workflow_id}/versions/{number}/rollback"),
        ("post", "/workflows/{workflow_id}/versions/{number}/migrate"),
        ("put", "/workflows/{workflow_id}/versions/{number}/tags"),
        ("post", "/workflows/{workflow_id}/canary/promote"),
        ("post", "/workflows/{workflow_id}/canary/abort"),
        ("post", "/workflows/{workflow_id}/pause"),
        ("post", "/workflows/{workflow_id}/resume"),
        ("post", "/workflows/{workflow_id}/enrollments"),
    ]
    for method, path in changes:
        operation = document["paths"][API + path][method]
        assert {"If-Match", "Idempotency-Key"} <= header_names(operation), f"{method} {path}"
        assert "412" in operation["responses"], f"{method} {path}"
        assert "etag_mismatch" in operation["responses"]["412"]["description"]
    creating = [("post", "/workflows"), ("post", "/contacts"), ("post", "/events")]
    for method, path in creating:
        operation = document["paths"][API + path][method]
        assert "Idempotency-Key" in header_names(operation), f"{method} {path}"
        assert "If-Match" not in header_names(operation), f"{method} {path}"
    # Reads take neither.
    read = document["paths"][f"{API}/workflows/{{workflow_id}}"]["get"]
    assert not {"If-Match", "Idempotency-Key"} & header_names(read)


def test_409_answers_name_their_codes(document: dict[str, Any]) -> None:
    expected = {
        ("post", "/workflows/{workflow_id}/versions"): {
            "stale_base",
            "no_changes",
            "version_limit",
        },
        ("post", "/workflows/{workflow_id}/versions/{number}/publish"): {
            "use_rollback",
            "canary_active",
        },
        ("post", "/workflows/{workflow_id}/versions/{number}/rollback"): {
            "never_published",
            "migration_running",
        },
        ("post", "/workflows/{workflow_id}/versions/{number}/migrate"): {"migration_running"},
        ("post", "/workflows/{workflow_id}/enrollments"): {"not_published", "workflow_paused"},
        ("put", "/workflows/{workflow_id}/draft"): {"stale_draft"},
        ("post", "/executions/{execution_id}/cancel"): {"execution_finished"},
    }
    for (method, path), codes in expected.items():
        description = document["paths"][API + path][method]["responses"]["409"]["description"]
        assert all(f"`{code}`" in description for code in codes), f"{method} {path}"


def test_the_rollback_body_documents_migrate(document: dict[str, Any]) -> None:
    operation = document["paths"][f"{API}/workflows/{{workflow_id}}/versions/{{number}}/rollback"]
    schema = body_schema(document, operation["post"])
    assert schema["required"] == ["reason"]
    migrate = resolve(document, schema["properties"]["migrate"])
    assert {"strategy", "mapping", "batch_size", "wait_policy"} <= set(migrate["properties"])


async def test_401_answers_carry_www_authenticate(client: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer rf_unknown"}, {"Authorization": "Basic x"}):
        response = await client.get(f"{API}/workflows", headers=headers)
        assert_problem(response, 401, "unauthorized", str(headers))
        assert response.headers["www-authenticate"] == "Bearer"
    operator = await client.post(f"{API}/accounts", json={"name": "x"})
    assert_problem(operator, 401, "unauthorized", "no operator token")
    assert operator.headers["www-authenticate"] == "Bearer"
