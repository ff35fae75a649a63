"""Whole-document validation of a workflow definition (SPEC section 2, "Validation")."""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict, TypeVar

import orjson
import pydantic_core
from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from revflow.definition.canonical import canonical_json_and_copy, parsed_canonical_json
from revflow.definition.models import (
    PROBLEMS_ERROR_TYPE,
    STEP_ID_PATTERN,
    STEP_TYPES,
    TRIGGER_TYPES,
    Definition,
    Step,
)
from revflow.definition.placeholders import placeholder_problems, placeholders_all_valid

_V = TypeVar("_V")

DEFAULT_MAX_STEPS = 500
DEFAULT_MAX_DEFINITION_BYTES = 1_000_000
NESTED_TOO_DEEPLY = "the definition is nested too deeply"


class DefinitionProblem(TypedDict):
    """One problem (or warning) of a definition, located by an RFC 6901 JSON Pointer."""

    pointer: str
    message: str


class DefinitionInvalid(ValueError):
    """A definition failed validation; ``errors`` lists every problem found."""

    def __init__(self, errors: list[DefinitionProblem]) -> None:
        self.errors = errors
        first = f"{errors[0]['pointer'] or '/'}: {errors[0]['message']}" if errors else ""
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"invalid definition: {first}{more}")


@dataclass(frozen=True, slots=True)
class ValidatedDefinition:
    """A definition that passed validation, with what storing it as a version needs."""

    model: Definition
    definition: dict[str, Any]
    """The document as submitted: a fresh copy in plain JSON types, keys in canonical order
    (or, for a ``parsed`` one, the request's own value)."""
    canonical: bytes
    content_hash: str
    warnings: list[DefinitionProblem] = field(default_factory=list)
    step_keys: list[bytes] | None = None
    """Each step's JSON with sorted keys, in the steps' order (None when the steps have none:
    an integer beyond 64 bits)."""


# For each step type: the keys naming another step, the keys holding a text with placeholders,
# and the keys holding JSON whose strings, at any depth, are such texts.
_STEP_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "send_email": (("next",), ("subject", "body"), ()),
    "send_sms": (("next",), ("body",), ()),
    "add_tag": (("next",), (), ()),
    "remove_tag": (("next",), (), ()),
    "update_field": (("next",), (), ("value",)),
    "http_request": (("next",), ("url",), ("body", "headers")),
    "wait": (("next", "timeout_next"), (), ()),
    "condition": (("then", "else"), (), ()),
    "end": ((), (), ()),
}
_UNION_TAG_ERRORS = frozenset({"union_tag_invalid", "union_tag_not_found"})
_OBJECT_TYPE_ERRORS = frozenset({"model_attributes_type", "model_type", "dict_type"})


def validate_definition(
    raw: object,
    *,
    max_steps: int = DEFAULT_MAX_STEPS,
    max_definition_bytes: int = DEFAULT_MAX_DEFINITION_BYTES,
    parsed: bool = False,
) -> ValidatedDefinition:
    """Validate a definition document and return it with its canonical form and hash.

    Every problem is collected, each located by a JSON Pointer into ``raw``; if there is any,
    :class:`DefinitionInvalid` is raised with all of them. Unreachable steps are not errors:
    they come back in ``warnings``. A document over ``max_definition_bytes`` (measured on its
    canonical JSON) is refused with that single error, without looking further into it.

    ``parsed``: ``raw`` is a request's value just parsed from JSON, which nothing else holds
    or changes; it becomes the document as it is (keys in the order they came), without the
    copy that otherwise keeps later changes to ``raw`` from reaching the stored version.
    """
    try:
        return _validate(raw, max_steps, max_definition_bytes, parsed)
    except RecursionError:
        raise DefinitionInvalid([_problem("", NESTED_TOO_DEEPLY)]) from None


