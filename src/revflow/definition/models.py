"""The workflow definition as typed, immutable pydantic models (SPEC section 2).

The models check everything that can be checked one object at a time: types, unknown keys,
step and trigger kinds, durations, date-times, contact paths, and rules between keys of the
same object (one kind per wait, a value for a comparison, an event or a condition per goal).
Rules across the document — unique ids, references, cycles, placeholders, sizes — belong to
:func:`revflow.definition.validate_definition`, which is the only way to get a definition that
is known to be valid.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cached_property
from typing import Annotated, Any, Literal, Self, TypeAlias, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StrictInt,
    StringConstraints,
    model_validator,
)
from pydantic_core import PydanticCustomError

from revflow.definition.durations import MAX_DURATION, parse_datetime, parse_duration
from revflow.definition.placeholders import condition_field_problem, update_field_problem

STEP_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
"""Step and goal ids: the user's own stable keys, matched by diffs and migrations."""

# Model validators that find several problems in one object report them through one error of
# this type; `problems` in its context holds (key, message) pairs so that validation can point
# at each key instead of at the whole object.
PROBLEMS_ERROR_TYPE = "definition_problems"
VALUE_ERROR_TYPE = "definition_value"

STEP_TYPES = (
    "send_email",
    "send_sms",
    "add_tag",
    "remove_tag",
    "update_field",
    "http_request",
    "wait",
    "condition",
    "end",
)
TRIGGER_TYPES = ("manual", "contact_created", "tag_added", "field_changed", "event")

WaitKind: TypeAlias = Literal["duration", "until", "event"]
ConditionOp: TypeAlias = Literal[
    "eq", "ne", "gt", "gte", "lt", "lte", "contains", "not_contains", "exists", "not_exists"
]
HttpMethod: TypeAlias = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
Reenroll: TypeAlias = Literal["never", "after_finish"] | timedelta

CONDITION_OPS: tuple[str, ...] = get_args(ConditionOp)
HTTP_METHODS: tuple[str, ...] = get_args(HttpMethod)


def _value_error(message: str) -> PydanticCustomError:
    # The message goes through the context so braces in user text are never read as a template.
    return PydanticCustomError(VALUE_ERROR_TYPE, "{message}", {"message": message})


def _problems_error(problems: list[tuple[str | None, str]]) -> PydanticCustomError:
    return PydanticCustomError(
        PROBLEMS_ERROR_TYPE,
        "{summary}",
        {
            "summary": "; ".join(message for _, message in problems),
            "problems": [(key, message) for key, message in problems],
        },
    )


def _to_duration(value: object) -> timedelta:
    if isinstance(value, timedelta):
        if not timedelta(0) < value <= MAX_DURATION:
            raise _value_error(f"a duration must be positive and at most {MAX_DURATION.days} days")
        return value
    if not isinstance(value, str):
        raise _value_error("a duration must be a string such as '30m', '2d' or 'P2D'")
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise _value_error(str(exc)) from None


def _to_datetime(value: object) -> datetime:
    if isinstance(value, datetime):
        return parse_datetime(value.isoformat())
    if not isinstance(value, str):
        raise _value_error("a date-time must be a string such as '2025-01-31T09:00:00Z'")
    try:
        return parse_datetime(value)
    except ValueError as exc:
        raise _value_error(str(exc)) from None


def _to_reenroll(value: object) -> object:
    if value in ("never", "after_finish"):
        return value
    if isinstance(value, timedelta):
        return _to_duration(value)
    expected = "reenroll must be 'never', 'after_finish' or a cooldown duration such as '30d'"
    if not isinstance(value, str):
        raise _value_error(expected)
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise _value_error(f"{expected}: {exc}") from None


def _check_condition_field(path: str) -> str:
    problem = condition_field_problem(path)
    if problem is not None:
        raise _value_error(problem)
    return path


def _check_update_target(path: str) -> str:
    problem = update_field_problem(path)
    if problem is not None:
        raise _value_error(problem)
    return path


def _check_url(url: str) -> str:
    # A placeholder may fill the path or query but never the scheme or host prefix: a URL taken
    # wholly from contact data would let anyone who edits a contact aim requests anywhere.
    if not url.lower().startswith(("http://", "https://")) or len(url.split("://", 1)[1]) == 0:
        raise _value_error(f"url '{url}' must start with http:// or https://")
    return url


_HEADER_NAME_FORBIDDEN = frozenset(' \t\r\n:()<>@,;\\"/[]?={}')


def _check_headers(headers: dict[str, str]) -> dict[str, str]:
    # One validator for the whole mapping: a call per header would cost more than the checks.
    problems: list[tuple[str | None, str]] = []
    for name, value in headers.items():
        if not name or not _HEADER_NAME_FORBIDDEN.isdisjoint(name):
            problems.append((name, f"'{name}' is not a valid HTTP header name"))
        elif "\r" in value or "\n" in value:
            problems.append((name, "a header value must not contain line breaks"))
    if problems:
        raise _problems_error(problems)
    return headers


