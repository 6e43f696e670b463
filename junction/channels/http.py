"""What every adapter of an HTTP provider reads the same way: Retry-After, the head of a
refusal's body, and a body that may or may not be JSON."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, cast

import httpx

from junction import __version__

USER_AGENT = f"junction/{__version__}"
MAX_BODY_BYTES = 1024  # of a refusal's body: enough to say why, never the whole of it
MAX_REASON_CHARACTERS = 200  # of that body, quoted in the error stored on the message


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP date (RFC 9110);
    None when it is absent or unreadable (the dispatcher's backoff then decides)."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def retry_after(response: httpx.Response) -> float | None:
    """A response's Retry-After; a date is read against the response's own Date header when
    it has one, so the provider's clock need not agree with ours."""
    now = datetime.now(UTC)
    sent = response.headers.get("Date")
    if sent:
        try:
            now = parsedate_to_datetime(sent)
            now = now if now.tzinfo else now.replace(tzinfo=UTC)
        except (TypeError, ValueError):
            pass
    return parse_retry_after(response.headers.get("Retry-After"), now)


def json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:  # a proxy's HTML error page, an empty body
        return None


async def head_of_body(response: httpx.Response) -> str:
    """The start of a streamed response's body, read off the wire, then left unread."""
    kept = bytearray()
    # aiter_raw is an async generator: close it at once rather than when collected.
    chunks = cast(AsyncGenerator[bytes, None], response.aiter_raw())
    try:
        async with aclosing(chunks):
            async for chunk in chunks:
                kept += chunk[: MAX_BODY_BYTES - len(kept)]
                if len(kept) >= MAX_BODY_BYTES:
                    break
    except httpx.TransportError:
        pass  # the status is the answer; a body cut short only explains less
    return " ".join(kept.decode("utf-8", "replace").split())[:MAX_REASON_CHARACTERS]


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The body as a JSON object; an empty one for anything else (HTML, a list, nothing)."""
    parsed = json_or_none(response)
    return parsed if isinstance(parsed, dict) else {}


class LazyClient:
    """An adapter's one ``httpx.AsyncClient``, opened on first use and closed by ``aclose``:
    an adapter built only to check a callback's signature opens no connection, and many
    sends in flight share one pool."""

    def __init__(
        self, base_url: str, timeout: float, headers: dict[str, str] | None = None, **options: Any
    ) -> None:
        self._options: dict[str, Any] = {
            "base_url": base_url.rstrip("/"),
            "timeout": timeout,
            "limits": httpx.Limits(max_connections=100, max_keepalive_connections=100),
            "headers": {"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})},
            **options,
        }
        self._client: httpx.AsyncClient | None = None

    def get(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(**self._options)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
