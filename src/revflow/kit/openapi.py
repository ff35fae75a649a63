"""OpenAPI descriptions of the problem documents a route answers (RFC 9457)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ProblemDocument(BaseModel):
    """An error answer: ``application/problem+json``."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(description="urn:revflow:problem:<code>")
    title: str
    status: int
    detail: str
    code: str
    errors: list[dict[str, Any]] | None = Field(
        default=None,
        description="Validation problems: {pointer (JSON Pointer), message, parameter?, in?}",
    )


_DESCRIPTIONS = {
    400: "The body is not valid JSON",
    401: "Missing or invalid API key",
    403: "The key's role does not allow this",
    404: "No such object in the caller's account",
    409: "The object's state does not allow this",
    412: "If-Match does not match",
    413: "The body is too large",
    422: "The request is not valid (errors name the JSON Pointer of each problem)",
    503: "The database is busy or unreachable",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route that answers these problem statuses."""
    schema = ProblemDocument.model_json_schema()
    return {
        status: {
            "description": _DESCRIPTIONS.get(status, "A problem"),
            "content": {"application/problem+json": {"schema": schema}},
        }
        for status in statuses
    }
