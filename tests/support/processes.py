"""What tests need to start revflow processes of their own."""

from __future__ import annotations

import socket
import sys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def revflow_command() -> list[str]:
    return [sys.executable, "-m", "revflow"]
