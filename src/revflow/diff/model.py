"""Result types of a comparison between two workflow definitions (SPEC §5)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Entity = Literal["trigger", "start", "step", "goal"]
Kind = Literal["added", "removed", "modified"]
Bump = Literal["major", "minor", "patch"]


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field-level difference inside a modified entity.

    ``path`` is a JSON Pointer relative to the entity (``/subject``, ``/if/value``; ``""`` for
    the entity itself, as for ``start``). A key present on one side only is reported with
    ``None`` on the other side.
    """

    path: str
    before: Any
    after: Any

    def to_dict(self) -> dict[str, Any]:
        """Return the SPEC §5 JSON shape ``{"path", "before", "after"}``."""
        return {"path": self.path, "before": self.before, "after": self.after}


@dataclass(frozen=True, slots=True)
class Change:
    """One changed thing: the trigger, ``start``, a step or a goal.

    ``before``/``after`` are the whole entity on each side (``None`` where it does not exist);
    they share objects with the compared definitions, so treat them as read-only.
    """

    entity: Entity
    kind: Kind
    id: str | None
    before: Any
    after: Any
    fields: list[FieldChange] = field(default_factory=list)
    rewired: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return the SPEC §5 JSON shape of a change entry."""
        return {
            "entity": self.entity,
            "kind": self.kind,
            "id": self.id,
            "before": self.before,
            "after": self.after,
            "fields": [f.to_dict() for f in self.fields],
            "rewired": self.rewired,
        }


@dataclass(frozen=True, slots=True)
class Breaking:
    """A change that in-flight executions of the ``before`` side cannot simply continue through.

    Exactly one of ``step`` and ``goal`` is set. The API layer adds ``executions_affected``.
    """

    step: str | None
    goal: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"step", "goal", "reason"}``."""
        return {"step": self.step, "goal": self.goal, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Summary:
    """Counts of changed steps and goals, and whether the trigger or ``start`` changed."""

    steps_added: int = 0
    steps_removed: int = 0
    steps_modified: int = 0
    goals_changed: int = 0
    trigger_changed: bool = False
    start_changed: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return the SPEC §5 ``summary`` object."""
        return {
            "steps_added": self.steps_added,
            "steps_removed": self.steps_removed,
            "steps_modified": self.steps_modified,
            "goals_changed": self.goals_changed,
            "trigger_changed": self.trigger_changed,
            "start_changed": self.start_changed,
        }


_SUMMARY_KEYS = (
    "steps_added",
    "steps_removed",
    "steps_modified",
    "goals_changed",
    "trigger_changed",
    "start_changed",
)


@dataclass(frozen=True, slots=True)
class Comparison:
    """The structured diff of two definitions (SPEC §5), see :func:`revflow.diff.compare`."""

    changes: list[Change]
    summary: Summary
    breaking: list[Breaking]
    suggested_bump: Bump
    suggested_mapping: dict[str, str | None]

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> Comparison:
        """Read back the JSON body of :meth:`to_dict` (as the API answers it; members the
        comparison does not hold, such as ``executions_affected``, are ignored)."""
        return cls(
            changes=[
                Change(
                    entity=c["entity"],
                    kind=c["kind"],
                    id=c.get("id"),
                    before=c.get("before"),
                    after=c.get("after"),
                    fields=[
                        FieldChange(f["path"], f.get("before"), f.get("after"))
                        for f in c.get("fields", [])
                    ],
                    rewired=bool(c.get("rewired", False)),
                )
                for c in body["changes"]
            ],
            summary=Summary(**{k: body["summary"][k] for k in _SUMMARY_KEYS}),
            breaking=[
                Breaking(step=b.get("step"), goal=b.get("goal"), reason=b["reason"])
                for b in body["breaking"]
            ],
            suggested_bump=body["suggested_bump"],
            suggested_mapping=dict(body.get("suggested_mapping") or {}),
        )

    @property
    def has_changes(self) -> bool:
        """True when the two definitions differ in anything the comparison looks at."""
        return bool(self.changes)

    def to_dict(self) -> dict[str, Any]:
        """Return the SPEC §5 JSON body (without ``executions_affected``, added by the API)."""
        return {
            "changes": [c.to_dict() for c in self.changes],
            "summary": self.summary.to_dict(),
            "breaking": [b.to_dict() for b in self.breaking],
            "breaking_count": len(self.breaking),
            "suggested_bump": self.suggested_bump,
            "suggested_mapping": dict(self.suggested_mapping),
        }