def _validate(
    raw: object, max_steps: int, max_definition_bytes: int, parsed: bool
) -> ValidatedDefinition:
    if not isinstance(raw, dict):
        raise DefinitionInvalid([_problem("", "a definition must be a JSON object")])
    # Each step's JSON with sorted keys: what the canonical form of the steps is made of, and
    # how known steps are found (``_definition_model``, ``_Graph``).
    keys = _step_keys(raw) if parsed else None
    fast = parsed_canonical_json(raw, keys) if parsed else None
    try:
        canonical, copy = (fast, raw) if fast is not None else canonical_json_and_copy(raw)
    except (TypeError, ValueError) as exc:
        raise DefinitionInvalid(
            [_problem("", f"a definition must contain only JSON values: {exc}")]
        ) from None
    if len(canonical) > max_definition_bytes:
        raise DefinitionInvalid(
            [
                _problem(
                    "",
                    f"the definition is {len(canonical)} bytes; "
                    f"at most {max_definition_bytes} are allowed",
                )
            ]
        )
    # A fresh copy made of plain JSON types only (tuples become lists), so that later changes
    # to `raw` cannot reach the stored version; its keys come in canonical order. (A parsed
    # request's value is its own copy.)
    document: dict[str, Any]
    if copy is not None:
        document = copy
    else:
        try:
            document = pydantic_core.from_json(canonical)
        except ValueError:
            # The faster parser refuses deep nesting; the standard one goes as deep as the
            # encoder.
            document = json.loads(canonical)

    problems: list[DefinitionProblem] = []
    model: Definition | None = None
    if fast is None:
        keys = _step_keys(document)  # of the copy the standard encoder's form was read into
    try:
        model = _definition_model(document, keys)
    except ValidationError as exc:
        problems.extend(_schema_problems(exc.errors(include_url=False)))
    # Document-wide rules read the document itself, not the model, so that they are reported
    # even when some steps failed the schema.
    graph = _Graph(document, keys)
    problems.extend(graph.check(max_steps))
    if problems or model is None:
        raise DefinitionInvalid(_sorted_unique(problems))
    return ValidatedDefinition(
        model=model,
        definition=document,
        canonical=canonical,
        content_hash=hashlib.sha256(canonical).hexdigest(),
        warnings=graph.unreachable_steps(),
        step_keys=keys,
    )


STEPS_KEPT = 4096


class _Kept(OrderedDict[bytes, _V]):
    """What this process worked out of the steps it has seen, by their JSON with sorted keys,
    oldest first: a step's model and what the document-wide rules read of it are functions of
    its own JSON alone (the rules across steps work on indexes), and both are immutable, so
    one serves every document holding that step. An auto-save or a new version changes a step
    or two of many; working out the others again was most of a definition's check."""

    def keep(self, key: bytes, value: _V) -> _V:
        self[key] = value
        if len(self) > STEPS_KEPT:
            self.popitem(last=False)
        return value


_STEP: TypeAdapter[Step] = TypeAdapter(Step)
_step_models: _Kept[Step] = _Kept()


def _step_keys(document: dict[str, Any]) -> list[bytes] | None:
    """Each step's JSON with sorted keys, or None when the steps are not a non-empty list of
    objects that all have one (an integer beyond 64 bits has none here)."""
    steps = document.get("steps")
    if type(steps) is not list or not steps:
        return None
    keys = []
    for step in steps:
        if type(step) is not dict:
            return None
        try:
            keys.append(orjson.dumps(step, option=orjson.OPT_SORT_KEYS))
        except TypeError:
            return None
    return keys


def _definition_model(document: dict[str, Any], keys: list[bytes] | None) -> Definition:
    """``Definition.model_validate(document)``, each step's model taken from the steps seen
    before when it is known. A step that fails, a rest of the document that fails, or steps
    without ``keys``, go through the whole model's validation, so problems are reported
    exactly as it reports them."""
    if keys is None:
        return Definition.model_validate(document)
    models: list[Step] = []
    for key, step in zip(keys, document["steps"], strict=True):
        model = _step_models.get(key)
        if model is None:
            try:
                model = _step_models.keep(key, _STEP.validate_python(step))
            except ValidationError:
                return Definition.model_validate(document)
        models.append(model)
    # The rest of the document is validated beside one stand-in step, and the steps' models
    # put in its place as they are: handed to the whole model, each would be checked again
    # (pydantic runs a model's validators again on an instance of it).
    try:
        rest = Definition.model_validate({**document, "steps": _STAND_IN})
    except ValidationError:
        return Definition.model_validate(document)
    return rest.model_copy(update={"steps": tuple(models)})


_STAND_IN = ({"id": "stand-in", "type": "end"},)


def _problem(pointer: str, message: str) -> DefinitionProblem:
    return {"pointer": pointer, "message": message}


