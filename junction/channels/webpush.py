"""The web push provider: browser notifications through the browser's push service.

Standards kept here:
- RFC 8030 (the push protocol): one ``POST`` of the encrypted payload to the subscription's
  endpoint URL, with ``TTL`` (seconds the push service keeps it for an offline browser),
  ``Urgency`` (very-low, low, normal, high) and ``Topic``;
- RFC 8291 (message encryption): the payload is encrypted for the subscription's ``p256dh``
  public key and ``auth`` secret, content-coded ``aes128gcm`` (RFC 8188), one record;
- RFC 8292 (VAPID): ``Authorization: vapid t=<JWT>,k=<public key>``, the JWT signed ES256
  with the workspace's VAPID private key, ``aud`` the endpoint's origin, ``exp`` twelve
  hours ahead (at most 24 are allowed), ``sub`` the configured contact (mailto: or https:).

The contract with the send path. A subscription is stored as an address of kind
``web_push``: its value is the endpoint URL, its details ``{"platform": "web", "keys":
{"p256dh", "auth"}}``. The adapter receives ``OutboundMessage(to=<endpoint>, content=...)``
and the keys must travel with the message, in ``content["subscription_keys"] = {"p256dh":
..., "auth": ...}`` (base64url, as the browser's ``PushSubscription.toJSON()`` gives them).
The rest of the content is the notification::

    {"title": str, "body": str, "url"?: str, "icon"?: str, "data"?: any JSON}

and the payload the browser's service worker receives (``event.data.json()``) is exactly
that JSON object, those keys only (the subscription keys are never sent). It must fit one
4,096-byte push message: at most ``MAX_PAYLOAD_BYTES`` of minified JSON.

Outcomes: any 2xx (201 Created, 202 Accepted) is sent, the provider message id being the
``Location`` header when there is one; 404 and 410 mean the subscription is gone
(``AddressInvalid``: the address is deactivated); 408, 429, 5xx, timeouts and connection
failures are passing (``RetryLater``, honouring Retry-After); 413 and every other status
fail for good (``PermanentFailure``). Redirects are not followed.

Keys: ``generate_vapid_keys()`` makes a workspace's pair; the private key (PEM) goes in the
provider configuration (``vapid_private_key``, secret), the public key (base64url) is the
``applicationServerKey`` the site's JavaScript passes to ``pushManager.subscribe()``.
``vapid_public_key()`` gives it back from a configured private key. Changing the key pair
orphans every existing subscription (push services refuse them with 401/403).

One HTTP client per adapter, closed by ``aclose()``; the whole attempt must finish within
``timeout``. Only https endpoints are called, unless ``allow_http`` is set (a local test
push service; real push services are all https).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import re
import time
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import http_ece
import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid.jwt import sign as sign_jwt
from pydantic import Field, field_validator

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
from junction.channels.http import head_of_body, retry_after

# RFC 8030 §7.2: push services must accept 4,096 bytes of payload; aes128gcm adds a header
# (16 salt + 4 record size + 1 + 65 key id), a 16-byte tag and a 1-byte padding delimiter.
MAX_MESSAGE_BYTES = 4096
MAX_PAYLOAD_BYTES = MAX_MESSAGE_BYTES - 86 - 16 - 1  # 3,993 bytes of JSON
JWT_LIFETIME = 12 * 3600  # seconds; RFC 8292 allows at most 24 hours
JWT_RENEW_BEFORE = 3600  # a cached token is replaced once it has less than this left
PAYLOAD_KEYS = ("title", "body", "url", "icon", "data")
MAILTO = re.compile(r"mailto:[^@\s]+@[^@\s]+")

Urgency = Literal["very-low", "low", "normal", "high"]


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def load_vapid_key(value: str) -> ec.EllipticCurvePrivateKey:
    """A VAPID private key from PEM, or base64url of the raw 32-byte scalar (what the
    ``web-push`` npm tool prints) or of DER. ``ValueError`` (never quoting it) otherwise."""
    text = value.strip()
    key: object
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
        else:
            raw = _b64url_decode("".join(text.split()).replace("+", "-").replace("/", "_"))
            if len(raw) == 32:
                key = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
            else:
                key = serialization.load_der_private_key(raw, password=None)
    except (ValueError, TypeError, binascii.Error):
        raise ValueError(
            "must be a P-256 private key: PEM, or base64url of the raw 32-byte key"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("must be an elliptic-curve key on P-256 (prime256v1)")
    return key


def _public_b64url(key: ec.EllipticCurvePrivateKey) -> str:
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return _b64url(point)


def generate_vapid_keys() -> tuple[str, str]:
    """A new VAPID key pair: (private key as PEM, public key as base64url). The public key
    is the site's ``applicationServerKey``; the private key goes in the configuration."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    return pem, _public_b64url(key)


