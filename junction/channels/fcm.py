"""Firebase Cloud Messaging (HTTP v1): push notifications to Android, iOS and web devices.

Rules kept here:
- the workspace gives its service account (the JSON key file Google hands out, as an
  object); Junction signs a JWT assertion with its private key (RS256: iss=client_email,
  scope=firebase.messaging, aud=token_uri, exp=iat+3600) and trades it at ``token_uri`` for
  an OAuth2 access token;
- the access token is cached until 60 s before it expires; one ``asyncio.Lock`` makes
  concurrent sends wait for a single fetch rather than each fetching one; a 401 from FCM
  drops the cached token (once, however many sends saw it) and the send is retried once;
- each send is one ``POST {base_url}/v1/projects/{project_id}/messages:send``: the
  notification (title, body, image), data (strings only), the deep link (in ``data.url``,
  and as the web-push click link when it is HTTPS), Android priority and TTL (mirrored to
  the APNs and web-push headers); the answer's ``name`` is the provider message id;
- FCM's errors become Junction's by FcmError code first: UNREGISTERED and
  SENDER_ID_MISMATCH mark the token ``invalid``; INVALID_ARGUMENT marks it ``invalid`` only
  when a BadRequest field violation names ``message.token`` (any other INVALID_ARGUMENT is a
  payload Junction built wrong, a PermanentFailure); QUOTA_EXCEEDED / 429, UNAVAILABLE /
  503, INTERNAL / 500 (any 5xx), a connection error and a timeout are retried, honouring
  Retry-After; THIRD_PARTY_AUTH_ERROR (APNs or web-push credentials) and any other 4xx fail
  for good;
- FCM takes no idempotency key: a timeout after the request went out may send twice.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import BaseModel, ConfigDict, Field, field_validator

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
from junction.channels.http import LazyClient, json_or_none, retry_after

HTTP_URL = r"^https?://\S+$"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
ASSERTION_LIFETIME = 3600  # seconds: Google's maximum
EXPIRY_MARGIN = 60.0  # seconds: a token this close to expiry is fetched again
MAX_TTL = 28 * 24 * 3600  # FCM keeps a message at most four weeks

FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
DEAD_TOKEN_ERRORS = frozenset({"UNREGISTERED", "SENDER_ID_MISMATCH"})
RETRIED_ERRORS = frozenset({"QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL"})
# Data keys FCM refuses (and any key starting "google." or "gcm.").
RESERVED_DATA_KEYS = frozenset({"from", "notification", "message_type", "collapse_key"})


class ServiceAccount(BaseModel):
    """The fields of a Google service-account key file that Junction uses; the others
    (private_key_id aside, sent as the JWT's ``kid``) are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["service_account"]
    project_id: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9:.-]*$")
    private_key: str = Field(min_length=1, description="PEM, as in the key file")
    private_key_id: str | None = None
    client_email: str = Field(min_length=3, pattern=r"^\S+@\S+$")
    token_uri: str = Field(default=GOOGLE_TOKEN_URI, pattern=HTTP_URL)

    @field_validator("private_key")
    @classmethod
    def _an_rsa_private_key(cls, value: str) -> str:
        try:
            key = serialization.load_pem_private_key(value.encode(), password=None)
        except (ValueError, TypeError):
            raise ValueError("not a PEM private key without a passphrase") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("a service account's key is RSA") from None
        return value


class FcmConfig(ProviderConfig):
    secret_fields: ClassVar[frozenset[str]] = frozenset({"service_account"})

    service_account: ServiceAccount = Field(
        description="the service account's JSON key file, as an object"
    )
    base_url: str = Field(default="https://fcm.googleapis.com", pattern=HTTP_URL)
    token_uri: str | None = Field(
        default=None, pattern=HTTP_URL, description="overrides the service account's token_uri"
    )
    timeout: float = Field(default=10.0, gt=0, le=60, description="seconds for each request")


