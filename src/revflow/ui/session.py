"""Console sessions: a signed cookie naming an API key, and the CSRF token of its forms.

The cookie holds the key's id, an expiry and a CSRF secret — never the clear key. Every page
request reads the key again, so revoking a key ends its sessions at once.
"""

from __future__ import annotations

import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from revflow.auth.service import Principal
from revflow.config import Settings
from revflow.logging import get_logger
from revflow.models import ApiKey

log = get_logger("revflow.ui")

COOKIE = "revflow_session"
SIGN_IN_COOKIE = "revflow_sign_in"
SESSION_SECONDS = 12 * 3600
SIGN_IN_SECONDS = 3600


def secret_key(settings: Settings) -> str:
    """``REVFLOW_SECRET_KEY``; else, for an embedded SQLite file, a key generated once and kept
    in ``<database>.secret-key`` (mode 0600); else a key of this process only."""
    if settings.secret_key:
        return settings.secret_key
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(f"{url.database}.secret-key")
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            key = secrets.token_urlsafe(48)
            try:
                with path.open("x") as file:  # a concurrent first start keeps the first key
                    path.chmod(0o600)
                    file.write(key)
            except FileExistsError:
                return path.read_text().strip()
            return key
    log.warning(
        "ui_secret_key_ephemeral",
        detail="REVFLOW_SECRET_KEY is unset: console sessions end when this process stops "
        "and do not reach other processes",
    )
    return secrets.token_urlsafe(48)


@dataclass(frozen=True)
class Session:
    key_id: uuid.UUID
    csrf: str
    expires: int


class Signer:
    """Signs and reads the session and sign-in cookies."""

    def __init__(self, key: str) -> None:
        self._session = URLSafeTimedSerializer(key, salt="revflow.ui.session")
        self._sign_in = URLSafeTimedSerializer(key, salt="revflow.ui.sign-in")

    def new_session(self, key_id: uuid.UUID) -> tuple[Session, str]:
        session = Session(key_id, secrets.token_urlsafe(32), int(time.time()) + SESSION_SECONDS)
        cookie = self._session.dumps(
            {"k": str(session.key_id), "c": session.csrf, "e": session.expires}
        )
        return session, cookie

    def read_session(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        try:
            data = self._session.loads(cookie, max_age=SESSION_SECONDS)
            session = Session(uuid.UUID(data["k"]), str(data["c"]), int(data["e"]))
        except (BadSignature, KeyError, TypeError, ValueError):
            return None
        return session if session.expires > time.time() else None

    def new_sign_in(self) -> tuple[str, str]:
        """(cookie, form token) of the sign-in form: the token must match the cookie."""
        nonce = secrets.token_urlsafe(24)
        return self._sign_in.dumps(nonce), nonce

    def check_sign_in(self, cookie: str | None, token: str) -> bool:
        if not cookie or not token:
            return False
        try:
            nonce = self._sign_in.loads(cookie, max_age=SIGN_IN_SECONDS)
        except BadSignature:
            return False
        return isinstance(nonce, str) and hmac.compare_digest(nonce, token)


def csrf_matches(session: Session, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(session.csrf, token or "")


async def principal_of(db_session: AsyncSession, session: Session) -> Principal | None:
    """The principal of the session's key, if the key still exists and is not revoked."""
    row = (
        await db_session.execute(
            select(ApiKey.account_id, ApiKey.user, ApiKey.role).where(
                ApiKey.id == session.key_id, ApiKey.revoked_at.is_(None)
            )
        )
    ).first()
    if row is None:
        return None
    return Principal(account_id=row.account_id, key_id=session.key_id, user=row.user, role=row.role)
