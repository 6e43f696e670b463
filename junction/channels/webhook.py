"""The webhook provider: POSTs each message to its URL, signed per Standard Webhooks.

Rules kept here (https://www.standardwebhooks.com):
- the body is the spec's envelope, minified JSON: ``{"type", "timestamp", "data"}``; the
  type is ``content["type"]`` when the message gives one, else the configured ``event_type``;
- ``webhook-id`` is derived from the workspace and the message's idempotency key, so it is
  the same on every attempt (receivers deduplicate on it; this is what makes the adapter
  idempotent), differs between workspaces, and is not chosen by the caller (the spec asks
  so: a caller-chosen id with a ``.`` would blur the boundaries of the signed content);
- ``webhook-timestamp`` is the attempt's time from the wall clock, never an injected clock:
  receivers reject a timestamp more than a few minutes from their own clock;
- ``webhook-signature`` is ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, made by
  the spec's reference library, over exactly the bytes sent;
- 2xx is sent; 410 Gone means the endpoint wants no more (``AddressInvalid``); 408, 429 and
  5xx are passing (``RetryLater``, honouring Retry-After in seconds or as an HTTP date), as
  are timeouts and connection failures; redirects are not followed (the spec: update the
  URL instead) and fail, as does every other status;
- only http(s) URLs are called; at most ``MAX_BODY_BYTES`` of a refusal are read, none of a
  3xx, and of a 2xx at most ``MAX_RESPONSE_BYTES`` of a JSON answer (kept as the send's
  ``response``, which a journey's later steps can use), so a hostile endpoint cannot make us
  buffer megabytes;
- one HTTP client per adapter, closed by ``aclose()``; the whole attempt, not each read,
  must finish within ``timeout``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import ClassVar

import httpx
from pydantic import Field, field_validator
from standardwebhooks import Webhook

from junction import __version__
from junction.channels.base import (
    AddressInvalid,
    Capabilities,
    Channel,
    OutboundMessage,
    PermanentFailure,
    ProviderConfig,
    RetryLater,
    SendResult,
)
from junction.channels.http import MAX_REASON_CHARACTERS, head_of_body, retry_after

DEFAULT_EVENT_TYPE = "message.created"
SECRET_PREFIX = "whsec_"
# The spec: a symmetric secret is random, at least 24 bytes and at most 64 (512 bits).
SECRET_BYTES = (24, 64)
# The spec: hierarchical, full-stop delimited identifiers of [a-zA-Z0-9_].
EVENT_TYPE = re.compile(r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*")
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 token
# Visible ASCII (httpx sends values as ASCII), with no space or tab at either end (RFC 9110).
HEADER_VALUE = re.compile(r"(?:[\x21-\x7e](?:[\t\x20-\x7e]*[\x21-\x7e])?)?")
# Set by the adapter: a configured header must not replace the signature, or the framing.
RESERVED_HEADERS = frozenset(
    {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "content-type",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "accept-encoding",
        "host",
        "connection",
    }
)


class WebhookConfig(ProviderConfig):
    secret_fields: ClassVar[frozenset[str]] = frozenset({"secret", "headers"})

    secret: str  # whsec_ followed by the base64 of the key, as the spec serialises it
    # Seconds for the whole attempt. The spec recommends 15 to 30; the dispatcher abandons
    # any send after 30 s by default, so a longer timeout would never apply.
    timeout: float = Field(default=15.0, gt=0, le=30)
    event_type: str = Field(default=DEFAULT_EVENT_TYPE, max_length=255)
    # Static headers added to every request, e.g. the key of a gateway in front of the
    # receiver. Secret: they often carry credentials.
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("secret")
    @classmethod
    def _standard_secret(cls, value: str) -> str:
        # Never echo the value: a validation message may be shown or logged.
        if not value.startswith(SECRET_PREFIX):
            raise ValueError("must be a Standard Webhooks secret: whsec_ then base64")
        encoded = value.removeprefix(SECRET_PREFIX)
        try:  # unpadded base64 is accepted, as the reference libraries accept it
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except binascii.Error:
            raise ValueError("after whsec_ must come standard base64") from None
        low, high = SECRET_BYTES
        if not low <= len(key) <= high:
            raise ValueError(
                f"decodes to {len(key)} bytes; the spec asks for {low} to {high} random bytes"
            )
        return value

    @field_validator("event_type")
    @classmethod
    def _event_type(cls, value: str) -> str:
        if not EVENT_TYPE.fullmatch(value):
            raise ValueError("use dot-separated names of letters, digits and _, e.g. order.paid")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid header name")
            if name.lower() in RESERVED_HEADERS:
                raise ValueError(f"{name} is set by Junction and cannot be configured")
            if not HEADER_VALUE.fullmatch(text):
                raise ValueError(
                    f"the value of {name} must be printable ASCII on one line, "
                    "with no space at either end"
                )
        return value


def webhook_id(message: OutboundMessage) -> str:
    """The message's ``webhook-id``: the same on every attempt, unique across workspaces."""
    key = f"{message.workspace_id}:{message.idempotency_key}".encode()
    return "msg_" + hashlib.sha256(key).hexdigest()[:32]