class FcmAdapter:
    name: ClassVar[str] = "fcm"
    channels: ClassVar[frozenset[Channel]] = frozenset({Channel.PUSH})
    capabilities: ClassVar[Capabilities] = Capabilities(
        max_length=4000, rich_media=True, buttons=False
    )
    Config: ClassVar[type[ProviderConfig]] = FcmConfig

    def __init__(self, config: FcmConfig) -> None:
        self.config = config
        account = config.service_account
        self._token_uri = config.token_uri or account.token_uri
        self._send_path = f"/v1/projects/{account.project_id}/messages:send"
        self._client = LazyClient(config.base_url, config.timeout)
        self._lock = asyncio.Lock()
        self._access_token: str | None = None
        self._expires_at = 0.0  # time.monotonic()
        self._failure: tuple[float, DeliveryError] | None = None  # the last fetch's, and when

    def _http(self) -> httpx.AsyncClient:
        return self._client.get()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(self, message: OutboundMessage) -> SendResult:
        payload = {"message": build_message(message)}
        token = await self._token()
        response = await self._post(token, payload)
        if _token_refused(response):
            token = await self._token(stale=token)
            response = await self._post(token, payload)
            if _token_refused(response):
                raise PermanentFailure(
                    _error_reason(response)
                    + "; FCM refused a fresh access token: check that the service account "
                    "may send with Firebase Cloud Messaging in this project"
                )
        if response.is_success:
            body = json_or_none(response)
            name = body.get("name") if isinstance(body, dict) else None
            return SendResult(provider_message_id=name if isinstance(name, str) else None)
        raise fcm_error(response)

    async def _post(self, token: str, payload: Mapping[str, Any]) -> httpx.Response:
        try:
            return await self._http().post(
                self._send_path, json=payload, headers={"Authorization": f"Bearer {token}"}
            )
        except httpx.TimeoutException as error:
            raise RetryLater(
                f"FCM did not answer within {self.config.timeout:g} s ({type(error).__name__})"
            ) from None
        except httpx.TransportError as error:
            raise RetryLater(f"cannot reach FCM: {type(error).__name__}: {error}") from None

    # -- OAuth2 ------------------------------------------------------------------------

    async def _token(self, stale: str | None = None) -> str:
        """A valid access token: the cached one unless it is near expiry or is ``stale``
        (FCM refused it). Concurrent callers wait for one fetch and share its token."""
        asked = time.monotonic()
        async with self._lock:
            cached = self._access_token
            if cached is not None and cached != stale and time.monotonic() < self._expires_at:
                return cached
            if self._failure is not None and self._failure[0] >= asked:
                # A fetch failed while this send waited for it: fail alike, rather than each
                # waiting send trying (and timing out) in turn.
                raise _copy(self._failure[1])
            self._access_token = None
            try:
                token, lifetime = await self._fetch_token()
            except DeliveryError as error:
                self._failure = (time.monotonic(), error)
                raise
            self._failure = None
            self._access_token = token
            self._expires_at = time.monotonic() + lifetime - EXPIRY_MARGIN
            return token

    def assertion(self, now: int | None = None) -> str:
        """The signed JWT that Google's token endpoint trades for an access token."""
        account = self.config.service_account
        issued = int(time.time()) if now is None else now
        claims = {
            "iss": account.client_email,
            "scope": SCOPE,
            "aud": self._token_uri,
            "iat": issued,
            "exp": issued + ASSERTION_LIFETIME,
        }
        headers = {"kid": account.private_key_id} if account.private_key_id else None
        return jwt.encode(claims, account.private_key, algorithm="RS256", headers=headers)

    async def _fetch_token(self) -> tuple[str, float]:
        form = {"grant_type": GRANT_TYPE, "assertion": self.assertion()}
        try:
            response = await self._http().post(self._token_uri, data=form)
        except httpx.TimeoutException as error:
            raise RetryLater(
                f"Google's token endpoint did not answer within {self.config.timeout:g} s "
                f"({type(error).__name__})"
            ) from None
        except httpx.TransportError as error:
            raise RetryLater(
                f"cannot reach Google's token endpoint: {type(error).__name__}: {error}"
            ) from None
        body = json_or_none(response)
        body = body if isinstance(body, dict) else {}
        if response.is_success:
            token, lifetime = body.get("access_token"), body.get("expires_in")
            if not isinstance(token, str) or not token:
                raise RetryLater("Google's token endpoint answered without an access_token")
            seconds = float(lifetime) if isinstance(lifetime, int | float) else 3600.0
            return token, seconds
        reason = (
            f"Google's token endpoint refused the service account: "
            f"{body.get('error') or response.reason_phrase}"
        )
        if body.get("error_description"):
            reason += f" ({body['error_description']})"
        reason += f" (HTTP {response.status_code})"
        if response.status_code == 429 or response.status_code >= 500:
            raise RetryLater(reason, retry_after(response))
        raise PermanentFailure(reason + "; check the service account key of this provider")


def _copy(error: DeliveryError) -> DeliveryError:
    """The same outcome for another send (an exception is raised by one send only)."""
    if isinstance(error, RetryLater):
        return RetryLater(error.reason, error.retry_after)
    return PermanentFailure(error.reason)


