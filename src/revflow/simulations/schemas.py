"""The body and the answer of ``POST /workflows/{id}/versions/{n}/simulate``."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from revflow.contacts.schemas import ContactCreate, Email, EventName, Phone, Tag
from revflow.definition import MAX_DURATION, parse_datetime, parse_duration
from revflow.engine.simulation import MAX_SIMULATED_STEPS
from revflow.kit.times import UTCInstant

MAX_TIMELINE = 1000
_DATE = re.compile(r"[+-]?[0-9]{4,}-")


def _invalid(message: str) -> PydanticCustomError:
    # The message goes through the context so braces in user text are never read as a template.
    return PydanticCustomError("value_error", "{message}", {"message": message})


def _to_offset(value: object) -> dt.timedelta:
    if not isinstance(value, str):
        raise _invalid("after is a duration from start such as '2d', 'PT6H' or '0s'")
    try:
        return parse_duration(value, allow_zero=True)
    except ValueError as exc:
        raise _invalid(str(exc)) from None


def _to_horizon(value: object) -> dt.datetime | dt.timedelta:
    if not isinstance(value, str):
        raise _invalid("until is a duration from start such as '90d', or an ISO 8601 instant")
    try:
        if _DATE.match(value.strip()):
            return parse_datetime(value)
        return parse_duration(value)
    except (ValueError, OverflowError) as exc:
        raise _invalid(str(exc) or "is outside the range of datetimes in UTC") from None


_DURATION = {
    "type": "string",
    "description": "A number and a unit (30s, 15m, 2h, 3d, 1w) or an ISO 8601 duration without "
    f"years or months (P2D, PT1H30M), at most {MAX_DURATION.days} days.",
}
Offset = Annotated[
    dt.timedelta,
    BeforeValidator(_to_offset),
    WithJsonSchema({**_DURATION, "examples": ["2d", "PT6H", "0s"]}),
]
Horizon = Annotated[
    dt.datetime | dt.timedelta,
    BeforeValidator(_to_horizon),
    WithJsonSchema(
        {
            "anyOf": [
                {**_DURATION, "examples": ["90d"]},
                {"type": "string", "format": "date-time", "examples": ["2030-04-01T00:00:00Z"]},
            ]
        }
    ),
]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TimelineEntryIn(Body):
    """One thing that happens to the contact: an event (``name``, ``data``), or a change of
    the contact as ``PATCH /contacts/{id}`` makes it (``email``, ``phone``, ``fields``,
    ``add_tags``, ``remove_tags``). Its time is ``after`` (from ``start``) or ``at``."""

    after: Offset | None = Field(
        default=None, description="When, counted from `start` (`0s` is `start` itself)."
    )
    at: UTCInstant | None = Field(default=None, description="When, as an instant.")
    name: EventName | None = Field(
        default=None, description="An event of the contact, as `POST /events` sends it."
    )
    data: dict[str, Any] | None = Field(default=None, description="The event's data.")
    email: Email | None = None
    phone: Phone | None = None
    fields: dict[str, Any] | None = Field(
        default=None, description="Merged into the contact's fields."
    )
    add_tags: list[Tag] = Field(default_factory=list, max_length=500)
    remove_tags: list[Tag] = Field(default_factory=list, max_length=500)

    @property
    def changes_contact(self) -> bool:
        return bool(
            self.email is not None
            or self.phone is not None
            or self.fields is not None
            or self.add_tags
            or self.remove_tags
        )


class SimulationIn(Body):
    contact_id: uuid.UUID | None = Field(
        default=None, description="A contact of the account; it is read, never changed."
    )
    contact: ContactCreate | None = Field(
        default=None,
        description="A contact that is not stored, checked as `POST /contacts` checks it.",
    )
    start: UTCInstant | None = Field(
        default=None, description="When the contact is enrolled (default: now)."
    )
    until: Horizon | None = Field(
        default=None,
        description="Where the simulated clock stops: a duration from `start` or an instant "
        f"(default: 90 days after `start`; at most {MAX_DURATION.days} days after it).",
    )
    timeline: list[TimelineEntryIn] = Field(
        default_factory=list,
        max_length=MAX_TIMELINE,
        description="Events and contact changes, in time order (entries of one moment in "
        "the order given), each before the steps due at that same moment.",
    )


class PathEntry(BaseModel):
    at: dt.datetime
    step: str
    result: str
    detail: dict[str, Any]
    error: str | None


class SimulatedMessage(BaseModel):
    at: dt.datetime
    id: uuid.UUID = Field(description="The `message_id` of the step's entry in `path`.")
    step: str
    channel: str
    kind: Literal["email", "sms"]
    to: str
    subject: str | None
    body: str


class SimulatedRequest(BaseModel):
    at: dt.datetime
    step: str
    method: str
    url: str
    headers: dict[str, str]
    body: Any


class GoalReached(BaseModel):
    at: dt.datetime
    goal: str
    then: str | None


class SimulatedContact(BaseModel):
    id: uuid.UUID | None = Field(description="The stored contact's id; null for a `contact`.")
    external_id: str | None
    email: str | None
    phone: str | None
    fields: dict[str, Any]
    tags: list[str]


class FinalState(BaseModel):
    status: Literal["active", "waiting", "completed", "failed", "cancelled"]
    outcome: str | None
    current_step: str | None
    wake_at: dt.datetime | None
    finished_at: dt.datetime | None
    error: str | None
    contact: SimulatedContact


class SimulationOut(BaseModel):
    workflow_id: uuid.UUID
    version: int
    start: dt.datetime
    until: dt.datetime
    path: list[PathEntry] = Field(description="The history the execution would have.")
    messages: list[SimulatedMessage] = Field(description="Messages that would be sent.")
    http_requests: list[SimulatedRequest] = Field(
        description="Requests that would be made; each is taken as answered with success."
    )
    goals: list[GoalReached]
    final: FinalState
    steps: int = Field(description="Steps run.")
    stopped_reason: Literal["finished", "until", "step_limit"] = Field(
        description="`finished`: the execution finished; `until`: the clock reached `until` "
        f"(or nothing more could happen); `step_limit`: {MAX_SIMULATED_STEPS:,} steps ran "
        "first."
    )
