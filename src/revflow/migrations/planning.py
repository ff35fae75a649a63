"""Migration planning (pure): which step of the target version each step's executions go to.

A plan is made per step of the source version, not per execution, so that the batch runner
can move thousands of executions with a handful of set-based statements.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any, Literal

from revflow.definition import Definition, Step, WaitStep, wait_kind

WaitPolicy = Literal["keep", "recompute", "restart"]
# What happens to the wake time of an execution WAITING on the step when it moves:
#   keep      — same wake_at (and still waiting)
#   now       — becomes due at once (active): the target is not a wait of the same kind
#   recompute — the wait's start + the new duration
#   restart   — now + the new duration
#   until     — the new ``until`` of the target wait
WakeRule = Literal["keep", "now", "recompute", "restart", "until"]


@dataclass(frozen=True)
class StepPlan:
    step: str
    target: str | None
    reason: str | None
    wake: WakeRule = "keep"
    seconds: float | None = None
    until: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The plan as stored in ``Migration.plan`` (one entry per source step)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepPlan:
        """The plan back from what :meth:`to_dict` stored."""
        return cls(**data)


class MappingError(ValueError):
    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("invalid mapping")
        self.errors = errors


def check_mapping(source: Definition, target: Definition, mapping: dict[str, str]) -> None:
    """Mapping keys must be steps of the source, values steps of the target (else 422)."""
    source_steps = source.step_map()
    target_steps = target.step_map()
    errors = []
    for old, new in mapping.items():
        pointer = "/mapping/" + old.replace("~", "~0").replace("/", "~1")
        if old not in source_steps:
            errors.append({"pointer": pointer, "message": f"{old!r} is not a step of from_version"})
        if new not in target_steps:
            errors.append({"pointer": pointer, "message": f"{new!r} is not a step of to_version"})
    if errors:
        raise MappingError(errors)


def _wake(
    source: Step, target: Step, policy: WaitPolicy
) -> tuple[WakeRule, float | None, str | None]:
    if not isinstance(source, WaitStep):
        return "keep", None, None  # an execution is only ever waiting on a wait step
    if not isinstance(target, WaitStep) or wait_kind(target) != wait_kind(source):
        return "now", None, None
    kind = wait_kind(target)
    if kind == "duration" and target.duration != source.duration and policy != "keep":
        assert target.duration is not None
        return policy, target.duration.total_seconds(), None
    if kind == "until" and target.until != source.until and policy != "keep":
        assert target.until is not None
        return "until", None, target.until.astimezone(dt.UTC).isoformat()
    if kind == "event" and target.event != source.event:
        return "now", None, None
    return "keep", None, None


def plan_steps(
    source: Definition, target: Definition, mapping: dict[str, str], policy: WaitPolicy = "keep"
) -> dict[str, StepPlan]:
    """The plan for every step of ``source``."""
    target_steps = target.step_map()
    plans: dict[str, StepPlan] = {}
    for step in source.steps:
        explicit = mapping.get(step.id)
        goal = target_steps.get(explicit or step.id)
        if goal is None:
            plans[step.id] = StepPlan(step.id, None, "step_removed")
            continue
        if explicit is None and goal.type != step.type:
            plans[step.id] = StepPlan(step.id, None, "type_changed")
            continue
        if (
            explicit is None
            and isinstance(step, WaitStep)
            and isinstance(goal, WaitStep)
            and (wait_kind(step) != wait_kind(goal) or step.event != goal.event)
        ):
            plans[step.id] = StepPlan(step.id, None, "wait_changed")
            continue
        wake, seconds, until = _wake(step, goal, policy)
        plans[step.id] = StepPlan(step.id, goal.id, None, wake, seconds, until)
    return plans


def report(plans: dict[str, StepPlan], counts: dict[str, int]) -> dict[str, Any]:
    """The dry-run report (SPEC §4 "Shapes"): one group per current step."""
    groups = []
    movable = 0
    for step, count in sorted(counts.items()):
        plan = plans.get(step)
        target = plan.target if plan else None
        reason = plan.reason if plan else "step_unknown"
        if target is not None:
            movable += count
        groups.append({"step": step, "count": count, "target": target, "reason": reason})
    total = sum(counts.values())
    return {"total": total, "movable": movable, "unmovable": total - movable, "groups": groups}


def revert_report(groups: list[tuple[str, str | None, str | None, int]]) -> dict[str, Any]:
    """A revert's report, in the dry-run shape: the executions a migration moved, by current
    step, each going back to the step it came from unless it moved on since."""
    out = []
    movable = 0
    for step, origin, reason, count in sorted(groups, key=lambda g: (g[0], g[1] or "", g[2] or "")):
        target = origin if reason is None else None
        if target is not None:
            movable += count
        out.append({"step": step, "count": count, "target": target, "reason": reason})
    total = sum(g[3] for g in groups)
    return {"total": total, "movable": movable, "unmovable": total - movable, "groups": out}
