"""Bodies of release actions."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from revflow.migrations.schemas import MigrationOptions
from revflow.workflows.schemas import Reason


class RollbackMigrate(MigrationOptions):
    """A migration started with the rollback: ``from_version`` is the version rolled back from."""


class RollbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason
    migrate: RollbackMigrate | None = None
