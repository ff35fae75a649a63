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
    WithJsonSchema,
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


_DURATION_SCHEMA: dict[str, Any] = {
    "type": "string",
    "description": "A number and a unit (30s, 15m, 2h, 3d, 1w) or an ISO 8601 duration without "
    "years or months (P2D, PT1H30M); positive, at most 3650 days.",
    "examples": ["2d", "30m", "P1DT12H"],
}
Duration = Annotated[timedelta, BeforeValidator(_to_duration), WithJsonSchema(_DURATION_SCHEMA)]
UtcDatetime = Annotated[
    datetime,
    BeforeValidator(_to_datetime),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "description": "An ISO 8601 date-time with a time zone.",
            "examples": ["2025-12-24T09:00:00Z"],
        }
    ),
]
ReenrollRule = Annotated[
    Reenroll,
    BeforeValidator(_to_reenroll),
    WithJsonSchema(
        {
            "anyOf": [{"enum": ["never", "after_finish"]}, _DURATION_SCHEMA],
            "description": "Whether a contact whose execution finished may be enrolled again: "
            "`never`, `after_finish` (the default), or after a cooldown duration such as `30d`.",
            "examples": ["after_finish", "never", "30d"],
        }
    ),
]


def _next(example: str = "next_step") -> Any:
    return Field(
        default=None,
        description="The step to run after this one; without it the execution completes.",
        examples=[example],
    )


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

    type: Literal["manual"] = Field("manual", description="Enrollment through the API only.")
    reenroll: ReenrollRule = "after_finish"


class ContactCreatedTrigger(_Model):
    """Enrolls a contact when it is created."""

    type: Literal["contact_created"] = Field(
        "contact_created", description="Enroll each contact when it is created."
    )
    reenroll: ReenrollRule = "after_finish"


class TagAddedTrigger(_Model):
    """Enrolls a contact when ``tag`` is added to it."""

    type: Literal["tag_added"] = Field(
        "tag_added", description="Enroll a contact when a tag is added to it."
    )
    tag: NonEmptyStr = Field(description="The tag that enrolls.", examples=["lead"])
    reenroll: ReenrollRule = "after_finish"


class FieldChangedTrigger(_Model):
    """Enrolls a contact when ``field`` (a condition field path) changes."""

    type: Literal["field_changed"] = Field(
        "field_changed", description="Enroll a contact when one of its fields changes."
    )
    field: ContactField = Field(
        description="The contact field that enrolls when it changes: `email`, `phone`, "
        "`tags`, `external_id` or `fields.<name>`.",
        examples=["fields.plan"],
    )
    reenroll: ReenrollRule = "after_finish"


class EventTrigger(_Model):
    """Enrolls a contact when it emits the event named ``event``."""

    type: Literal["event"] = Field(
        "event", description="Enroll a contact when it emits an event (`POST /events`)."
    )
    event: NonEmptyStr = Field(description="The event's name.", examples=["signed_up"])
    reenroll: ReenrollRule = "after_finish"


Trigger = Annotated[
    ManualTrigger | ContactCreatedTrigger | TagAddedTrigger | FieldChangedTrigger | EventTrigger,
    Field(discriminator="type"),
]


class Condition(_Model):
    """A test on one contact field, used by ``condition`` steps and goals."""

    field: ContactField = Field(
        description="The contact field tested: `email`, `phone`, `tags`, `external_id` or "
        "`fields.<name>`.",
        examples=["tags", "fields.score"],
    )
    op: ConditionOp = Field(
        description="`eq ne gt gte lt lte` compare; `contains` / `not_contains` test a tag, a "
        "substring or a list member; `exists` / `not_exists` take no value. Tags take "
        "`contains`, `not_contains`, `exists` and `not_exists` only.",
        examples=["contains"],
    )
    value: JsonValue = Field(
        default=None,
        description="What the field is compared with (not for `exists` / `not_exists`).",
        examples=["vip", 10],
    )

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
    id: StepId = Field(
        description="The step's own stable id (1-64 of A-Z a-z 0-9 _ -): what diffs and "
        "migrations match on.",
        examples=["welcome"],
    )


class SendEmailStep(_StepModel):
    """Send an email to the contact (skipped when it has no email)."""

    type: Literal["send_email"] = Field("send_email", description="Send an email.")
    subject: NonEmptyStr = Field(
        description="The subject; `{{contact.…}}` placeholders are filled from the contact.",
        examples=["Welcome, {{contact.fields.first_name}}!"],
    )
    body: NonEmptyStr = Field(
        description="The text of the email, with placeholders.",
        examples=["Thanks for signing up. Reply to this email if you need anything."],
    )
    next: str | None = _next()


class SendSmsStep(_StepModel):
    """Send a text message to the contact (skipped when it has no phone)."""

    type: Literal["send_sms"] = Field("send_sms", description="Send a text message.")
    body: NonEmptyStr = Field(
        description="The text, with placeholders.",
        examples=["{{contact.fields.first_name}}, your VIP code is VIP20."],
    )
    next: str | None = _next()


class AddTagStep(_StepModel):
    """Add ``tag`` to the contact."""

    type: Literal["add_tag"] = Field("add_tag", description="Add a tag to the contact.")
    tag: NonEmptyStr = Field(description="The tag.", examples=["nurture"])
    next: str | None = _next()


