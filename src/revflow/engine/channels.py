"""External calls: ``http_request`` steps, and email / SMS through SMTP or the HTTP channel.

At-least-once: each call carries an ``Idempotency-Key`` built from the execution and the step,
so a call repeated after a crash is recognisable downstream. Failures are retried with
exponential backoff (tenacity) up to ``max_attempts``.

``http_request`` URLs are the tenant's: they go through a client that obeys the egress policy
(``revflow.kit.egress``), and a refusal fails the step at once, without retries. The channels'
URLs and SMTP host are the operator's and are not restricted.
"""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import aiosmtplib
import httpx
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from revflow.config import Settings
from revflow.engine.interpreter import ExternalCall
from revflow.kit import tls
from revflow.kit.egress import EgressPolicy, EgressRefused, guarded_client


class RetryableError(Exception):
    """A failure worth retrying (network error, 5xx, 408, 429)."""


class PermanentError(Exception):
    """A failure that retrying will not fix (other 4xx, bad configuration)."""


def idempotency_key(call: ExternalCall) -> str:
    return f"{call.execution_id}:{call.step_id}"


class ExternalSender:
    def __init__(
        self,
        settings: Settings,
        client: httpx.AsyncClient | None = None,
        *,
        tenant_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.settings = settings
        # The operator's targets (the HTTP channel).
        self.client = client or httpx.AsyncClient(
            timeout=settings.http_timeout_seconds, verify=tls.client_context(trust_env=True)
        )
        # The tenants' targets (http_request steps): judged by the egress policy on connect,
        # redirects followed only through it.
        # Its pool holds as many connections as the bulkhead admits calls (the runner's), so
        # an admitted call never queues for a connection behind another account's.
        self.tenant_client = tenant_client or guarded_client(
            EgressPolicy.parse(settings.egress_allow),
            timeout=settings.http_timeout_seconds,
            follow_redirects=True,
            limits=httpx.Limits(
                max_connections=settings.http_concurrency,
                max_keepalive_connections=min(20, settings.http_concurrency),
            ),
        )

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.tenant_client.aclose()

    async def perform(self, call: ExternalCall) -> tuple[str | None, dict[str, Any]]:
        """Run the call with retries; answers (error or None, detail for the history)."""
        attempts = int(call.request.get("max_attempts") or self.settings.max_attempts)
        detail: dict[str, Any] = {"attempts": 0}
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(attempts),
                wait=wait_exponential(multiplier=self.settings.retry_base_seconds, max=300),
                retry=retry_if_exception_type(RetryableError),
                reraise=False,
            ):
                with attempt:
                    detail["attempts"] = attempt.retry_state.attempt_number
                    detail.update(await self._once(call))
        except RetryError as exc:
            return f"{exc.last_attempt.exception()} (after {detail['attempts']} attempts)", detail
        except PermanentError as exc:
            return str(exc), detail
        except Exception as exc:
            # Any other failure of this one call (e.g. httpx.InvalidURL for a URL that contact
            # data made invalid) fails its execution; raising would lose the whole batch's
            # results and repeat its calls after every lease expiry.
            return f"{type(exc).__name__}: {exc}", detail
        return None, detail

    async def _once(self, call: ExternalCall) -> dict[str, Any]:
        if call.kind == "http_request":
            request = call.request
            return await self._http(
                request["method"],
                request["url"],
                request["body"],
                request["headers"],
                call,
                client=self.tenant_client,
            )
        if call.kind == "email" and self.settings.email_channel == "smtp":
            return await self._smtp(call)
        if self.settings.http_channel_url is None:
            raise PermanentError("REVFLOW_HTTP_CHANNEL_URL is not set")
        return await self._http(
            "POST",
            self.settings.http_channel_url,
            {k: _jsonable(v) for k, v in call.request.items()},
            {},
            call,
        )

    async def _http(
        self,
        method: str,
        url: str,
        body: Any,
        headers: dict[str, str],
        call: ExternalCall,
        *,
        client: httpx.AsyncClient | None = None,
    ) -> dict[str, Any]:
        try:
            response = await (client or self.client).request(
                method,
                url,
                json=body if method != "GET" else None,
                headers={**headers, "Idempotency-Key": idempotency_key(call)},
            )
        except EgressRefused as exc:
            raise PermanentError(f"{url}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise RetryableError(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise RetryableError(f"HTTP {response.status_code} from {url}")
        if response.status_code >= 400:
            raise PermanentError(f"HTTP {response.status_code} from {url}")
        return {"status_code": response.status_code}

    async def _smtp(self, call: ExternalCall) -> dict[str, Any]:
        s = self.settings
        message = EmailMessage()
        message["From"] = s.smtp_sender
        message["To"] = call.request["to"]
        message["Subject"] = call.request.get("subject") or ""
        message["Message-ID"] = f"<{idempotency_key(call).replace(':', '.')}@revflow>"
        message["Idempotency-Key"] = idempotency_key(call)
        message.set_content(call.request.get("body") or "")
        try:
            await aiosmtplib.send(
                message,
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_user,
                password=s.smtp_password,
                use_tls=s.smtp_tls == "tls",
                start_tls=s.smtp_tls == "starttls",
                timeout=s.http_timeout_seconds,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            code = smtp_reply_code(exc)
            if code is not None and 500 <= code < 600:
                # A permanent refusal (RFC 5321 5yz): the same message will be refused again.
                raise PermanentError(f"SMTP refused it permanently: {exc}") from exc
            raise RetryableError(f"SMTP: {exc}") from exc
        return {"channel": "smtp"}


def smtp_reply_code(exc: BaseException) -> int | None:
    """The server's reply code in an SMTP failure (the recipients' when all were refused);
    None for a failure without one (connection refused, timeout)."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        return min(codes) if codes else None
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return int(exc.code)
    return None


def _jsonable(value: Any) -> Any:
    return str(value) if not isinstance(value, str | int | float | bool | type(None)) else value
