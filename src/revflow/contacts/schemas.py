"""Contact and event bodies (SPEC §4 "Shapes")."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
ExternalId = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Email = Annotated[str, StringConstraints(strip_whitespace=True, max_length=320)]
Phone = Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)]
EventName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ContactCreate(Body):
    external_id: ExternalId | None = None
    email: Email | None = None
    phone: Phone | None = None
    fields: dict[str, Any] = Field(default_factory=dict)
    tags: list[Tag] = Field(default_factory=list, max_length=500)


class ContactUpsert(Body):
    """``PUT /contacts/by-external-id/{id}``: given values replace, ``fields`` are merged."""

    email: Email | None = None
    phone: Phone | None = None
    fields: dict[str, Any] | None = None
    tags: list[Tag] | None = Field(default=None, max_length=500)


class ContactPatch(Body):
    email: Email | None = None
    phone: Phone | None = None
    fields: dict[str, Any] | None = None
    add_tags: list[Tag] = Field(default_factory=list, max_length=500)
    remove_tags: list[Tag] = Field(default_factory=list, max_length=500)


class ContactOut(BaseModel):
    id: uuid.UUID
    external_id: str | None
    email: str | None
    phone: str | None
    fields: dict[str, Any]
    tags: list[str]
    created_at: dt.datetime
    updated_at: dt.datetime


class ContactList(BaseModel):
    items: list[ContactOut]
    next_cursor: str | None


class EventIn(Body):
    contact_id: uuid.UUID
    name: EventName
    data: dict[str, Any] = Field(default_factory=dict)


class EventOut(BaseModel):
    contact_id: uuid.UUID
    name: str
    executions_advanced: int
    enrolled: list[uuid.UUID]
