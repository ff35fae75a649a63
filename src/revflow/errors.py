"""One error tree; each error knows its HTTP status and problem ``code`` (RFC 9457)."""

from __future__ import annotations

from typing import Any, ClassVar


class RevflowError(Exception):
    """Root of every error revflow answers with a problem document."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        self.detail = detail or self.title
        self.extra = extra
        super().__init__(self.detail)

    def problem(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"urn:revflow:problem:{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        body.update(self.extra)
        return body


class BadRequest(RevflowError):
    status = 400
    code = "bad_request"
    title = "Bad request"


class MalformedJSON(BadRequest):
    code = "malformed_json"
    title = "The request body is not valid JSON"


class Unauthorized(RevflowError):
    status = 401
    code = "unauthorized"
    title = "Missing or invalid API key"


class Forbidden(RevflowError):
    status = 403
    code = "forbidden"
    title = "Your role does not allow this"


class NotFound(RevflowError):
    status = 404
    code = "not_found"
    title = "Not found"


class MethodNotAllowed(RevflowError):
    status = 405
    code = "method_not_allowed"
    title = "Method not allowed"


class PayloadTooLarge(RevflowError):
    status = 413
    code = "payload_too_large"
    title = "Request body too large"


class PreconditionFailed(RevflowError):
    status = 412
    code = "etag_mismatch"
    title = "The workflow changed since you read it"


class ValidationFailed(RevflowError):
    """422 with ``errors``: a list of ``{"pointer", "message"}`` (JSON Pointers)."""

    status = 422
    code = "validation_error"
    title = "The request is not valid"

    def __init__(self, errors: list[dict[str, Any]], detail: str | None = None, **extra: Any):
        first = errors[0] if errors else {"pointer": "", "message": "invalid"}
        super().__init__(
            detail or f"{first['message']} (at {first['pointer'] or '/'})", errors=errors, **extra
        )

    @classmethod
    def at(cls, pointer: str, message: str) -> ValidationFailed:
        """One problem at one JSON Pointer of the request."""
        return cls([{"pointer": pointer, "message": message}])


class InvalidDefinition(ValidationFailed):
    code = "invalid_definition"
    title = "The workflow definition is not valid"


class InvalidCursor(ValidationFailed):
    code = "invalid_cursor"
    title = "The cursor is malformed or was made for other filters"


class IdempotencyKeyReused(ValidationFailed):
    code = "idempotency_key_reused"
    title = "This Idempotency-Key was used with another request body"


class Conflict(RevflowError):
    status = 409
    code = "conflict"
    title = "Conflict"


class StaleBase(Conflict):
    code = "stale_base"
    title = "A newer version exists than the one this edit started from"


class NoChanges(Conflict):
    code = "no_changes"
    title = "The definition is identical to the latest version"


class VersionLimit(Conflict):
    code = "version_limit"
    title = "The workflow has reached its version limit"


class UseRollback(Conflict):
    code = "use_rollback"
    title = "This version was published before; roll back to it instead"


class NeverPublished(Conflict):
    code = "never_published"
    title = "This version was never published; publish it instead"


class CanaryActive(Conflict):
    code = "canary_active"
    title = "A canary is running on this workflow"


class NoCanary(Conflict):
    code = "no_canary"
    title = "No canary is running on this workflow"


class MigrationRunning(Conflict):
    code = "migration_running"
    title = "A migration of this workflow is not finished"


class NotPublished(Conflict):
    code = "not_published"
    title = "The workflow has no published version"


class NotReleased(Conflict):
    code = "not_released"
    title = "The target version was never published or canaried"


class WorkflowPaused(Conflict):
    code = "workflow_paused"
    title = "The workflow is paused"


class ExecutionFinished(Conflict):
    code = "execution_finished"
    title = "The execution has already finished"


class ExternalIdTaken(Conflict):
    code = "external_id_taken"
    title = "Another contact has this external_id"


class StaleDraft(Conflict):
    code = "stale_draft"
    title = "The draft was saved elsewhere since the revision you edited"


class MigrationNotRunning(Conflict):
    code = "migration_not_running"
    title = "The migration is not in a state that allows this"


class NothingToRevert(Conflict):
    code = "nothing_to_revert"
    title = "The migration moved no execution"


class ConcurrentChange(Conflict):
    code = "concurrent_change"
    title = "A concurrent change won; read the object again and retry"


class RateLimited(RevflowError):
    """429: the account's token bucket cannot pay for the request; ``retry_after`` seconds."""

    status = 429
    code = "rate_limited"
    title = "Too many requests for this account"


class DatabaseBusy(RevflowError):
    status = 503
    code = "database_busy"
    title = "The database is busy or unreachable"


class ServerBusy(RevflowError):
    """503: the request waited ``api_queue_seconds`` for its turn (kit.admission)."""

    status = 503
    code = "server_busy"
    title = "The server is busy"
