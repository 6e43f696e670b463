"""Apple Push Notification service (APNs): push notifications to iOS, iPadOS and macOS
apps, over HTTP/2 with token-based (JWT) authentication.

Rules kept here:
- the workspace gives its Apple team id, the key id and the .p8 signing key (an EC P-256
  key in PEM) and the app's bundle id (the ``apns-topic``); Junction signs a provider
  token, an ES256 JWT ``{iss: team_id, iat}`` with header ``{alg: ES256, kid: key_id}``,
  and reuses it until it is ``TOKEN_REFRESH`` old (Apple refuses one older than an hour and
  throttles one made more often than every 20 minutes); a 403 ``ExpiredProviderToken``
  makes a new one at once (once, however many sends saw it) and the send is retried once;
- one ``httpx.AsyncClient(http2=True)`` per adapter: APNs speaks HTTP/2 only;
- each send is one ``POST {base_url}/3/device/{token}`` with ``apns-topic``,
  ``apns-push-type`` (``alert``; ``background`` when the content has no title nor body),
  ``apns-priority`` (10, or 5 for background pushes and ``priority: "normal"``),
  ``apns-expiration`` (from ``ttl_seconds``), ``apns-collapse-id`` (``collapse_id``) and
  ``apns-id``, a UUID derived from the message's idempotency key; the body is
  ``{"aps": {...}}`` plus the content's ``data`` keys (and ``url``, ``image``) at top level;
  the answer's ``apns-id`` header is the provider message id;
- APNs' errors (``{"reason": "..."}``) become Junction's: 410 (Unregistered) and 400
  BadDeviceToken / DeviceTokenNotForTopic mark the token ``invalid``; 429, 500, 503, a
  connection error and a timeout are retried, honouring Retry-After; any other answer fails
  for good, with Apple's reason;
- APNs deduplicates nothing on ``apns-id``: a timeout after the request went out may send
  twice.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import time
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import Field, field_validator

from junction import __version__
from junction.channels.base import (
    AddressInvalid,
    Capabilities,
    Channel,
    DeliveryError,
    OutboundMessage,
    PermanentFailure,
    ProviderConfig,
    RetryLater,
    SendResult,
)
from junction.channels.http import json_or_none, retry_after

HTTP_URL = r"^https?://\S+$"
PRODUCTION_URL = "https://api.push.apple.com"
SANDBOX_URL = "https://api.sandbox.push.apple.com"
TOKEN_REFRESH = 45 * 60  # seconds: a provider token this old is signed again (Apple: < 1 h)
MAX_PAYLOAD_BYTES = 4096  # APNs refuses a larger body (PayloadTooLarge)
MAX_TTL = 30 * 24 * 3600  # seconds: Apple stores an undelivered notification about a month
# Every apns-id Junction sends is derived from the idempotency key in this namespace.
APNS_ID_NAMESPACE = uuid.UUID("8f5b6f0e-4a8e-5f43-9a41-6a756e637469")
DEVICE_TOKEN = re.compile(r"^[0-9A-Fa-f]{16,200}$")

DEAD_TOKEN_REASONS = frozenset({"BadDeviceToken", "DeviceTokenNotForTopic", "Unregistered"})
RETRIED_STATUSES = frozenset({429, 500, 503})


class ApnsConfig(ProviderConfig):
    secret_fields: ClassVar[frozenset[str]] = frozenset({"private_key"})

    team_id: str = Field(pattern=r"^[A-Z0-9]{10}$", description="the Apple developer team id")
    key_id: str = Field(pattern=r"^[A-Z0-9]{10}$", description="the id of the APNs auth key")
    private_key: str = Field(min_length=1, description="the .p8 key file's content (PEM)")
    topic: str = Field(min_length=1, pattern=r"^[A-Za-z0-9.-]+$", description="the app's bundle id")
    base_url: str = Field(default=PRODUCTION_URL, pattern=HTTP_URL)
    ca_file: str | None = Field(default=None, description="a CA bundle to trust instead")
    timeout: float = Field(default=10.0, gt=0, le=60, description="seconds for each request")

    @field_validator("private_key")
    @classmethod
    def _an_ec_p256_private_key(cls, value: str) -> str:
        try:
            key = serialization.load_pem_private_key(value.encode(), password=None)
        except (ValueError, TypeError):
            raise ValueError("not a PEM private key without a passphrase") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("an APNs auth key (.p8) is an EC P-256 key") from None
        return value


class ApnsAdapter:
    name: ClassVar[str] = "apns"
    channels: ClassVar[frozenset[Channel]] = frozenset({Channel.PUSH})
    capabilities: ClassVar[Capabilities] = Capabilities(
        max_length=4000, rich_media=True, buttons=False
    )
    Config: ClassVar[type[ProviderConfig]] = ApnsConfig

    def __init__(self, config: ApnsConfig) -> None:
        self.config = config
        self._client: httpx.AsyncClient | None = None
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._issued_at = 0.0  # time.time() of the cached token's iat

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            verify: ssl.SSLContext | bool = True
            if self.config.ca_file:
                verify = ssl.create_default_context(cafile=self.config.ca_file)
            self._client = httpx.AsyncClient(
                http2=True,
                verify=verify,
                base_url=self.config.base_url.rstrip("/"),
                timeout=self.config.timeout,
                headers={"User-Agent": f"junction/{__version__}"},
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(self, message: OutboundMessage) -> SendResult:
        headers, body = build_request(message, self.config.topic)
        token = await self._provider_token()
        response = await self._post(message.to, token, headers, body)
        if _reason(response) == "ExpiredProviderToken":
            token = await self._provider_token(stale=token)
            response = await self._post(message.to, token, headers, body)
            if _reason(response) == "ExpiredProviderToken":
                raise PermanentFailure(
                    apns_error(response).reason
                    + "; APNs refused a fresh provider token: check this machine's clock"
                )
        if response.status_code == 200:
            return SendResult(
                provider_message_id=response.headers.get("apns-id") or headers["apns-id"]
            )
        raise apns_error(response)

    async def _post(
        self, device: str, token: str, headers: Mapping[str, str], body: bytes
    ) -> httpx.Response:
        try:
            return await self._http().post(
                f"/3/device/{device}",
                content=body,
                headers={**headers, "authorization": f"bearer {token}"},
            )
        except httpx.TimeoutException as error:
            raise RetryLater(
                f"APNs did not answer within {self.config.timeout:g} s ({type(error).__name__})"
            ) from None
        except httpx.TransportError as error:
            raise RetryLater(f"cannot reach APNs: {type(error).__name__}: {error}") from None

    # -- the provider token ------------------------------------------------------------

    async def _provider_token(self, stale: str | None = None) -> str:
        """The cached provider token unless it is ``TOKEN_REFRESH`` old or is ``stale``
        (APNs said it expired); concurrent sends that saw it expire sign one new token."""
        async with self._lock:
            now = time.time()
            cached = self._token
            if cached is not None and cached != stale and now - self._issued_at < TOKEN_REFRESH:
                return cached
            self._token = self.provider_token(int(now))
            self._issued_at = now
            return self._token

    def provider_token(self, now: int | None = None) -> str:
        """A newly signed provider token, issued at ``now`` (default: this second)."""
        issued = int(time.time()) if now is None else now
        return jwt.encode(
            {"iss": self.config.team_id, "iat": issued},
            self.config.private_key,
            algorithm="ES256",
            headers={"kid": self.config.key_id},
        )


def apns_id(message: OutboundMessage) -> str:
    """The ``apns-id`` of a message: the same for every attempt to send it."""
    return str(uuid.uuid5(APNS_ID_NAMESPACE, message.idempotency_key))


def _string(content: Mapping[str, Any], key: str) -> str | None:
    value = content.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise PermanentFailure(f"content.{key} of a push message must be a string")
    return value


def build_request(message: OutboundMessage, topic: str) -> tuple[dict[str, str], bytes]:
    """The headers and JSON body of one APNs request; PermanentFailure when the content
    cannot make one (APNs would only refuse it)."""
    content = message.content
    if not message.to or not DEVICE_TOKEN.match(message.to):
        raise AddressInvalid("an APNs device token is a string of hexadecimal digits")
    title, text = _string(content, "title"), _string(content, "body")
    image, url = _string(content, "image"), _string(content, "url")
    sound, thread = _string(content, "sound"), _string(content, "thread_id")
    collapse = _string(content, "collapse_id")
    badge = content.get("badge")
    if badge is not None and (isinstance(badge, bool) or not isinstance(badge, int) or badge < 0):
        raise PermanentFailure("content.badge must be a whole number, 0 or more")

    background = title is None and text is None
    aps: dict[str, Any] = {}
    if background:
        if badge is not None or sound is not None or image is not None:
            raise PermanentFailure(
                "content.badge, content.sound and content.image need a title or body: "
                "a push without one is a silent background push"
            )
        aps["content-available"] = 1
    else:
        alert: dict[str, str] = {}
        if title is not None:
            alert["title"] = title
        if text is not None:
            alert["body"] = text
        aps["alert"] = alert
        if badge is not None:
            aps["badge"] = badge
        if sound is not None:
            aps["sound"] = sound
        if image is not None:
            aps["mutable-content"] = 1  # the app's notification service extension loads it
    if thread is not None:
        aps["thread-id"] = thread

    payload: dict[str, Any] = {"aps": aps}
    data = content.get("data")
    if data is not None:
        if not isinstance(data, Mapping):
            raise PermanentFailure("content.data of a push message must be an object")
        for key, value in data.items():
            if not isinstance(key, str) or key == "aps":
                raise PermanentFailure(f"content.data.{key} is a key APNs reserves")
            payload[key] = value
    if url is not None:
        payload["url"] = url
    if image is not None:
        payload["image"] = image
    if background and len(payload) == 1:
        raise PermanentFailure("a push message needs content.title, content.body or content.data")
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    if len(body) > MAX_PAYLOAD_BYTES:
        raise PermanentFailure(
            f"the APNs payload is {len(body)} bytes; APNs takes at most {MAX_PAYLOAD_BYTES}"
        )

    priority = content.get("priority")
    if priority is not None and priority not in ("high", "normal"):
        raise PermanentFailure('content.priority must be "high" or "normal"')
    ttl = content.get("ttl_seconds")
    if ttl is not None and (
        isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= MAX_TTL
    ):
        raise PermanentFailure(f"content.ttl_seconds must be a whole number from 0 to {MAX_TTL}")
    if collapse is not None and len(collapse.encode()) > 64:
        raise PermanentFailure("content.collapse_id is at most 64 bytes")

    headers = {
        "apns-topic": topic,
        "apns-push-type": "background" if background else "alert",
        "apns-priority": "5" if background or priority == "normal" else "10",
        "apns-id": apns_id(message),
        "content-type": "application/json",
    }
    if ttl is not None:
        # An absolute expiry; 0: deliver now or never.
        headers["apns-expiration"] = str(int(time.time()) + ttl if ttl else 0)
    if collapse is not None:
        headers["apns-collapse-id"] = collapse
    return headers, body


def _reason(response: httpx.Response) -> str | None:
    body = json_or_none(response)
    reason = body.get("reason") if isinstance(body, dict) else None
    return reason if isinstance(reason, str) else None


def apns_error(response: httpx.Response) -> DeliveryError:
    """The delivery error of one APNs error answer (``{"reason": "..."}``)."""
    status = response.status_code
    code = _reason(response)
    reason = f"APNs {code or response.reason_phrase or 'error'} (HTTP {status})"
    if status == 410 or (status == 400 and code in DEAD_TOKEN_REASONS):
        return AddressInvalid(reason, "invalid")
    if status in RETRIED_STATUSES or status >= 500:
        return RetryLater(reason, retry_after(response))
    if code == "InvalidProviderToken":
        reason += "; check the team id, key id and key of this provider"
    elif code == "TopicDisallowed" or code == "BadTopic":
        reason += "; check that the key may send to this topic (bundle id)"
    return PermanentFailure(reason)