def _pointer(parts: Iterable[object]) -> str:
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def _schema_problems(errors: list[ErrorDetails]) -> list[DefinitionProblem]:
    problems: list[DefinitionProblem] = []
    for error in errors:
        kind = error["type"]
        if kind == "recursion_depth_exceeded":
            # Its location runs through pydantic's internal names for JSON values, not a path.
            problems.append(_problem("", NESTED_TOO_DEEPLY))
            continue
        loc = [part for part in error["loc"] if part != "[key]"]
        # Discriminated unions put the tag in the location (steps/3/wait/duration); remove it
        # so that the pointer is a path into the document, and keep it as `owner` to name the
        # step or trigger type in messages about its own keys.
        owner = ""
        if kind not in _UNION_TAG_ERRORS:
            if len(loc) >= 3 and loc[0] == "steps" and isinstance(loc[1], int):
                tag = loc.pop(2)
                owner = f" on a {tag} step" if len(loc) == 3 else ""
            elif len(loc) >= 2 and loc[0] == "trigger":
                tag = loc.pop(1)
                owner = f" on a {tag} trigger" if len(loc) == 2 else ""
        last = loc[-1] if loc else ""
        ctx = error.get("ctx", {})
        if kind == PROBLEMS_ERROR_TYPE:
            for key, message in ctx["problems"]:
                problems.append(_problem(_pointer([*loc, key] if key else loc), message))
            continue
        if kind == "too_short" and loc == ["steps"]:
            # Pydantic counts only the steps that validated; the document check counts them all.
            continue
        message = error["msg"]
        if kind in _UNION_TAG_ERRORS:
            what = "trigger" if loc == ["trigger"] else "step"
            expected = ", ".join(TRIGGER_TYPES if what == "trigger" else STEP_TYPES)
            loc.append("type")
            if kind == "union_tag_not_found":
                message = f"'type' is required; one of: {expected}"
            else:
                message = f"unknown {what} type '{ctx.get('tag')}'; expected one of: {expected}"
        elif kind == "extra_forbidden":
            message = f"unknown key '{last}'{owner}"
        elif kind == "missing":
            message = f"'{last}' is required{owner}"
        elif kind in _OBJECT_TYPE_ERRORS:
            message = "must be an object"
        elif kind == "tuple_type":
            message = "must be a list"
        elif kind == "string_too_short":
            message = "must not be empty"
        elif kind == "string_pattern_mismatch" and ctx.get("pattern") == STEP_ID_PATTERN:
            message = "an id must be 1 to 64 letters, digits, '_' or '-'"
        problems.append(_problem(_pointer(loc), message))
    return problems


@dataclass(frozen=True, slots=True)
class _StepFacts:
    """What the document-wide rules read of one step, from its JSON alone."""

    busy: bool  # it runs without a pause (any known type but a wait)
    references: tuple[tuple[str, str], ...]  # (key, the step id it names)
    # Its texts with a "{{", each with its path inside the step, when a placeholder among
    # them is not valid (none otherwise: nothing to report).
    texts: tuple[tuple[tuple[str | int, ...], str], ...]


_NO_FACTS = _StepFacts(busy=False, references=(), texts=())
_step_facts: _Kept[_StepFacts] = _Kept()


def _facts_of(step: Any) -> _StepFacts:
    step_type = step.get("type") if type(step) is dict else None
    # The type may be any JSON value, unhashable ones included.
    keys = _STEP_KEYS.get(step_type) if type(step_type) is str else None
    if keys is None:
        return _NO_FACTS
    reference_keys, text_keys, json_text_keys = keys
    references = []
    for key in reference_keys:
        target = step.get(key)
        if type(target) is str:
            references.append((key, target))
    texts: list[tuple[tuple[str | int, ...], str]] = []
    for key in text_keys:
        text = step.get(key)
        if type(text) is str and "{{" in text:
            texts.append(((key,), text))
    for key in json_text_keys:
        if key in step:
            _find_json_texts(step[key], [key], texts)
    if texts and placeholders_all_valid([text for _, text in texts]):
        texts = []
    return _StepFacts(step_type != "wait", tuple(references), tuple(texts))


