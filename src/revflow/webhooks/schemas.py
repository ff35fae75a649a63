"""Webhook subscriptions and deliveries as the API reads and writes them (SPEC §8)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from revflow.models import WEBHOOK_EVENTS, WebhookEvent

EventType = WebhookEvent


def _http_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("the URL must start with http:// or https://")
    if not parts.hostname:
        raise ValueError("the URL must name a host")
    if port == 0:
        raise ValueError("the URL's port must be between 1 and 65535")
    if parts.username or parts.password:
        raise ValueError("the URL must not carry credentials")
    return value


WebhookUrl = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=2000),
    AfterValidator(_http_url),
    Field(description="Where deliveries are POSTed (http or https; refused if internal, SPEC §9)"),
]
Events = Annotated[
    list[EventType],
    Field(min_length=1, max_length=len(WEBHOOK_EVENTS), description="The events to deliver"),
]
Description = Annotated[str, StringConstraints(max_length=500)]


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: WebhookUrl
    events: Events
    description: Description = ""


class SubscriptionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: WebhookUrl | None = None
    events: Events | None = None
    description: Description | None = None
    enabled: bool | None = None


class SubscriptionOut(BaseModel):
    id: uuid.UUID
    url: str
    events: list[str]
    description: str
    enabled: bool
    disabled_reason: str | None
    created_by: str
    created_at: dt.datetime
    updated_at: dt.datetime
    secret_rotated_until: dt.datetime | None = Field(
        description="While set, the previous secret still signs too (24 hours after a rotation)"
    )


class SubscriptionCreated(SubscriptionOut):
    secret: str = Field(description="The signing secret (whsec_…); shown in this answer only")


class SubscriptionList(BaseModel):
    items: list[SubscriptionOut]
    next_cursor: str | None


class Attempt(BaseModel):
    at: dt.datetime
    status_code: int | None
    error: str | None
    duration_ms: int


class DeliveryOut(BaseModel):
    id: uuid.UUID = Field(description="The webhook-id header: the same on every attempt")
    subscription_id: uuid.UUID
    event: str
    status: Literal["pending", "delivered", "failed"]
    attempts: list[Attempt]
    next_attempt_at: dt.datetime | None
    created_at: dt.datetime
    finished_at: dt.datetime | None


class DeliveryList(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None
