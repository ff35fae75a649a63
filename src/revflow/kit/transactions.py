"""The request's transaction: the route commits once its services have flushed."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from revflow.errors import ConcurrentChange


async def commit(session: AsyncSession) -> None:
    """Commit the request's transaction; a constraint that fires here means a lost race."""
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise ConcurrentChange(
            "A concurrent request changed the same object first; read it again and retry"
        ) from exc
