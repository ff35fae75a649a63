"""Settings, read from ``REVFLOW_*`` environment variables and an optional ``.env`` file."""

from __future__ import annotations

from functools import lru_cache

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
    max_versions: int = Field(default=1000, ge=1)
    max_steps: int = Field(default=500, ge=1)
    max_definition_bytes: int = Field(default=1_000_000, ge=1)
    max_request_bytes: int = Field(default=4_000_000, ge=1)
    db_pool_size: int = Field(default=10, ge=1)
    sqlite_busy_timeout_ms: int = Field(default=30_000, ge=0)
    log_level: str = "INFO"
    log_json: bool = True
    idempotency_ttl_hours: int = Field(default=24, ge=1)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (cached; tests build their own ``Settings``)."""
    return Settings()
