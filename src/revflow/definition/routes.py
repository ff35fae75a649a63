"""``GET /api/v1/schema/definition``: the definition's JSON Schema, for editors and tools."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from revflow.definition.schema import standalone_definition_schema

router = APIRouter(prefix="/api/v1", tags=["definitions"])


@router.get(
    "/schema/definition",
    responses={
        200: {
            "description": "A JSON Schema (2020-12) document; the same schema is the "
            "`Definition` component of this document.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def definition_schema() -> dict[str, Any]:
    """The JSON Schema of a workflow definition (no key needed)."""
    return standalone_definition_schema()
