"""The log: on standard error, one JSON object a line whatever the values logged."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator

import pytest
import structlog

from revflow.logging import configure, get_logger


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


class _Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


def test_every_line_is_one_json_object(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    configure("INFO", json=True)
    log = get_logger("revflow.test")
    log.info("request", method="GET", status=200, ms=1.25, account=None, text='é\n"')
    log.info("beyond 64 bits", count=2**70)  # orjson refuses it: the standard encoder writes it
    log.info("not JSON", value=_Opaque())
    log.debug("below the level")
    captured = capsysbinary.readouterr()
    assert captured.out == b""  # standard output is for what a command answers
    lines = captured.err.splitlines()
    entries = [json.loads(line) for line in lines]
    assert [entry["event"] for entry in entries] == ["request", "beyond 64 bits", "not JSON"]
    assert entries[0] | {"timestamp": None} == {
        "event": "request",
        "method": "GET",
        "status": 200,
        "ms": 1.25,
        "account": None,
        "text": 'é\n"',
        "level": "info",
        "timestamp": None,
    }
    assert entries[0]["timestamp"].endswith("Z")
    assert entries[1]["count"] == 2**70
    assert entries[2]["value"] == "<opaque>"


def test_the_console_format_is_not_json(capsys: pytest.CaptureFixture[str]) -> None:
    configure("INFO", json=False)
    get_logger("revflow.test").info("request", status=200)
    out = capsys.readouterr().err
    assert "request" in out and "status" in out
    with pytest.raises(ValueError):
        json.loads(out)


def test_a_standard_error_without_bytes_gets_the_same_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    configure("INFO", json=True)
    get_logger("revflow.test").info("request", status=200)
    written = sys.stderr.getvalue()
    assert json.loads(written)["event"] == "request" and written.endswith("\n")
