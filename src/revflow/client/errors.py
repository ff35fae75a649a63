"""Problem documents (RFC 9457) as typed exceptions.

Every error the API answers becomes a :class:`RevflowError` carrying the answer's ``status``,
``code``, ``title``, ``detail`` and the whole ``problem`` document; a subclass per family of
codes carries the members a caller needs to act (``StaleBase.latest_version``,
``VersionLimit.max_versions``, ``StaleDraft.current``, ``ValidationError.errors``,
``RateLimited.retry_after`` …). A server that cannot be reached raises :class:`Unreachable`.
"""

from __future__ import annotations

from typing import Any, ClassVar


class RevflowError(Exception):
    """An error answered by the API (or met on the way to it)."""

    default_status: ClassVar[int] = 0

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str,
        problem: dict[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.problem: dict[str, Any] = problem if problem is not None else {}
        super().__init__(f"{status} {code}: {detail}" if status else detail)


class Unreachable(RevflowError):
    """No answer: the server is not running, the URL is wrong or the connection broke."""


class BadRequest(RevflowError):
    """400, e.g. ``malformed_json``."""


class Unauthorized(RevflowError):
    """401: the API key is missing, unknown or revoked."""


class Forbidden(RevflowError):
    """403: the key's role does not allow this."""


class NotFound(RevflowError):
    """404: no such object in the key's account (or no such route)."""


class PreconditionFailed(RevflowError):
    """412: the workflow changed since the ``If-Match`` etag was read."""


class PayloadTooLarge(RevflowError):
    """413: the body is over the server's ``max_request_bytes``."""


class ValidationError(RevflowError):
    """422: ``errors`` lists each problem as ``{"pointer", "message"}`` (JSON Pointers)."""

    @property
    def errors(self) -> list[dict[str, Any]]:
        errors = self.problem.get("errors")
        return list(errors) if isinstance(errors, list) else []


class Conflict(RevflowError):
    """409: the state of the object does not allow this now."""


class StaleBase(Conflict):
    """A newer version exists than the ``base_version`` the edit started from."""

    @property
    def latest_version(self) -> int | None:
        value = self.problem.get("latest_version")
        return value if isinstance(value, int) else None


class NoChanges(Conflict):
    """The definition is identical to the latest version's."""


class VersionLimit(Conflict):
    """The workflow has ``max_versions`` versions already."""

    @property
    def max_versions(self) -> int | None:
        value = self.problem.get("max_versions")
        return value if isinstance(value, int) else None


class StaleDraft(Conflict):
    """The working draft was saved elsewhere; ``current`` is the draft as it is now."""

    @property
    def current(self) -> dict[str, Any] | None:
        value = self.problem.get("draft", self.problem.get("current"))
        return value if isinstance(value, dict) else None


class CanaryActive(Conflict):
    """A canary is running on the workflow."""


class MigrationRunning(Conflict):
    """A migration of the workflow is not finished."""


class UseRollback(Conflict):
    """The version was published before: roll back to it instead."""


class NeverPublished(Conflict):
    """The version was never published: publish it instead."""


class NotPublished(Conflict):
    """The workflow has no published version."""


class WorkflowPaused(Conflict):
    """The workflow is paused."""


class RateLimited(RevflowError):
    """429: ``retry_after`` seconds (or None) before trying again."""

    @property
    def retry_after(self) -> float | None:
        return _seconds(self.problem.get("retry_after"))


class ServerError(RevflowError):
    """500 or another 5xx: the server failed; its log says why."""


class ServiceUnavailable(ServerError):
    """503, e.g. ``database_busy``: ``retry_after`` seconds (or None) before trying again."""

    @property
    def retry_after(self) -> float | None:
        return _seconds(self.problem.get("retry_after"))


BY_CODE: dict[str, type[RevflowError]] = {
    "stale_base": StaleBase,
    "no_changes": NoChanges,
    "version_limit": VersionLimit,
    "stale_draft": StaleDraft,
    "canary_active": CanaryActive,
    "migration_running": MigrationRunning,
    "use_rollback": UseRollback,
    "never_published": NeverPublished,
    "not_published": NotPublished,
    "workflow_paused": WorkflowPaused,
}

BY_STATUS: dict[int, type[RevflowError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    412: PreconditionFailed,
    413: PayloadTooLarge,
    422: ValidationError,
    429: RateLimited,
    503: ServiceUnavailable,
}


def error_for(status: int, problem: dict[str, Any], retry_after: str | None = None) -> RevflowError:
    """The typed exception for an error answer's status and problem document."""
    code = str(problem.get("code") or f"http_{status}")
    title = str(problem.get("title") or f"HTTP {status}")
    detail = str(problem.get("detail") or title)
    if retry_after is not None and "retry_after" not in problem:
        problem = {**problem, "retry_after": retry_after}
    cls = BY_CODE.get(code) or BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else RevflowError
    return cls(status, code, title, detail, problem)


def _seconds(value: object) -> float | None:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None
