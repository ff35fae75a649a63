"""Compare two versions: the pure diff plus its impact on the live executions of ``from``."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from revflow.diff import Comparison, compare
from revflow.engine import store
from revflow.models import Version


async def compare_versions(
    session: AsyncSession, source: Version, target: Version
) -> tuple[Comparison, dict[str, Any]]:
    """The comparison and its SPEC §5 answer, with ``executions_affected`` per breaking change."""
    comparison = compare(source.definition, target.definition)
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
