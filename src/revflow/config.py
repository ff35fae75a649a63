"""Settings, read from ``REVFLOW_*`` environment variables and an optional ``.env`` file."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting of SPEC §9; the environment variable is ``REVFLOW_`` + the name in capitals."""

    model_config = SettingsConfigDict(env_prefix="REVFLOW_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default="sqlite+aiosqlite:///./revflow.db",
        description="SQLAlchemy URL: sqlite+aiosqlite:///path or postgresql+asyncpg://…",
    )
    admin_token: str | None = Field(
        default=None, description="Operator token for POST /api/v1/accounts (disabled when unset)."
    )
    secret_key: str | None = Field(
        default=None,
        description="Signs the web console's session cookies. Unset: generated once and kept "
        "beside an embedded SQLite database (file <database>.secret-key); share one value "
        "between the processes of a PostgreSQL deployment.",
    )
    max_versions: int = Field(default=1000, ge=1)
    max_steps: int = Field(default=500, ge=1)
    max_definition_bytes: int = Field(default=1_000_000, ge=1)
    max_request_bytes: int = Field(default=4_000_000, ge=1)
    db_pool_size: int = Field(default=10, ge=1)
    db_pool_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="PostgreSQL, API processes: how long a request waits for a pooled "
        "connection before the API answers 503 database_busy.",
    )
    api_concurrent_requests: int | None = Field(
        default=None,
        ge=1,
        description="Requests of /api and the console an API process works on at once (default: "
        "db_pool_size); the others wait their turn in arrival order.",
    )
    api_authoring_requests: int | None = Field(
        default=None,
        ge=1,
        description="Of those, the authoring requests (changes of workflows, versions, drafts, "
        "migrations; version comparisons) an API process works on at once (default: 1); the "
        "others wait for the authoring lane first, so that ingest is never queued behind them.",
    )
    api_queue_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How long a request waits for its turn before the API answers 503 server_busy.",
    )
    db_connect_timeout_seconds: float = Field(
        default=5.0, gt=0, description="PostgreSQL: how long opening a connection may take."
    )
    db_ping_idle_seconds: float = Field(
        default=1.0,
        ge=0,
        description="PostgreSQL: a pooled connection unused for longer than this is pinged "
        "before use and replaced if the server closed it; one used more recently is not, and "
        "a request that finds it closed answers 503 database_busy (0: ping before every use).",
    )
    db_lock_timeout_ms: int = Field(
        default=5000,
        ge=0,
        description="PostgreSQL, API processes: how long a statement waits for a row lock held "
        "by another transaction before the API answers 503 database_busy (0: no limit). "
        "Workers do not set it.",
    )
    sqlite_busy_timeout_ms: int = Field(default=30_000, ge=0)
    log_level: str = "INFO"
    log_json: bool = True
    idempotency_ttl_hours: int = Field(default=24, ge=1)

    # Authentication reads a key once per this many seconds per process (SPEC is silent on
    # how fast a revocation reaches other processes; README says what this bound means).
    api_key_cache_seconds: float = Field(
        default=5,
        ge=0,
        description="How long an API process reuses an API key it has looked up; a key "
        "revoked in another process stops working within this time (0: every request reads it).",
    )

    # The API's rate limit per account (a token bucket per account and process); off unless
    # a rate is set.
    rate_limit_per_second: float | None = Field(
        default=None,
        gt=0,
        description="Tokens an account's bucket gains a second (a request costs one; an "
        "enrollment one per contact). Unset: no limit.",
    )
    rate_limit_burst: int | None = Field(
        default=None,
        ge=1,
        description="Tokens the bucket holds at most. Unset: two seconds' worth of the rate.",
    )

    def concurrent_requests(self) -> int:
        """Requests an API process works on at once (kit.admission)."""
        return self.api_concurrent_requests or self.db_pool_size

    def authoring_requests(self) -> int:
        """Authoring requests an API process works on at once: one unless set, so that their
        CPU-heavy work (a definition's validation, a comparison) runs one request at a time
        and contact upserts and events interleave with it on the event loop."""
        return min(self.concurrent_requests(), self.api_authoring_requests or 1)

    def rate_limit(self) -> tuple[float, int] | None:
        """(rate per second, burst) of the API's rate limit, or None when it is off."""
        if self.rate_limit_per_second is None:
            return None
        rate = self.rate_limit_per_second
        return rate, self.rate_limit_burst or max(1, math.ceil(2 * rate))

    # Channels: where send_email / send_sms go.
    email_channel: Literal["outbox", "smtp", "http"] = "outbox"
    sms_channel: Literal["outbox", "http"] = "outbox"
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_tls: Literal["none", "starttls", "tls"] = "none"
    smtp_sender: str = "revflow@localhost"
    http_channel_url: str | None = None

    # Canary publishing (SPEC §6b).
    canary_max_failure_rate: float = Field(default=0.1, ge=0, le=1)
    canary_min_executions: int = Field(default=20, ge=1)

    # Retention and archival (SPEC §7).
    archive_after_days: float = Field(default=90, ge=0)
    keep_versions: int = Field(default=10, ge=0)
    archive_interval_hours: float = Field(default=24, gt=0)
    # Pruning: what finished work leaves behind is deleted after these many days (0: kept
    # forever). History covers finished executions' history and finished migrations' records;
    # messages cover the outbox and finished webhook deliveries.
    history_retention_days: int = Field(default=180, ge=0)
    message_retention_days: int = Field(default=180, ge=0)
    prune_interval_hours: float = Field(default=24, gt=0)
    prune_batch_size: int = Field(default=5000, ge=1, le=100_000)
    prune_busy_share: float = Field(
        default=0.05,
        gt=0,
        le=1,
        description="Share of a worker's time a pruning run may take while executions are due "
        "(when none are, it goes on at full speed)",
    )

    # Worker.
    worker_batch_size: int = Field(default=200, ge=1, le=1000)
    worker_account_share: int = Field(
        default=50,
        ge=1,
        description="Due executions of one account a batch takes before the next account's; "
        "room left is filled oldest first.",
    )
    worker_poll_seconds: float = Field(default=0.5, gt=0)
    lease_seconds: int = Field(default=300, ge=1)
    max_attempts: int = Field(default=5, ge=1, le=20)
    retry_base_seconds: float = Field(default=1.0, ge=0)
    http_timeout_seconds: float = Field(default=10.0, gt=0)

    # The bulkhead of http_request steps (calls in flight at once, per worker process).
    http_concurrency: int = Field(
        default=100, ge=1, description="In all; also the size of the connection pool."
    )
    http_concurrency_per_host: int = Field(default=32, ge=1, description="To one host.")
    http_concurrency_per_account: int = Field(default=16, ge=1, description="Of one account.")
    http_concurrency_per_account_host: int = Field(
        default=8, ge=1, description="Of one account to one host."
    )
    http_slot_wait_seconds: float = Field(
        default=0.5, ge=0, description="How long a call waits for room before it is deferred."
    )
    http_defer_seconds: float = Field(
        default=5.0, gt=0, description="How much later a deferred call's execution is due again."
    )

    # Egress policy (SPEC §9): exceptions to the refusal of internal addresses.
    egress_allow: str = Field(
        default="",
        description="Comma-separated CIDRs or host names that tenant-controlled URLs may reach "
        "although they are internal (e.g. 127.0.0.0/8 in tests).",
    )

    # Webhook deliveries (SPEC §8).
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_concurrency: int = Field(default=64, ge=1, le=1000)
    webhook_batch_size: int = Field(default=200, ge=1, le=1000)
    webhook_max_attempts: int = Field(default=12, ge=1, le=50)
    webhook_retry_base_seconds: float = Field(default=5.0, ge=0)
    webhook_retry_max_seconds: float = Field(default=8 * 3600.0, ge=0)
    webhook_lease_seconds: float = Field(default=60.0, gt=0)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (cached; tests build their own ``Settings``)."""
    return Settings()