Duration = Annotated[timedelta, BeforeValidator(_to_duration)]
UtcDatetime = Annotated[datetime, BeforeValidator(_to_datetime)]
NonEmptyStr = Annotated[str, StringConstraints(min_length=1)]
StepId = Annotated[str, StringConstraints(pattern=STEP_ID_PATTERN)]
ContactField = Annotated[str, AfterValidator(_check_condition_field)]
UpdateTarget = Annotated[str, AfterValidator(_check_update_target)]
HttpUrlTemplate = Annotated[str, AfterValidator(_check_url)]
Headers = Annotated[dict[str, str], AfterValidator(_check_headers)]
MaxAttempts = Annotated[StrictInt, Field(ge=1, le=20)]


class _Model(BaseModel):
    # serialize_by_alias makes model_dump() give the document's keys ("if", "else").
    model_config = ConfigDict(extra="forbid", frozen=True, serialize_by_alias=True)


class ManualTrigger(_Model):
    """Enrollment through the API only."""

    type: Literal["manual"] = "manual"
    reenroll: Annotated[Reenroll, BeforeValidator(_to_reenroll)] = "after_finish"


class ContactCreatedTrigger(_Model):
    """Enrolls a contact when it is created."""

    type: Literal["contact_created"] = "contact_created"
    reenroll: Annotated[Reenroll, BeforeValidator(_to_reenroll)] = "after_finish"


class TagAddedTrigger(_Model):
    """Enrolls a contact when ``tag`` is added to it."""

    type: Literal["tag_added"] = "tag_added"
    tag: NonEmptyStr
    reenroll: Annotated[Reenroll, BeforeValidator(_to_reenroll)] = "after_finish"


class FieldChangedTrigger(_Model):
    """Enrolls a contact when ``field`` (a condition field path) changes."""

    type: Literal["field_changed"] = "field_changed"
    field: ContactField
    reenroll: Annotated[Reenroll, BeforeValidator(_to_reenroll)] = "after_finish"


class EventTrigger(_Model):
    """Enrolls a contact when it emits the event named ``event``."""

    type: Literal["event"] = "event"
    event: NonEmptyStr
    reenroll: Annotated[Reenroll, BeforeValidator(_to_reenroll)] = "after_finish"


Trigger = Annotated[
    ManualTrigger | ContactCreatedTrigger | TagAddedTrigger | FieldChangedTrigger | EventTrigger,
    Field(discriminator="type"),
]


class Condition(_Model):
    """A test on one contact field, used by ``condition`` steps and goals."""

    field: ContactField
    op: ConditionOp
    value: JsonValue = None

    @model_validator(mode="after")
    def _check_value(self) -> Self:
        problem = _condition_value_problem(
            self.field, self.op, self.value, "value" in self.model_fields_set
        )
        if problem is not None:
            raise _problems_error([problem])
        return self


def _condition_value_problem(
    field: str, op: str, value: Any, has_value: bool
) -> tuple[str | None, str] | None:
    if field == "tags" and op not in ("contains", "not_contains", "exists", "not_exists"):
        return ("op", f"tags are a set: use contains, not_contains, exists or not_exists, not {op}")
    if op in ("exists", "not_exists"):
        # null is accepted as "no value" so that a dumped model validates again.
        if value is not None:
            return ("value", f"'{op}' takes no value")
        return None
    if not has_value:
        return ("value", f"'{op}' needs a value")
    if op in ("gt", "gte", "lt", "lte") and (
        isinstance(value, bool) or not isinstance(value, int | float | str)
    ):
        return ("value", f"'{op}' compares with a number or a string")
    if op in ("contains", "not_contains") and (value is None or isinstance(value, dict | list)):
        return ("value", f"'{op}' needs a string, number or boolean value")
    return None


class _StepModel(_Model):
    id: StepId


class SendEmailStep(_StepModel):
    """Send an email to the contact (skipped when it has no email)."""

    type: Literal["send_email"] = "send_email"
    subject: NonEmptyStr
    body: NonEmptyStr
    next: str | None = None


class SendSmsStep(_StepModel):
    """Send a text message to the contact (skipped when it has no phone)."""

    type: Literal["send_sms"] = "send_sms"
    body: NonEmptyStr
    next: str | None = None


class AddTagStep(_StepModel):
    """Add ``tag`` to the contact."""

    type: Literal["add_tag"] = "add_tag"
    tag: NonEmptyStr
    next: str | None = None


class RemoveTagStep(_StepModel):
    """Remove ``tag`` from the contact."""

    type: Literal["remove_tag"] = "remove_tag"
    tag: NonEmptyStr
    next: str | None = None


class UpdateFieldStep(_StepModel):
    """Set ``email``, ``phone`` or ``fields.<name>`` of the contact to ``value``."""

    type: Literal["update_field"] = "update_field"
    field: UpdateTarget
    value: JsonValue
    next: str | None = None

    @model_validator(mode="after")
    def _check_value(self) -> Self:
        if self.field in ("email", "phone") and not (
            self.value is None or isinstance(self.value, str)
        ):
            raise _problems_error([("value", f"{self.field} must be set to a string or null")])
        return self