def _checked_url(to: str) -> httpx.URL:
    try:
        url = httpx.URL(to)
    except httpx.InvalidURL as error:
        raise PermanentFailure(f"the webhook URL is not valid: {error}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise PermanentFailure("a webhook is only sent to an http(s) URL")
    return url


def _envelope(message: OutboundMessage, default_type: str, now: datetime) -> bytes:
    data = message.content.get("data")
    if not isinstance(data, Mapping):
        raise PermanentFailure("a webhook sends a JSON object in content.data")
    event_type = message.content.get("type", default_type)
    if (
        not isinstance(event_type, str)
        or len(event_type) > 255
        or not EVENT_TYPE.fullmatch(event_type)
    ):
        raise PermanentFailure("content.type must be dot-separated names of letters, digits, _")
    envelope = {
        "type": event_type,
        "timestamp": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "data": data,
    }
    try:  # minified, as the spec recommends; the bytes signed are the bytes sent
        text = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise PermanentFailure(f"content.data is not JSON: {error}") from None
    return text.encode()


MAX_RESPONSE_BYTES = 64 * 1024


async def _answer(response: httpx.Response) -> object | None:
    """A 2xx's JSON body, when it is JSON and small; else None."""
    if "json" not in response.headers.get("content-type", ""):
        return None
    read = b""
    async for chunk in response.aiter_bytes():
        read += chunk
        if len(read) > MAX_RESPONSE_BYTES:
            return None
    try:
        parsed: object = json.loads(read)
    except ValueError:
        return None
    return parsed


async def _outcome(response: httpx.Response, sent_id: str) -> SendResult:
    status = response.status_code
    if 200 <= status < 300:
        details: dict[str, object] = {"status": status}
        answer = await _answer(response)
        if answer is not None:
            details["response"] = answer
        return SendResult(provider_message_id=sent_id, details=details)
    if 300 <= status < 400:
        where = response.headers.get("location", "nowhere")[:MAX_REASON_CHARACTERS]
        raise PermanentFailure(
            f"{status} {response.reason_phrase}: redirects to {where} are not followed; "
            "send to the final URL"
        )
    head = await head_of_body(response)
    said = f"{status} {response.reason_phrase}" + (f": {head}" if head else "")
    if status == 410:
        raise AddressInvalid(f"{said} (the endpoint wants no more webhooks)", status="invalid")
    if status in (408, 429) or 500 <= status < 600:
        raise RetryLater(said, retry_after(response))
    raise PermanentFailure(said)


class WebhookAdapter:
    name: ClassVar[str] = "webhook"
    channels: ClassVar[frozenset[Channel]] = frozenset({Channel.WEBHOOK})
    # Idempotent: a resend after a crash carries the same webhook-id, which receivers
    # deduplicate on.
    capabilities: ClassVar[Capabilities] = Capabilities(idempotent=True)
    Config: ClassVar[type[ProviderConfig]] = WebhookConfig

    def __init__(self, config: WebhookConfig) -> None:
        self.config = config
        self._signer = Webhook(config.secret)
        self._client = httpx.AsyncClient(
            timeout=config.timeout,
            follow_redirects=False,
            headers={"user-agent": f"Junction/{__version__} (webhooks)"},
        )

    async def send(self, message: OutboundMessage) -> SendResult:
        url = _checked_url(message.to)
        now = datetime.now(UTC)  # the wall clock: see the module's rules
        body = _envelope(message, self.config.event_type, now)
        sent_id = webhook_id(message)
        timestamp = int(now.timestamp())
        signature = self._signer.sign(
            sent_id, datetime.fromtimestamp(timestamp, UTC), body.decode()
        )
        headers = {
            **self.config.headers,
            "content-type": "application/json",
            # We read a refusal's first bytes off the wire, undecoded: ask for plain text.
            "accept-encoding": "identity",
            "webhook-id": sent_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature,
        }
        try:
            # httpx's timeout bounds each read; this bounds the attempt, so an endpoint
            # trickling its answer cannot hold a send for longer.
            async with (
                asyncio.timeout(self.config.timeout),
                self._client.stream("POST", url, content=body, headers=headers) as response,
            ):
                return await _outcome(response, sent_id)
        except (TimeoutError, httpx.TimeoutException):
            raise RetryLater(f"no answer within {self.config.timeout:g} s") from None
        except httpx.LocalProtocolError as error:  # our request breaks HTTP: so would a retry
            # Named only: its text may quote a configured header, which may be a credential.
            raise PermanentFailure(
                f"the request is not valid HTTP ({type(error).__name__})"
            ) from None
        except httpx.TransportError as error:  # refused, reset, DNS, TLS, malformed answer
            detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            raise RetryLater(f"could not deliver: {detail}") from None

    async def aclose(self) -> None:
        await self._client.aclose()