def build_message(message: OutboundMessage) -> dict[str, Any]:
    """The FCM v1 ``message`` for a push message's content; PermanentFailure when the
    content cannot make one (it would only be refused as INVALID_ARGUMENT)."""
    content = message.content
    if not message.to:
        raise PermanentFailure("a push message needs a device registration token")
    built: dict[str, Any] = {"token": message.to}

    notification: dict[str, str] = {}
    for key in ("title", "body", "image"):
        value = content.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise PermanentFailure(f"content.{key} of a push message must be a string")
        notification[key] = value
    if "image" in notification and not re.match(HTTP_URL, notification["image"]):
        raise PermanentFailure("content.image must be an http(s) URL")

    data: dict[str, str] = {}
    raw_data = content.get("data")
    if raw_data is not None:
        if not isinstance(raw_data, Mapping):
            raise PermanentFailure("content.data of a push message must be an object")
        for key, value in raw_data.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise PermanentFailure(
                    f"content.data.{key} must be a string: FCM data carries strings only"
                )
            if key in RESERVED_DATA_KEYS or key.startswith(("google.", "gcm.")):
                raise PermanentFailure(f"content.data.{key} is a key FCM reserves")
            data[key] = value

    url = content.get("url")
    if url is not None and not isinstance(url, str):
        raise PermanentFailure("content.url of a push message must be a string")
    if url:
        data["url"] = url

    if not notification and not data:
        raise PermanentFailure("a push message needs content.title, content.body or content.data")
    if notification:
        built["notification"] = notification
    if data:
        built["data"] = data

    priority = content.get("priority")
    if priority is not None and priority not in ("high", "normal"):
        raise PermanentFailure('content.priority must be "high" or "normal"')
    ttl = content.get("ttl_seconds")
    if ttl is not None and (
        isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= MAX_TTL
    ):
        raise PermanentFailure(f"content.ttl_seconds must be a whole number from 0 to {MAX_TTL}")

    android: dict[str, Any] = {}
    apns_headers: dict[str, str] = {}
    webpush: dict[str, Any] = {}
    webpush_headers: dict[str, str] = {}
    if priority is not None:
        android["priority"] = priority.upper()
        apns_headers["apns-priority"] = "10" if priority == "high" else "5"
        webpush_headers["Urgency"] = priority
    if ttl is not None:
        android["ttl"] = f"{ttl}s"
        # APNs takes an absolute expiry (0: deliver now or never), web push a TTL header.
        apns_headers["apns-expiration"] = str(int(time.time()) + ttl if ttl else 0)
        webpush_headers["TTL"] = str(ttl)
    if url and url.startswith("https://"):  # FCM refuses any other web-push link
        webpush["fcm_options"] = {"link": url}
    if webpush_headers:
        webpush["headers"] = webpush_headers
    if android:
        built["android"] = android
    if apns_headers:
        built["apns"] = {"headers": apns_headers}
    if webpush:
        built["webpush"] = webpush
    return built


def fcm_error(response: httpx.Response) -> DeliveryError:
    """The delivery error of one FCM error answer (Google's JSON error shape)."""
    error = _error_body(response)
    status = response.status_code
    reason = _error_reason(response)
    fcm_code = _fcm_error_code(error)
    if fcm_code in DEAD_TOKEN_ERRORS:
        return AddressInvalid(reason, "invalid")
    if fcm_code == "INVALID_ARGUMENT" or error.get("status") == "INVALID_ARGUMENT":
        if _token_violated(error):
            return AddressInvalid(reason, "invalid")
        return PermanentFailure(reason + "; the payload Junction built was refused")
    if fcm_code in RETRIED_ERRORS or status == 429 or status >= 500:
        return RetryLater(reason, retry_after(response))
    if fcm_code == "THIRD_PARTY_AUTH_ERROR":
        reason += "; check the APNs certificate or web-push credentials in the Firebase project"
    elif status == 403:
        reason += "; check that the service account may send with FCM in this project"
    return PermanentFailure(reason)


def _token_refused(response: httpx.Response) -> bool:
    """A 401 about our access token (THIRD_PARTY_AUTH_ERROR is a 401 about APNs or web-push
    credentials: a fresh token would not help)."""
    if response.status_code != 401:
        return False
    return _fcm_error_code(_error_body(response)) != "THIRD_PARTY_AUTH_ERROR"


def _error_body(response: httpx.Response) -> dict[str, Any]:
    parsed = json_or_none(response)
    error = parsed.get("error") if isinstance(parsed, dict) else None
    return error if isinstance(error, dict) else {}


def _error_reason(response: httpx.Response) -> str:
    error = _error_body(response)
    code = _fcm_error_code(error) or error.get("status") or "error"
    message = str(error.get("message") or response.reason_phrase or "no message")
    return f"FCM {code}: {message} (HTTP {response.status_code})"


def _details(error: Mapping[str, Any]) -> list[dict[str, Any]]:
    details = error.get("details")
    if not isinstance(details, list):
        return []
    return [d for d in details if isinstance(d, dict)]


def _fcm_error_code(error: Mapping[str, Any]) -> str | None:
    for detail in _details(error):
        if detail.get("@type") == FCM_ERROR and isinstance(detail.get("errorCode"), str):
            code: str = detail["errorCode"]
            return code
    return None


def _token_violated(error: Mapping[str, Any]) -> bool:
    """Whether a BadRequest detail blames the registration token itself."""
    for detail in _details(error):
        if detail.get("@type") != BAD_REQUEST:
            continue
        violations = detail.get("fieldViolations")
        if isinstance(violations, list) and any(
            isinstance(v, dict) and v.get("field") == "message.token" for v in violations
        ):
            return True
    return False