class _Graph:
    """The steps of a raw document as a graph of indexes, for the document-wide rules.

    It reads the document defensively (any part may be malformed) so that references, ids,
    placeholders and loops are checked even where the schema failed.
    """

    def __init__(self, document: Mapping[str, Any], keys: list[bytes] | None = None) -> None:
        self.document = document
        raw_steps = document.get("steps")
        self.steps: list[Any] = raw_steps if isinstance(raw_steps, list) else []
        self.keys = keys  # the steps' JSON with sorted keys (``_step_keys``), when they have it
        raw_goals = document.get("goals")
        self.goals: list[Any] = raw_goals if isinstance(raw_goals, list) else []
        # edges[i]: indexes of the steps that step i names; busy[i]: step i runs without pause.
        self.edges: list[list[int]] = []
        self.busy: list[bool] = []
        self.roots: list[int] = []
        self.problems: list[DefinitionProblem] = []
        # The texts of the steps whose placeholders are not all valid, each with its path.
        self.texts: list[tuple[tuple[str | int, ...], str]] = []

    def check(self, max_steps: int) -> list[DefinitionProblem]:
        """Return the problems of the whole document."""
        steps, problems = self.steps, self.problems
        if isinstance(self.document.get("steps"), list) and not steps:
            problems.append(_problem("/steps", "a definition needs at least one step"))
        if len(steps) > max_steps:
            problems.append(
                _problem("/steps", f"at most {max_steps} steps are allowed; there are {len(steps)}")
            )
        index_of = self._index_steps()
        keys = self.keys
        edges, busy, texts = self.edges, self.busy, self.texts
        for i, step in enumerate(steps):
            facts = None if keys is None else _step_facts.get(keys[i])
            if facts is None:
                facts = _facts_of(step)
                if keys is not None:
                    _step_facts.keep(keys[i], facts)
            busy.append(facts.busy)
            targets: list[int] = []
            for key, target in facts.references:
                j = index_of.get(target)
                if j is None:
                    problems.append(_problem(f"/steps/{i}/{key}", f"unknown step '{target}'"))
                else:
                    targets.append(j)
            edges.append(targets)
            for path, text in facts.texts:
                texts.append((("steps", i, *path), text))
        for path, text in texts:
            for message in placeholder_problems(text):
                problems.append(_problem(_pointer(path), message))

        start = self.document.get("start")
        if isinstance(start, str):
            if start in index_of:
                self.roots.append(index_of[start])
            else:
                problems.append(_problem("/start", f"unknown step '{start}'"))
        elif steps:
            self.roots.append(0)
        self._check_goals(index_of)
        problems.extend(self._busy_loops())
        return problems

    def _index_steps(self) -> dict[str, int]:
        index_of: dict[str, int] = {}
        for i, step in enumerate(self.steps):
            step_id = step.get("id") if type(step) is dict else None
            if type(step_id) is str:
                first = index_of.setdefault(step_id, i)
                if first != i:
                    self.problems.append(
                        _problem(
                            f"/steps/{i}/id",
                            f"duplicate step id '{step_id}' (already used by /steps/{first})",
                        )
                    )
        return index_of

    def _check_goals(self, index_of: dict[str, int]) -> None:
        problems = self.problems
        goal_index: dict[str, int] = {}
        for i, goal in enumerate(self.goals):
            if type(goal) is not dict:
                continue
            goal_id = goal.get("id")
            if type(goal_id) is str:
                if goal_id in goal_index:
                    first = goal_index[goal_id]
                    problems.append(
                        _problem(
                            f"/goals/{i}/id",
                            f"duplicate goal id '{goal_id}' (already used by /goals/{first})",
                        )
                    )
                elif goal_id in index_of:
                    # Goals write history entries under their id, next to those of steps.
                    problems.append(
                        _problem(f"/goals/{i}/id", f"goal id '{goal_id}' is already a step id")
                    )
                goal_index.setdefault(goal_id, i)
            then = goal.get("then")
            if type(then) is str:
                if then in index_of:
                    self.roots.append(index_of[then])
                else:
                    problems.append(_problem(f"/goals/{i}/then", f"unknown step '{then}'"))

    def _busy_loops(self) -> list[DefinitionProblem]:
        """Report each cycle made only of steps that are not waits, at its first step."""
        edges, busy = self.edges, self.busy
        # A loop needs a step that leads back to itself or to an earlier step; most definitions
        # have no such busy step, and finding that out is cheaper than any search.
        if not any(j <= i for i, out in enumerate(edges) if busy[i] for j in out if busy[j]):
            return []
        # Peel off, repeatedly, the busy steps that lead to no other busy step; what remains
        # is on a busy cycle or leads into one. Most definitions peel away entirely, which is
        # cheaper than finding components.
        pending = [0] * len(edges)
        callers: list[list[int]] = [[] for _ in edges]
        peelable: list[int] = []
        for i, targets in enumerate(edges):
            if not busy[i]:
                continue
            for j in targets:
                if busy[j]:
                    pending[i] += 1
                    callers[j].append(i)
            if pending[i] == 0:
                peelable.append(i)
        while peelable:
            for i in callers[peelable.pop()]:
                pending[i] -= 1
                if pending[i] == 0:
                    peelable.append(i)
        left = {i for i, count in enumerate(pending) if count}
        if not left:
            return []
        sub_edges = {i: [j for j in edges[i] if j in left] for i in sorted(left)}
        problems: list[DefinitionProblem] = []
        for component in _strongly_connected(sub_edges):
            first = min(component)
            if len(component) == 1 and first not in sub_edges[first]:
                continue
            path = _cycle_through(first, set(component), sub_edges)
            names = " → ".join(str(self.steps[i]["id"]) for i in path)
            problems.append(
                _problem(
                    f"/steps/{first}",
                    f"the steps {names} form a loop without a wait step; add a wait to the loop",
                )
            )
        return problems

    def unreachable_steps(self) -> list[DefinitionProblem]:
        """Warn about the steps that neither the start, any branch nor any goal leads to."""
        reached = [False] * len(self.edges)
        pending = list(self.roots)
        while pending:
            i = pending.pop()
            if not reached[i]:
                reached[i] = True
                pending.extend(self.edges[i])
        return [
            _problem(f"/steps/{i}", f"step '{self.steps[i]['id']}' is unreachable")
            for i, seen in enumerate(reached)
            if not seen
        ]


