"""Compare two workflow definitions: changes, breaking changes, bump and step mapping.

Pure functions over already-validated definition dicts (SPEC §2). Steps and goals are matched
by id; list order is irrelevant. Unchanged entities are recognised with one C-level ``==`` plus
a strict JSON check, and only the few that differ get a field-level walk, which is what makes
this much faster than diffing the two whole documents.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from revflow.diff.model import Breaking, Bump, Change, Comparison, Entity, FieldChange, Summary

# Keys that wire a step (or a goal) to other steps; a change to them is a "rewire".
WIRING_KEYS: tuple[str, ...] = ("next", "then", "else", "timeout_next")
# A wait step has exactly one of these; which one it has is the wait's kind.
WAIT_KINDS: tuple[str, ...] = ("duration", "until", "event")

_NUMBER_TYPES = (int, float)


def compare(before: Mapping[str, Any], after: Mapping[str, Any]) -> Comparison:
    """Compare two workflow definitions and return the SPEC §5 structured diff.

    Changes come in a fixed order: trigger, start, steps (added and modified in the order of
    ``after``, then removed in the order of ``before``), then goals in the same manner.
    Moving a step within the list, or omitting ``start`` where it equals the first step,
    is not a change. Raises ``ValueError`` when a step or goal lacks an id or ids repeat.
    """
    changes: list[Change] = []
    breaking: list[Breaking] = []

    trigger = _entity_change("trigger", None, before.get("trigger"), after.get("trigger"))
    if trigger is not None:
        changes.append(trigger)

    start = _start_change(before, after)
    if start is not None:
        changes.append(start)

    before_steps = _index(before.get("steps"), "step")
    after_steps = _index(after.get("steps"), "step")
    added_steps: list[tuple[str, Mapping[str, Any]]] = []
    removed_steps: list[tuple[str, Mapping[str, Any]]] = []
    steps_modified = 0
    for step_id, after_step in after_steps.items():
        before_step = before_steps.get(step_id)
        if before_step is None:
            added_steps.append((step_id, after_step))
            changes.append(Change("step", "added", step_id, None, after_step))
            continue
        if _same(before_step, after_step):
            # Most steps of a new version are untouched: settle them before any other call.
            continue
        change = _entity_change("step", step_id, before_step, after_step)
        if change is not None:
            steps_modified += 1
            changes.append(change)
            reason = _step_breaking_reason(before_step, after_step)
            if reason is not None:
                breaking.append(Breaking(step=step_id, goal=None, reason=reason))
    for step_id, before_step in before_steps.items():
        if step_id not in after_steps:
            removed_steps.append((step_id, before_step))
            changes.append(Change("step", "removed", step_id, before_step, None))
            breaking.append(Breaking(step=step_id, goal=None, reason="step removed"))

    before_goals = _index(before.get("goals"), "goal")
    after_goals = _index(after.get("goals"), "goal")
    goals_added = 0
    goals_changed = 0
    for goal_id, after_goal in after_goals.items():
        before_goal = before_goals.get(goal_id)
        if before_goal is None:
            goals_added += 1
            changes.append(Change("goal", "added", goal_id, None, after_goal))
            continue
        change = _entity_change("goal", goal_id, before_goal, after_goal)
        if change is not None:
            goals_changed += 1
            changes.append(change)
    for goal_id, before_goal in before_goals.items():
        if goal_id not in after_goals:
            goals_changed += 1
            changes.append(Change("goal", "removed", goal_id, before_goal, None))
            breaking.append(Breaking(step=None, goal=goal_id, reason="goal removed"))
    goals_changed += goals_added

    summary = Summary(
        steps_added=len(added_steps),
        steps_removed=len(removed_steps),
        steps_modified=steps_modified,
        goals_changed=goals_changed,
        trigger_changed=trigger is not None,
        start_changed=start is not None,
    )
    bump: Bump
    if breaking:
        bump = "major"
    elif added_steps or goals_added or summary.trigger_changed or summary.start_changed:
        bump = "minor"
    else:
        # Content-only edits, rewiring and goal modifications: nothing new, nothing gone.
        bump = "patch"
    # The wiring into each step is read only to pair removed steps with added ones.
    pairing = bool(removed_steps and added_steps)
    return Comparison(
        changes=changes,
        summary=summary,
        breaking=breaking,
        suggested_bump=bump,
        suggested_mapping=_suggest_mapping(
            removed_steps,
            added_steps,
            _predecessors(before_steps) if pairing else None,
            _predecessors(after_steps) if pairing else None,
        ),
    )


def suggested_bump(
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    *,
    step_keys: tuple[Sequence[bytes], Sequence[bytes]] | None = None,
) -> Bump:
    """``compare(before, after).suggested_bump``, without the changes themselves: what a new
    version's semver needs. A step equal in Python (``==``) is taken as unchanged: it could
    differ from its peer only by a ``true`` facing a ``1``, a modification, which never moves
    the bump beyond the patch every new version gets anyway.

    ``step_keys``: each definition's steps as JSON with sorted keys, in the steps' order (as
    the validation writes them). When every step id stands where it stood, only the steps
    whose JSON changed are compared: a new version most often changes one step of many."""
    steps_bump = _steps_bump(before, after, step_keys)
    if steps_bump == "major":
        return "major"
    before_goals = _index(before.get("goals"), "goal")
    after_goals = _index(after.get("goals"), "goal")
    if any(goal_id not in after_goals for goal_id in before_goals):
        return "major"  # a goal removed
    if (
        steps_bump == "minor"
        or any(goal_id not in before_goals for goal_id in after_goals)
        or _entity_change("trigger", None, before.get("trigger"), after.get("trigger"))
        or _start_change(before, after)
    ):
        return "minor"
    return "patch"


def _steps_bump(
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    step_keys: tuple[Sequence[bytes], Sequence[bytes]] | None,
) -> Bump | None:
    """What the steps alone make of the bump: ``major`` for a step removed or changed in a
    breaking way, ``minor`` for a step added, None for nothing beyond a patch."""
    in_place = None if step_keys is None else _changed_in_place(before, after, *step_keys)
    if in_place is not None:
        # The same ids in the same places: nothing added or removed.
        for edited_before, edited_after in in_place:
            if edited_before != edited_after and _step_breaking_reason(edited_before, edited_after):
                return "major"
        return None
    before_steps = _index(before.get("steps"), "step")
    after_steps = _index(after.get("steps"), "step")
    if any(step_id not in after_steps for step_id in before_steps):
        return "major"  # a step removed
    added = False
    for step_id, after_step in after_steps.items():
        before_step = before_steps.get(step_id)
        if before_step is None:
            added = True
        elif before_step != after_step and _step_breaking_reason(before_step, after_step):
            return "major"
    return "minor" if added else None


def _changed_in_place(
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    before_keys: Sequence[bytes],
    after_keys: Sequence[bytes],
) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]] | None:
    """The pairs of steps whose JSON (``*_keys``) differs, when both definitions hold the same
    step ids in the same places; None when they do not (or the keys are not of these steps)."""
    before_steps, after_steps = before.get("steps"), after.get("steps")
    if not (type(before_steps) is list and type(after_steps) is list):
        return None
    count = len(after_steps)
    if not len(before_steps) == len(before_keys) == len(after_keys) == count:
        return None
    changed = []
    for position in range(count):
        if before_keys[position] != after_keys[position]:
            before_step, after_step = before_steps[position], after_steps[position]
            step_id = after_step.get("id")
            if step_id is None or before_step.get("id") != step_id:
                return None
            changed.append((before_step, after_step))
    return changed


def diff_fields(before: Any, after: Any, path: str = "") -> list[FieldChange]:
    """Return the field-level differences between two JSON values as JSON Pointer paths.

    Objects are walked key by key (keys of ``after`` in their order, then keys only in
    ``before``); lists of equal length element by element; anything else, including lists
    whose length changed, is reported whole at its own path.
    """
    out: list[FieldChange] = []
    _diff_into(out, path, before, after)
    return out


def json_equal(a: Any, b: Any) -> bool:
    """Equality of two JSON values as JSON sees them.

    Unlike ``==``, ``true`` is not ``1`` and ``false`` is not ``0``; ``1`` and ``1.0`` are the
    same JSON number and so equal. Object key order is irrelevant, list order is not.
    """
    if a is b:
        return True
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, Mapping):
        if not isinstance(b, Mapping) or len(a) != len(b):
            return False
        return all(key in b and json_equal(value, b[key]) for key, value in a.items())
    if isinstance(a, list | tuple):
        if not isinstance(b, list | tuple) or len(a) != len(b):
            return False
        return all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, _NUMBER_TYPES):
        return isinstance(b, _NUMBER_TYPES) and a == b
    return type(a) is type(b) and bool(a == b)


def effective_start(definition: Mapping[str, Any]) -> str | None:
    """Return the step an execution starts on: ``start``, else the first step, else None."""
    start = definition.get("start")
    if start is not None:
        return str(start)
    steps = definition.get("steps") or []
    if steps:
        first = steps[0].get("id")
        return None if first is None else str(first)
    return None


def wait_kind(step: Mapping[str, Any]) -> str | None:
    """Return the kind of a wait step (``duration``, ``until`` or ``event``), None otherwise.

    A malformed wait with several kinds gets them joined with ``+`` so that any change of the
    set is still seen as a kind change.
    """
    if step.get("type") != "wait":
        return None
    kinds = [kind for kind in WAIT_KINDS if kind in step]
    return "+".join(kinds) if kinds else None


def _same(a: Any, b: Any) -> bool:
    # ``==`` runs in C and settles most cases; once it says equal, the only way JSON can
    # disagree is a bool facing a number (``true == 1`` in Python), which ``_bools_agree``
    # looks for without the full type checks of ``json_equal``.
    return a is b or (a == b and _bools_agree(a, b))


def _bools_agree(a: Any, b: Any) -> bool:
    """Given ``a == b``, whether no bool on one side stands where the other has a number."""
    kind = type(a)
    if kind is dict:
        # Strings are the bulk of a definition and equal strings need no further look.
        for key, value in a.items():
            if type(value) is not str and not _bools_agree(value, b[key]):
                return False
        return True
    if kind is list:
        for x, y in zip(a, b, strict=True):
            if type(x) is not str and not _bools_agree(x, y):
                return False
        return True
    if kind is str or a is None:
        return True
    if kind is bool or type(b) is bool:
        return kind is type(b)
    if isinstance(a, Mapping | list | tuple):
        return json_equal(a, b)
    return True


def _entity_change(entity: Entity, entity_id: str | None, before: Any, after: Any) -> Change | None:
    if before is None and after is None:
        return None
    if before is None:
        return Change(entity, "added", entity_id, None, after)
    if after is None:
        return Change(entity, "removed", entity_id, before, None)
    if _same(before, after):
        return None
    fields = diff_fields(before, after)
    if not fields:
        return None
    rewired = False
    if entity in ("step", "goal") and isinstance(before, Mapping) and isinstance(after, Mapping):
        rewired = any(not _same(before.get(k), after.get(k)) for k in WIRING_KEYS)
    return Change(entity, "modified", entity_id, before, after, fields, rewired)


def _start_change(before: Mapping[str, Any], after: Mapping[str, Any]) -> Change | None:
    start_before = effective_start(before)
    start_after = effective_start(after)
    if start_before == start_after:
        return None
    if start_before is None:
        return Change("start", "added", None, None, start_after)
    if start_after is None:
        return Change("start", "removed", None, start_before, None)
    # The whole entity is one string: its only field is the root pointer "".
    return Change(
        "start",
        "modified",
        None,
        start_before,
        start_after,
        [FieldChange("", start_before, start_after)],
    )


def _diff_into(out: list[FieldChange], path: str, before: Any, after: Any) -> None:
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        for key, value in after.items():
            key_path = f"{path}/{_escape(key)}"
            if key in before:
                _diff_into(out, key_path, before[key], value)
            else:
                out.append(FieldChange(key_path, None, value))
        for key, value in before.items():
            if key not in after:
                out.append(FieldChange(f"{path}/{_escape(key)}", value, None))
        return
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        for index, (item_before, item_after) in enumerate(zip(before, after, strict=True)):
            _diff_into(out, f"{path}/{index}", item_before, item_after)
        return
    if not _same(before, after):
        out.append(FieldChange(path, before, after))


def _escape(key: Any) -> str:
    # RFC 6901: "~" and "/" inside a reference token are escaped, "~" first.
    return str(key).replace("~", "~0").replace("/", "~1")


def _index(items: Sequence[Mapping[str, Any]] | None, what: str) -> dict[str, Mapping[str, Any]]:
    indexed: dict[str, Mapping[str, Any]] = {}
    for position, item in enumerate(items or []):
        item_id = item.get("id")
        if item_id is None:
            raise ValueError(f"{what} at index {position} has no id")
        if item_id in indexed:
            raise ValueError(f"duplicate {what} id {item_id!r}")
        indexed[item_id] = item
    return indexed


def _step_breaking_reason(before: Mapping[str, Any], after: Mapping[str, Any]) -> str | None:
    type_before, type_after = before.get("type"), after.get("type")
    if type_before != type_after:
        return f"type changed from {type_before} to {type_after}"
    kind_before, kind_after = wait_kind(before), wait_kind(after)
    if kind_before != kind_after:
        return f"wait kind changed from {kind_before} to {kind_after}"
    if kind_before == "event" and not _same(before.get("event"), after.get("event")):
        return (
            f"awaited event changed from {json.dumps(before.get('event'))} "
            f"to {json.dumps(after.get('event'))}"
        )
    return None


def _content_key(step: Mapping[str, Any], ignored: Iterable[str]) -> str:
    # A canonical string of the step without the ignored keys, so that candidates are found
    # by dictionary lookup instead of comparing every removed step with every added one.
    skip = set(ignored)
    content = {k: v for k, v in step.items() if k not in skip}
    return json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)


def _predecessors(steps: Mapping[str, Mapping[str, Any]]) -> dict[str, set[str]]:
    """For each step id, the ids of the steps whose wiring leads to it."""
    into: dict[str, set[str]] = {}
    for step_id, step in steps.items():
        for key in WIRING_KEYS:
            target = step.get(key)
            if isinstance(target, str):
                into.setdefault(target, set()).add(step_id)
    return into


def _suggest_mapping(
    removed: list[tuple[str, Mapping[str, Any]]],
    added: list[tuple[str, Mapping[str, Any]]],
    into_before: Mapping[str, set[str]] | None = None,
    into_after: Mapping[str, set[str]] | None = None,
) -> dict[str, str | None]:
    """Pair each removed step with the added step that is most likely the same step renamed.

    Four passes, each only over what earlier passes left, so a better match is never taken
    by a worse one: identical content apart from the id; same content apart from wiring, with
    wiring that agrees once renames are accounted for; same content apart from wiring; and
    last, a step of the same type at the same place in the graph — reached from the same
    steps, or leading to the same ones (a wait replaced by another wait). Each added step is
    used at most once; ties go to the first in ``after`` order. A pair always has the same
    type.
    """
    mapping: dict[str, str | None] = {step_id: None for step_id, _ in removed}
    if not removed or not added:
        return mapping
    free: dict[str, Mapping[str, Any]] = dict(added)
    loose_ignored = ("id", *WIRING_KEYS)
    exact_buckets: dict[str, list[str]] = {}
    loose_buckets: dict[str, list[str]] = {}
    for step_id, step in added:
        exact_buckets.setdefault(_content_key(step, ("id",)), []).append(step_id)
        loose_buckets.setdefault(_content_key(step, loose_ignored), []).append(step_id)
    loose_keys = {step_id: _content_key(step, loose_ignored) for step_id, step in removed}

    def take(removed_id: str, added_id: str) -> None:
        mapping[removed_id] = added_id
        del free[added_id]

    for step_id, step in removed:
        for candidate in exact_buckets.get(_content_key(step, ("id",)), []):
            if candidate in free:
                take(step_id, candidate)
                break

    removed_ids = set(mapping)

    def wiring_agrees(old: Mapping[str, Any], old_id: str, new: Mapping[str, Any]) -> bool:
        for key in WIRING_KEYS:
            ref_old, ref_new = old.get(key), new.get(key)
            if ref_old is None or ref_new is None:
                if ref_old is not ref_new:
                    return False
                continue
            if ref_old == old_id:
                ref_old = new.get("id")
            elif mapping.get(ref_old) is not None:
                ref_old = mapping[ref_old]
            elif ref_old in removed_ids and ref_new in free:
                # Both ends point at steps that were renamed but not paired yet.
                continue
            if ref_old != ref_new:
                return False
        return True

    for step_id, step in removed:
        if mapping[step_id] is not None:
            continue
        for candidate in loose_buckets.get(loose_keys[step_id], []):
            if candidate in free and wiring_agrees(step, step_id, free[candidate]):
                take(step_id, candidate)
                break

    for step_id, _ in removed:
        if mapping[step_id] is not None:
            continue
        for candidate in loose_buckets.get(loose_keys[step_id], []):
            if candidate in free:
                take(step_id, candidate)
                break

    def renamed(ids: set[str]) -> set[str]:
        return {mapping.get(i) or i for i in ids}

    def leads_to(step: Mapping[str, Any]) -> set[str]:
        return {str(step[k]) for k in WIRING_KEYS if isinstance(step.get(k), str)}

    for step_id, step in removed:
        if mapping[step_id] is not None:
            continue
        came_from = renamed((into_before or {}).get(step_id, set()))
        goes_to = renamed(leads_to(step))
        for candidate, new in list(free.items()):
            if new.get("type") != step.get("type"):
                continue
            same_entry = bool(came_from) and came_from == (into_after or {}).get(candidate, set())
            same_exit = bool(goes_to) and goes_to == leads_to(new)
            if same_entry or same_exit:
                take(step_id, candidate)
                break
    return mapping
