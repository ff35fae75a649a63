"""Waiting for a condition in a test: bounded by a deadline, so that a hang fails the test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest


async def until(
    condition: Callable[[], Awaitable[Any]],
    what: str,
    *,
    limit: float = 30.0,
    poll: float = 0.02,
    diagnostics: Callable[[], str] | None = None,
) -> None:
    """Poll ``condition`` every ``poll`` seconds until it holds; fail the test after ``limit``
    seconds, naming ``what`` (and what ``diagnostics`` tells, e.g. processes' log tails)."""
    deadline = time.monotonic() + limit
    while not await condition():
        if time.monotonic() > deadline:
            detail = f":\n{diagnostics()}" if diagnostics is not None else ""
            pytest.fail(f"timed out waiting for {what}{detail}")
        await asyncio.sleep(poll)