def vapid_public_key(private_key: str) -> str:
    """The base64url public key (``applicationServerKey``) of a configured private key."""
    return _public_b64url(load_vapid_key(private_key))


class WebPushConfig(ProviderConfig):
    secret_fields: ClassVar[frozenset[str]] = frozenset({"vapid_private_key"})

    vapid_private_key: str
    # Who the push service may contact about this sender: mailto: or an https URL.
    vapid_subject: str = Field(max_length=255)
    ttl: int = Field(default=86_400, ge=0, le=28 * 86_400)  # seconds kept for offline browsers
    urgency: Urgency = "normal"
    timeout: float = Field(default=15.0, gt=0, le=30)
    # Send to http:// endpoints too: only for a local test push service.
    allow_http: bool = False

    @field_validator("vapid_private_key")
    @classmethod
    def _key(cls, value: str) -> str:
        load_vapid_key(value)  # its ValueError never echoes the key
        return value

    @field_validator("vapid_subject")
    @classmethod
    def _subject(cls, value: str) -> str:
        if MAILTO.fullmatch(value):
            return value
        if value.startswith("https://"):
            try:
                url = httpx.URL(value)
            except httpx.InvalidURL:
                url = None
            if url is not None and url.host:
                return value
        raise ValueError(
            "must be a mailto: address or an https:// URL, e.g. mailto:ops@example.com"
        )


def topic(message: OutboundMessage) -> str:
    """The ``Topic``: the same on every attempt of a message, so a retry replaces an earlier
    attempt still waiting in the push service (RFC 8030 §5.4: at most 32 base64url)."""
    key = f"{message.workspace_id}:{message.idempotency_key}".encode()
    return _b64url(hashlib.sha256(key).digest()[:24])


def _endpoint(to: str, allow_http: bool) -> httpx.URL:
    try:
        url = httpx.URL(to)
    except httpx.InvalidURL as error:
        raise AddressInvalid(f"the push endpoint is not a valid URL: {error}") from None
    schemes = ("https", "http") if allow_http else ("https",)
    if url.scheme not in schemes or not url.host:
        raise AddressInvalid("a push endpoint is an https:// URL")
    return url


def _subscription_keys(content: Mapping[str, Any]) -> tuple[bytes, bytes]:
    keys = content.get("subscription_keys")
    # Missing keys are the send path's fault, not the subscription's: never deactivate it.
    if not isinstance(keys, Mapping) or not {"p256dh", "auth"} <= keys.keys():
        raise PermanentFailure("content.subscription_keys (p256dh and auth) is missing")
    try:
        p256dh = _b64url_decode(str(keys["p256dh"]))
        auth = _b64url_decode(str(keys["auth"]))
    except (ValueError, binascii.Error):
        raise AddressInvalid("the subscription's keys are not base64url p256dh and auth") from None
    if len(p256dh) != 65 or p256dh[0] != 4 or len(auth) != 16:
        raise AddressInvalid("the subscription's keys are not a P-256 key and 16-byte secret")
    return p256dh, auth


def _payload(content: Mapping[str, Any]) -> bytes:
    for name in ("title", "body"):
        if not isinstance(content.get(name), str):
            raise PermanentFailure(f"a web push needs content.{name}, a string")
    for name in ("url", "icon"):
        if name in content and not isinstance(content[name], str):
            raise PermanentFailure(f"content.{name} must be a string")
    payload = {name: content[name] for name in PAYLOAD_KEYS if name in content}
    try:
        text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise PermanentFailure(f"content.data is not JSON: {error}") from None
    data = text.encode()
    if len(data) > MAX_PAYLOAD_BYTES:
        raise PermanentFailure(
            f"the notification is {len(data)} bytes of JSON; a push carries at most "
            f"{MAX_PAYLOAD_BYTES}"
        )
    return data


