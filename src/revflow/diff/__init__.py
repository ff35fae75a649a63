"""Pure comparison of workflow definitions (SPEC §5): no database, no web framework.

``compare(before, after)`` gives the changes, breaking changes, suggested semver bump and the
suggested mapping of removed steps; ``next_semver`` applies a bump; ``render_text`` and
``render_rich`` show a comparison to people.
"""

from revflow.diff.compare import (
    compare,
    diff_fields,
    effective_start,
    json_equal,
    suggested_bump,
    wait_kind,
)
from revflow.diff.model import (
    Breaking,
    Bump,
    Change,
    Comparison,
    Entity,
    FieldChange,
    Kind,
    Summary,
)
from revflow.diff.render import render_rich, render_text
from revflow.diff.semver import FIRST_SEMVER, next_semver

__all__ = [
    "FIRST_SEMVER",
    "Breaking",
    "Bump",
    "Change",
    "Comparison",
    "Entity",
    "FieldChange",
    "Kind",
    "Summary",
    "compare",
    "diff_fields",
    "effective_start",
    "json_equal",
    "next_semver",
    "render_rich",
    "render_text",
    "suggested_bump",
    "wait_kind",
]
