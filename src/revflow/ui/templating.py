"""The console's Jinja2 environment and the filters its templates use."""

from __future__ import annotations

import datetime as dt
import functools
import json
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

NONE = "\u2013"  # en dash: "no value"
STATUS_LABELS = {
    "published": ("Current", "current"),
    "canary": ("Canary", "canary"),
    "draft": ("Draft", "draft"),
    "retired": ("Retired", "retired"),
    "archived": ("Archived", "archived"),
    "active": ("Active", "current"),
    "paused": ("Paused", "canary"),
    "pending": ("Pending", "draft"),
    "in_progress": ("Running", "canary"),
    "completed": ("Completed", "current"),
    "failed": ("Failed", "breaking"),
    "cancelled": ("Cancelled", "retired"),
}


def badge(status: str) -> Markup:
    """A status as a word and a colour, never a colour alone."""
    label, css = STATUS_LABELS.get(status, (status.replace("_", " ").title(), "draft"))
    return Markup('<span class="badge badge-{}">{}</span>').format(css, label)


def ago(moment: dt.datetime | str | None, now: dt.datetime | None = None) -> str:
    if moment is None:
        return NONE
    if isinstance(moment, str):
        moment = dt.datetime.fromisoformat(moment)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    seconds = int(((now or dt.datetime.now(dt.UTC)) - moment).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return "just now"


def when(moment: dt.datetime | str | None) -> str:
    if moment is None:
        return NONE
    if isinstance(moment, str):
        moment = dt.datetime.fromisoformat(moment)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def number(value: int | float | None) -> str:
    return NONE if value is None else f"{value:,}"


def as_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@functools.cache
def environment() -> Environment:
    """The console's templates, loaded and compiled once per process (every application made
    in it shares them: nothing in them belongs to one)."""
    env = Environment(
        loader=PackageLoader("revflow.ui", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(badge=badge, ago=ago, when=when, number=number, as_json=as_json, short=short)
    return env