class HttpRequestStep(_StepModel):
    """Call an outside HTTP endpoint; ``body`` None means the contact as JSON."""

    type: Literal["http_request"] = "http_request"
    url: HttpUrlTemplate
    method: HttpMethod = "POST"
    body: JsonValue = None
    headers: Headers | None = None
    max_attempts: MaxAttempts | None = None
    next: str | None = None


class WaitStep(_StepModel):
    """Wait for a ``duration``, ``until`` an instant, or for an ``event`` (exactly one)."""

    type: Literal["wait"] = "wait"
    duration: Duration | None = None
    until: UtcDatetime | None = None
    event: NonEmptyStr | None = None
    timeout: Duration | None = None
    timeout_next: str | None = None
    next: str | None = None

    @model_validator(mode="after")
    def _check_kind(self) -> Self:
        has_event = self.event is not None
        kinds = (self.duration is not None) + (self.until is not None) + has_event
        if kinds == 1 and (
            self.timeout_next is None
            if has_event
            else self.timeout is None and self.timeout_next is None
        ):
            return self
        problems: list[tuple[str | None, str]] = []
        if kinds != 1:
            found = [
                kind for kind in ("duration", "until", "event") if getattr(self, kind) is not None
            ]
            listed = f"; it has {' and '.join(found)}" if found else ""
            problems.append(
                (None, f"a wait step needs exactly one of duration, until or event{listed}")
            )
        if not has_event:
            problems.extend(
                (key, f"'{key}' is only allowed on a wait for an event")
                for key in ("timeout", "timeout_next")
                if getattr(self, key) is not None
            )
        elif self.timeout_next is not None and self.timeout is None:
            problems.append(("timeout_next", "'timeout_next' needs a 'timeout'"))
        if problems:
            raise _problems_error(problems)
        return self


class ConditionStep(_StepModel):
    """Branch to ``then`` when ``if`` holds, else to ``else`` (or complete without it)."""

    type: Literal["condition"] = "condition"
    if_: Condition = Field(alias="if")
    then: str
    else_: str | None = Field(default=None, alias="else")


class EndStep(_StepModel):
    """Complete the execution."""

    type: Literal["end"] = "end"


Step = Annotated[
    SendEmailStep
    | SendSmsStep
    | AddTagStep
    | RemoveTagStep
    | UpdateFieldStep
    | HttpRequestStep
    | WaitStep
    | ConditionStep
    | EndStep,
    Field(discriminator="type"),
]


class Goal(_Model):
    """On ``event`` or when ``if`` holds, jump to ``then`` or complete with ``goal:<id>``."""

    id: StepId
    event: NonEmptyStr | None = None
    if_: Condition | None = Field(default=None, alias="if")
    then: str | None = None

    @model_validator(mode="after")
    def _check_trigger(self) -> Self:
        if self.event is None and self.if_ is None:
            raise _problems_error([(None, "a goal needs an 'event', an 'if', or both")])
        return self


class Definition(_Model):
    """A whole workflow definition. Only :func:`validate_definition` guarantees it is valid."""

    trigger: Trigger
    start: str | None = None
    steps: Annotated[tuple[Step, ...], Field(min_length=1)]
    goals: tuple[Goal, ...] = ()

    @cached_property
    def _steps_by_id(self) -> dict[str, Step]:
        # Built once per model: the engine asks for the steps at every step it runs. A cached
        # property (unlike a private attribute) is left out of model equality.
        return {step.id: step for step in self.steps}

    def step_map(self) -> dict[str, Step]:
        """Return the steps by id (a new dict each call; the steps themselves are shared)."""
        return dict(self._steps_by_id)

    def start_step_id(self) -> str:
        """Return the id of the first step an execution runs: ``start``, else the first step."""
        return self.start if self.start is not None else self.steps[0].id


def wait_kind(step: WaitStep) -> WaitKind:
    """Return what ``step`` waits for: ``"duration"``, ``"until"`` or ``"event"``."""
    if step.duration is not None:
        return "duration"
    if step.until is not None:
        return "until"
    return "event"


def step_references(step: Step) -> dict[str, str]:
    """Return the step ids ``step`` can continue to, keyed by the key naming them.

    For example ``{"then": "vip_offer", "else": "nurture"}`` for a condition, or
    ``{"next": "b", "timeout_next": "c"}`` for a wait with a timeout.
    """
    if isinstance(step, ConditionStep):
        refs = {"then": step.then}
        if step.else_ is not None:
            refs["else"] = step.else_
        return refs
    if isinstance(step, EndStep):
        return {}
    refs = {}
    if step.next is not None:
        refs["next"] = step.next
    if isinstance(step, WaitStep) and step.timeout_next is not None:
        refs["timeout_next"] = step.timeout_next
    return refs
