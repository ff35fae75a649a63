"""Semantic version labels of workflow versions (SPEC §1)."""

from __future__ import annotations

import re

from revflow.diff.model import Bump

FIRST_SEMVER = "1.0.0"
_SEMVER = re.compile(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)")


def next_semver(parent: str | None, bump: Bump) -> str:
    """Return the semver of a new version given its parent's semver and the suggested bump.

    ``None`` (no parent: version 1) gives ``1.0.0``. ``major`` → ``X+1.0.0``, ``minor`` →
    ``X.Y+1.0``, ``patch`` → ``X.Y.Z+1``. Raises ``ValueError`` on a malformed parent or bump.
    """
    if bump not in ("major", "minor", "patch"):
        raise ValueError(f"unknown bump {bump!r}")
    if parent is None:
        return FIRST_SEMVER
    match = _SEMVER.fullmatch(parent)
    if match is None:
        raise ValueError(f"not a MAJOR.MINOR.PATCH version: {parent!r}")
    major, minor, patch = (int(part) for part in match.groups())
    if bump == "major":
        return f"{major + 1}.0.0"
    if bump == "minor":
        return f"{major}.{minor + 1}.0"
    return f"{major}.{minor}.{patch + 1}"