class RemoveTagStep(_StepModel):
    """Remove ``tag`` from the contact."""

    type: Literal["remove_tag"] = Field("remove_tag", description="Remove a tag from the contact.")
    tag: NonEmptyStr = Field(description="The tag.", examples=["trial"])
    next: str | None = _next()


class UpdateFieldStep(_StepModel):
    """Set ``email``, ``phone`` or ``fields.<name>`` of the contact to ``value``."""

    type: Literal["update_field"] = Field("update_field", description="Set a field of the contact.")
    field: UpdateTarget = Field(
        description="`email`, `phone` or `fields.<name>`.", examples=["fields.stage"]
    )
    value: JsonValue = Field(
        description="The new value (a string or null for `email` and `phone`).",
        examples=["customer"],
    )
    next: str | None = _next()

    @model_validator(mode="after")
    def _check_value(self) -> Self:
        if self.field in ("email", "phone") and not (
            self.value is None or isinstance(self.value, str)
        ):
            raise _problems_error([("value", f"{self.field} must be set to a string or null")])
        return self


class HttpRequestStep(_StepModel):
    """Call an outside HTTP endpoint; ``body`` None means the contact as JSON."""

    type: Literal["http_request"] = Field(
        "http_request", description="Call an outside HTTP endpoint (at least once, retried)."
    )
    url: HttpUrlTemplate = Field(
        description="An http:// or https:// URL; placeholders may fill its path or query.",
        examples=["https://crm.example.com/hooks/customer?email={{contact.email}}"],
    )
    method: HttpMethod = Field("POST", description="The HTTP method.", examples=["POST"])
    body: JsonValue = Field(
        default=None,
        description="The JSON body; null (the default) sends the contact as JSON.",
        examples=[{"stage": "customer"}],
    )
    headers: Headers | None = Field(
        default=None,
        description="Extra request headers (an `Idempotency-Key` is always sent).",
        examples=[{"X-Source": "revflow"}],
    )
    max_attempts: MaxAttempts | None = Field(
        default=None,
        description="Attempts before the execution fails (1-20; default the "
        "`REVFLOW_MAX_ATTEMPTS` setting).",
        examples=[3],
    )
    next: str | None = _next()


class WaitStep(_StepModel):
    """Wait for a ``duration``, ``until`` an instant, or for an ``event`` (exactly one)."""

    type: Literal["wait"] = Field(
        "wait", description="Wait for a duration, until an instant, or for an event."
    )
    duration: Duration | None = Field(
        default=None, description="How long to wait.", examples=["2d"]
    )
    until: UtcDatetime | None = Field(
        default=None, description="The instant to wait for.", examples=["2025-12-24T09:00:00Z"]
    )
    event: NonEmptyStr | None = Field(
        default=None, description="The event to wait for.", examples=["purchase"]
    )
    timeout: Duration | None = Field(
        default=None,
        description="A wait for an event gives up after this long.",
        examples=["7d"],
    )
    timeout_next: str | None = Field(
        default=None,
        description="The step to run on a timeout (default: `next`).",
        examples=["reminder"],
    )
    next: str | None = _next()

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

    type: Literal["condition"] = Field("condition", description="Branch on a contact field.")
    if_: Condition = Field(
        alias="if",
        description="The test.",
        examples=[{"field": "tags", "op": "contains", "value": "vip"}],
    )
    then: str = Field(description="The step to run when the test holds.", examples=["vip_offer"])
    else_: str | None = Field(
        default=None,
        alias="else",
        description="The step to run otherwise; without it the execution completes.",
        examples=["nurture"],
    )


class EndStep(_StepModel):
    """Complete the execution."""

    type: Literal["end"] = Field("end", description="Complete the execution.")


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

    id: StepId = Field(
        description="The goal's id; an execution it completes has outcome `goal:<id>`.",
        examples=["purchased"],
    )
    event: NonEmptyStr | None = Field(
        default=None, description="The event that reaches the goal.", examples=["purchase"]
    )
    if_: Condition | None = Field(
        default=None,
        alias="if",
        description="A test that reaches the goal when it holds (checked before each step and "
        "when the contact changes).",
        examples=[{"field": "fields.plan", "op": "eq", "value": "paid"}],
    )
    then: str | None = Field(
        default=None,
        description="The step to jump to; without it the execution completes.",
        examples=["thank_you"],
    )

    @model_validator(mode="after")
    def _check_trigger(self) -> Self:
        if self.event is None and self.if_ is None:
            raise _problems_error([(None, "a goal needs an 'event', an 'if', or both")])
        return self


class Definition(_Model):
    """A whole workflow definition. Only :func:`validate_definition` guarantees it is valid."""

    trigger: Trigger = Field(
        description="What enrolls a contact into the published version.",
        examples=[{"type": "tag_added", "tag": "lead"}],
    )
    start: str | None = Field(
        default=None,
        description="The first step's id (default: the first step).",
        examples=["welcome"],
    )
    steps: Annotated[tuple[Step, ...], Field(min_length=1)] = Field(
        description="The steps, each with a unique `id` and a `type`.",
        examples=[[{"id": "welcome", "type": "send_email", "subject": "Hi", "body": "Welcome!"}]],
    )
    goals: tuple[Goal, ...] = Field(
        default=(),
        description="Goals: an event or a test that ends the execution or jumps to a step.",
        examples=[[{"id": "purchased", "event": "purchase"}]],
    )

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