def encrypt(payload: bytes, p256dh: bytes, auth: bytes) -> bytes:
    """The payload encrypted for one subscription (RFC 8291, aes128gcm, one record)."""
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    encrypted: bytes = http_ece.encrypt(
        payload,
        private_key=ephemeral,
        dh=p256dh,
        auth_secret=auth,
        version="aes128gcm",
    )
    return encrypted


class WebPushAdapter:
    name: ClassVar[str] = "webpush"
    channels: ClassVar[frozenset[Channel]] = frozenset({Channel.WEB_PUSH})
    # Not idempotent: a push service keeps no memory of delivered messages. (The Topic only
    # makes a retry replace an attempt still pending in the push service.)
    capabilities: ClassVar[Capabilities] = Capabilities(opt_in_required=True)
    Config: ClassVar[type[ProviderConfig]] = WebPushConfig

    def __init__(self, config: WebPushConfig) -> None:
        self.config = config
        self._key = load_vapid_key(config.vapid_private_key)
        self._public_key = _public_b64url(self._key)
        self._tokens: dict[str, tuple[str, int]] = {}  # audience → (JWT, its exp)
        self._client = httpx.AsyncClient(
            timeout=config.timeout,
            follow_redirects=False,
            headers={"user-agent": f"Junction/{__version__} (web push)"},
        )

    @property
    def public_key(self) -> str:
        return self._public_key

    def _authorization(self, url: httpx.URL) -> str:
        audience = f"{url.scheme}://{url.netloc.decode('ascii')}"
        now = int(time.time())
        cached = self._tokens.get(audience)
        if cached is None or cached[1] - now < JWT_RENEW_BEFORE:
            exp = now + JWT_LIFETIME
            claims = {"aud": audience, "exp": exp, "sub": self.config.vapid_subject}
            cached = (sign_jwt(claims, self._key), exp)
            self._tokens[audience] = cached
        return f"vapid t={cached[0]},k={self._public_key}"

    async def send(self, message: OutboundMessage) -> SendResult:
        url = _endpoint(message.to, self.config.allow_http)
        p256dh, auth = _subscription_keys(message.content)
        body = encrypt(_payload(message.content), p256dh, auth)
        headers = {
            "ttl": str(self.config.ttl),
            "urgency": self.config.urgency,
            "topic": topic(message),
            "content-encoding": "aes128gcm",
            "content-type": "application/octet-stream",
            "authorization": self._authorization(url),
        }
        try:
            # httpx's timeout bounds each read; this bounds the whole attempt.
            async with (
                asyncio.timeout(self.config.timeout),
                self._client.stream("POST", url, content=body, headers=headers) as response,
            ):
                return await _outcome(response)
        except (TimeoutError, httpx.TimeoutException):
            raise RetryLater(f"no answer within {self.config.timeout:g} s") from None
        except httpx.LocalProtocolError as error:
            raise PermanentFailure(
                f"the request is not valid HTTP ({type(error).__name__})"
            ) from None
        except httpx.TransportError as error:
            detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            raise RetryLater(f"could not deliver: {detail}") from None

    async def aclose(self) -> None:
        await self._client.aclose()


async def _outcome(response: httpx.Response) -> SendResult:
    status = response.status_code
    if 200 <= status < 300:
        location = response.headers.get("location")
        return SendResult(provider_message_id=location or None, details={"status": status})
    text = await head_of_body(response)
    said = f"{status} {response.reason_phrase}" + (f": {text}" if text else "")
    if status in (404, 410):
        raise AddressInvalid(f"{said} (the subscription has expired or was withdrawn)")
    if status in (408, 429) or 500 <= status < 600:
        raise RetryLater(said, retry_after(response))
    if status == 413:
        raise PermanentFailure(f"{said} (the push service refused the payload's size)")
    if status in (401, 403):
        raise PermanentFailure(
            f"{said} (the push service refused the VAPID signature: was the subscription "
            "made with another applicationServerKey?)"
        )
    raise PermanentFailure(said)
