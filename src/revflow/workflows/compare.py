"""Compare two versions: the pure diff plus its impact on the live executions of ``from``."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncSession

from revflow.diff import Comparison, compare
from revflow.engine import store
from revflow.models import Version
from revflow.workflows import repository as repo

# Versions never change, so the diff of two of them is computed (and their definitions read
# and decoded) once per process; bounded by clearing, like the engine's definition cache.
_COMPARISONS: dict[tuple[uuid.UUID, uuid.UUID], Comparison] = {}
_COMPARISONS_KEPT = 256


async def comparison_of(session: AsyncSession, source: Version, target: Version) -> Comparison:
    """The pure diff of two versions, which may have been loaded without their definitions."""
    key = (source.id, target.id)
    cached = _COMPARISONS.get(key)
    if cached is not None:
        return cached
    if "definition" in inspect(source).unloaded or "definition" in inspect(target).unloaded:
        stored = await repo.definitions(session, source.account_id, [source.id, target.id])
        before, after = stored[source.id], stored[target.id]
    else:
        before, after = source.definition, target.definition
    comparison = compare(before, after)
    if len(_COMPARISONS) >= _COMPARISONS_KEPT:
        _COMPARISONS.clear()
    _COMPARISONS[key] = comparison
    return comparison


async def compare_versions(
    session: AsyncSession, source: Version, target: Version
) -> tuple[Comparison, dict[str, Any]]:
    """The comparison and its SPEC §5 answer, with ``executions_affected`` per breaking change."""
    comparison = await comparison_of(session, source, target)
    answer = comparison.to_dict()
    by_step = await store.live_by_step(
        session, source.account_id, source.workflow_id, source.number
    )
    live_total = sum(by_step.values())
    for entry in answer["breaking"]:
        step = entry.get("step")
        entry["executions_affected"] = live_total if step is None else by_step.get(step, 0)
    answer["suggested_mapping"] = {
        step: target_step
        for step, target_step in comparison.suggested_mapping.items()
        if by_step.get(step, 0) > 0
    }
    answer["from"] = {"number": source.number, "semver": source.semver, "status": source.status}
    answer["to"] = {"number": target.number, "semver": target.semver, "status": target.status}
    answer["live_executions"] = live_total
    return comparison, answer
