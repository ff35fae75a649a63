"""Structured logs (JSON lines by default) with structlog."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from typing import Any

import orjson
import structlog


def _json_line(event: dict[str, Any], **dumps_kw: Any) -> bytes:
    """One log line's JSON: orjson's (structlog's fast path, with its fallback for objects
    that are not JSON), or the standard encoder's for what orjson refuses (an integer beyond
    64 bits, a key that is not a string)."""
    try:
        return orjson.dumps(event, default=dumps_kw.get("default"))
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(event, **dumps_kw).encode()


def configure(level: str = "INFO", json: bool = True) -> None:
    """Log at ``level`` and above to standard error, as the README says (standard output is
    for what a command answers, such as ``revflow accounts create``'s JSON): JSON lines,
    written as bytes the way structlog's documentation recommends for speed (one line per
    request at INFO), or, with ``json`` false, structlog's console format."""
    logging.basicConfig(format="%(message)s", stream=sys.stderr, level=level.upper())
    renderer: structlog.typing.Processor
    factory: Callable[..., Any]
    binary = getattr(sys.stderr, "buffer", None)  # none where standard error is replaced
    if json and binary is not None:
        renderer = structlog.processors.JSONRenderer(serializer=_json_line)
        factory = structlog.BytesLoggerFactory(binary)
    else:
        renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
        factory = structlog.PrintLoggerFactory(sys.stderr)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