def _find_json_texts(
    value: object, path: list[str | int], texts: list[tuple[tuple[str | int, ...], str]]
) -> None:
    # `path` is a stack shared down the recursion: a path is kept only for texts with a "{{".
    # Strings inside a list or an object are looked at in place: most values are flat.
    if type(value) is str:
        if "{{" in value:
            texts.append((tuple(path), value))
        return
    if type(value) is list:
        items: Iterable[tuple[str | int, object]] = enumerate(value)
    elif type(value) is dict:
        items = value.items()
    else:
        return
    for key, item in items:
        if type(item) is str:
            if "{{" in item:
                texts.append(((*path, key), item))
        elif type(item) is list or type(item) is dict:
            path.append(key)
            _find_json_texts(item, path, texts)
            path.pop()


def _strongly_connected(edges: dict[int, list[int]]) -> list[list[int]]:
    """Tarjan's algorithm, iterative so that long chains cannot exhaust the Python stack."""
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    stack: list[int] = []
    on_stack: set[int] = set()
    components: list[list[int]] = []
    for root in edges:
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(edges[root]))]
        while work:
            node, successors = work[-1]
            descended = False
            for succ in successors:
                if succ not in edges:
                    continue
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(edges[succ])))
                    descended = True
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            if descended:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
    return components


def _cycle_through(start: int, members: set[int], edges: dict[int, list[int]]) -> list[int]:
    """Return a shortest cycle start → … → start inside one strongly connected component."""
    previous: dict[int, int] = {start: start}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for succ in edges[node]:
            if succ == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if succ in members and succ not in previous:
                previous[succ] = node
                queue.append(succ)
    return [start, start]  # unreachable for a real component; keeps the type total


def _sorted_unique(problems: list[DefinitionProblem]) -> list[DefinitionProblem]:
    """Order problems by their place in the document (list indexes numerically), once each."""
    seen: set[tuple[str, str]] = set()
    unique = []
    for problem in problems:
        key = (problem["pointer"], problem["message"])
        if key not in seen:
            seen.add(key)
            unique.append(problem)

    def position(problem: DefinitionProblem) -> list[tuple[int, int | str]]:
        return [
            (0, int(part)) if part.isascii() and part.isdigit() else (1, part)
            for part in problem["pointer"].split("/")[1:]
        ]

    return sorted(unique, key=position)
