"""A fake Google OAuth2 token endpoint and FCM HTTP v1 API, served for real on loopback.

It follows Google's documented shapes:

- ``POST /token``, form-encoded ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``
  and ``assertion=<JWT>``: the assertion must be RS256-signed with the service account's
  key, with ``iss`` its client_email, ``aud`` this endpoint, the firebase.messaging
  ``scope``, and an ``exp`` at most an hour after ``iat`` and not past; the answer is
  ``{"access_token", "expires_in", "token_type": "Bearer"}``, else 400 ``invalid_grant``;
- ``POST /v1/projects/{project}/messages:send`` with ``Authorization: Bearer <token>``: a
  token this fake issued, not expired nor revoked, else 401 UNAUTHENTICATED; the body must
  be ``{"message": {...}}`` with a ``token``, string-only ``data`` and well-formed
  ``android`` / ``apns`` / ``webpush`` blocks, else 400 INVALID_ARGUMENT with a BadRequest
  field violation naming the field; success answers ``{"name": "projects/p/messages/0:…"}``;
- every error is Google's ``{"error": {"code", "message", "status", "details": [...]}}``
  with an FcmError ``errorCode``.

Every send request is recorded (``requests``) with what was answered. Scripting, safe from
the test's thread while the server runs in its own:

    fcm = FakeFcm()
    fcm.reject("dead-token", "UNREGISTERED")    # or SENDER_ID_MISMATCH, INVALID_TOKEN,
                                                # BAD_PAYLOAD, THIRD_PARTY_AUTH_ERROR
    fcm.fail_next(2, status=503, retry_after=7) # the next two sends: 503 (also 429, 500, 401)
    fcm.fail_token_next(1, status=503)          # the next token request: 503
    fcm.hang_next(1)                            # the next send never answers while serving
    fcm.revoke()                                # every access token issued so far: 401
    fcm.expires_in = 30                         # lifetime of the tokens issued from now on
    with fcm.serve() as base_url:
        account = fcm.service_account()         # a key file whose token_uri is this fake
        ...
        fcm.tokens_issued                       # how many access tokens were handed out
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import jwt
from anyio import to_thread
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.e2e.server import serving

PROJECT_ID = "junction-test"
CLIENT_EMAIL = "junction-push@junction-test.iam.gserviceaccount.com"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
TTL = re.compile(r"^\d+(\.\d{1,9})?s$")
MESSAGE_FIELDS = {"token", "topic", "condition", "notification", "data", "android"}
MESSAGE_FIELDS |= {"apns", "webpush", "fcm_options", "name"}

# status, gRPC status, FcmError code, message, and the field a BadRequest detail blames.
REJECTIONS: Mapping[str, tuple[int, str, str, str, str | None]] = {
    "UNREGISTERED": (404, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found.", None),
    "SENDER_ID_MISMATCH": (
        403,
        "PERMISSION_DENIED",
        "SENDER_ID_MISMATCH",
        "SenderId mismatch",
        None,
    ),
    "INVALID_TOKEN": (
        400,
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "The registration token is not a valid FCM registration token",
        "message.token",
    ),
    "BAD_PAYLOAD": (
        400,
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "Request contains an invalid argument.",
        "message.android.notification",
    ),
    "THIRD_PARTY_AUTH_ERROR": (
        401,
        "UNAUTHENTICATED",
        "THIRD_PARTY_AUTH_ERROR",
        "Auth error from APNS or Web Push Service",
        None,
    ),
}
OUTAGES: Mapping[int, tuple[str, str, str]] = {
    401: ("UNAUTHENTICATED", "", "Request had invalid authentication credentials."),
    429: ("RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "Quota exceeded for quota metric."),
    500: ("INTERNAL", "INTERNAL", "Internal error encountered."),
    503: ("UNAVAILABLE", "UNAVAILABLE", "The service is currently unavailable."),
}


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@dataclass
class Recorded:
    """One send request the fake received, and what it answered."""

    project: str
    authorization: str | None
    body: Any  # the parsed JSON (None if it was not JSON)
    answered: int | None = None  # None while (or if) it hangs

    @property
    def message(self) -> dict[str, Any]:
        message = self.body.get("message") if isinstance(self.body, dict) else None
        return message if isinstance(message, dict) else {}


@dataclass(frozen=True)
class _Outage:
    status: int
    retry_after: float | None


_NORMAL = _Outage(200, None)  # the script is empty: answer as FCM would


@dataclass
class FakeFcm:
    project_id: str = PROJECT_ID
    client_email: str = CLIENT_EMAIL
    expires_in: int = 3600
    requests: list[Recorded] = field(default_factory=list)
    token_requests: int = 0  # every POST /token, granted or not
    base_url: str = ""  # while serving

    def __post_init__(self) -> None:
        self.key = new_key()
        self._lock = threading.Lock()
        self._issued: dict[str, float] = {}  # access token → expiry (time.time())
        self._rejections: dict[str, str] = {}  # registration token → REJECTIONS key
        self._script: deque[_Outage | None] = deque()  # None: hang
        self._token_script: deque[_Outage] = deque()
        self._release = threading.Event()
        self._ids = 0
        self.app = self._build_app()

    def reset(self) -> None:
        """Forget requests, tokens and scripts, and let hanging requests go."""
        with self._lock:
            self.requests.clear()
            self.token_requests = 0
            self.expires_in = 3600
            self._issued.clear()
            self._rejections.clear()
            self._script.clear()
            self._token_script.clear()
            self._release.set()
            self._release = threading.Event()

    @contextmanager
    def serve(self) -> Iterator[str]:
        with serving(self.app) as base_url:
            self.base_url = base_url
            try:
                yield base_url
            finally:
                self.reset()

    # -- the service account -----------------------------------------------------------

    @property
    def token_uri(self) -> str:
        return f"{self.base_url}/token"

    def service_account(self, key: rsa.RSAPrivateKey | None = None) -> dict[str, Any]:
        """A key file as Google hands it out, whose token_uri is this fake."""
        return {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": "0123456789abcdef0123456789abcdef01234567",
            "private_key": pem(key or self.key),
            "client_email": self.client_email,
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/x",
            "universe_domain": "googleapis.com",
        }

    @property
    def tokens_issued(self) -> int:
        with self._lock:
            return len(self._issued)

    # -- scripting ---------------------------------------------------------------------

    def reject(self, registration_token: str, error: str) -> None:
        """Answer every send to ``registration_token`` with one of ``REJECTIONS``."""
        if error not in REJECTIONS:
            raise ValueError(f"unknown rejection {error!r}")
        with self._lock:
            self._rejections[registration_token] = error

    def fail_next(self, count: int, status: int = 503, retry_after: float | None = None) -> None:
        """Answer the next ``count`` sends with ``status`` (and Retry-After if given)."""
        with self._lock:
            self._script.extend([_Outage(status, retry_after)] * count)

    def fail_token_next(
        self, count: int, status: int = 503, retry_after: float | None = None
    ) -> None:
        """Answer the next ``count`` token requests with ``status``."""
        with self._lock:
            self._token_script.extend([_Outage(status, retry_after)] * count)

    def hang_next(self, count: int = 1) -> None:
        with self._lock:
            self._script.extend([None] * count)

    def revoke(self) -> None:
        """Revoke every access token issued so far: sends carrying one answer 401."""
        with self._lock:
            for token in self._issued:
                self._issued[token] = 0.0

    # -- what was sent -----------------------------------------------------------------

    @property
    def sent(self) -> list[Recorded]:
        return [r for r in self.requests if r.answered == 200]

    # -- the API -----------------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/token")
        async def token(request: Request) -> JSONResponse:
            form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
            with self._lock:
                self.token_requests += 1
                scripted = self._token_script.popleft() if self._token_script else None
            if scripted is not None:
                headers = {}
                if scripted.retry_after is not None:
                    headers["Retry-After"] = f"{scripted.retry_after:g}"
                return JSONResponse(
                    {"error": "internal_failure", "error_description": "Backend Error"},
                    status_code=scripted.status,
                    headers=headers,
                )
            return self._grant(form)

        @app.post("/v1/projects/{project}/messages:send")
        async def send(project: str, request: Request) -> JSONResponse:
            try:
                body = await request.json()
            except ValueError:
                body = None
            recorded = Recorded(project, request.headers.get("authorization"), body)
            with self._lock:
                self.requests.append(recorded)
            answer = await self._answer(recorded)
            recorded.answered = answer.status_code
            return answer

        return app

    def _grant(self, form: dict[str, str]) -> JSONResponse:
        if form.get("grant_type") != GRANT_TYPE:
            return _oauth_error("unsupported_grant_type", "Invalid grant_type")
        try:
            claims = jwt.decode(
                form.get("assertion", ""),
                self.key.public_key(),
                algorithms=["RS256"],
                audience=self.token_uri,
                issuer=self.client_email,
                options={"require": ["iss", "aud", "iat", "exp", "scope"]},
            )
        except jwt.InvalidSignatureError:
            return _oauth_error("invalid_grant", "Invalid JWT Signature.")
        except jwt.PyJWTError as error:
            return _oauth_error("invalid_grant", f"Invalid JWT: {error}")
        if claims["scope"] != SCOPE:
            return _oauth_error("invalid_scope", "Invalid OAuth scope or ID token audience.")
        if not 0 < claims["exp"] - claims["iat"] <= 3600:
            return _oauth_error("invalid_grant", "Invalid JWT: exp is more than an hour after iat")
        access_token = "ya29.fake-" + secrets.token_urlsafe(24)
        with self._lock:
            self._issued[access_token] = time.time() + self.expires_in
            expires_in = self.expires_in
        return JSONResponse(
            {"access_token": access_token, "expires_in": expires_in, "token_type": "Bearer"}
        )

    async def _answer(self, request: Recorded) -> JSONResponse:
        with self._lock:
            scripted = self._script.popleft() if self._script else _NORMAL
            release = self._release
        if scripted is None:
            await to_thread.run_sync(release.wait)
            return _outage(503, None)
        if scripted is not _NORMAL:
            return _outage(scripted.status, scripted.retry_after)
        if not self._authorized(request.authorization):
            return _outage(401, None)
        if request.project != self.project_id:
            return _google_error(403, "PERMISSION_DENIED", "Permission denied.", "")
        problem = _invalid(request.body)
        if problem is not None:
            return _google_error(
                400, "INVALID_ARGUMENT", problem[1], "INVALID_ARGUMENT", field=problem[0]
            )
        with self._lock:
            rejection = self._rejections.get(request.message["token"])
            self._ids += 1
            number = self._ids
        if rejection is not None:
            status, grpc, code, text, blamed = REJECTIONS[rejection]
            return _google_error(status, grpc, text, code, field=blamed)
        return JSONResponse({"name": f"projects/{self.project_id}/messages/0:{number:016d}"})

    def _authorized(self, header: str | None) -> bool:
        scheme, _, token = (header or "").partition(" ")
        with self._lock:
            expiry = self._issued.get(token)
        return scheme == "Bearer" and expiry is not None and time.time() < expiry


def _invalid(body: Any) -> tuple[str, str] | None:
    """The field blamed and why, when a send body is not a message FCM would take."""
    if not isinstance(body, dict) or set(body) - {"message", "validate_only"}:
        return "message", "Invalid JSON payload received."
    message = body.get("message")
    if not isinstance(message, dict):
        return "message", "Invalid JSON payload received."
    if unknown := set(message) - MESSAGE_FIELDS:
        return "message", f"Unknown name {sorted(unknown)[0]!r} at 'message'"
    targets = [key for key in ("token", "topic", "condition") if key in message]
    if len(targets) != 1:
        return "message", "Exactly one of token, topic or condition must be specified."
    if not isinstance(message.get("token"), str) or not message["token"]:
        return "message.token", "The registration token is not a valid FCM registration token"
    notification = message.get("notification", {})
    if not isinstance(notification, dict) or any(
        key not in {"title", "body", "image"} or not isinstance(value, str)
        for key, value in notification.items()
    ):
        return "message.notification", "Invalid notification."
    data = message.get("data", {})
    if not isinstance(data, dict) or any(not isinstance(v, str) for v in data.values()):
        return "message.data", "Invalid value at 'message.data': values must be strings"
    if any(k in {"from", "notification", "message_type"} or k.startswith("google.") for k in data):
        return "message.data", "Invalid data payload key."
    android = message.get("android", {})
    if not isinstance(android, dict):
        return "message.android", "Invalid android."
    if android.get("priority", "NORMAL") not in {"NORMAL", "HIGH"}:
        return "message.android.priority", "Invalid value at 'message.android.priority'"
    if "ttl" in android and not (isinstance(android["ttl"], str) and TTL.match(android["ttl"])):
        return "message.android.ttl", "Invalid value at 'message.android.ttl'"
    apns = message.get("apns", {})
    if not isinstance(apns, dict) or not all(
        isinstance(v, str) for v in apns.get("headers", {}).values()
    ):
        return "message.apns.headers", "Invalid apns headers."
    webpush = message.get("webpush", {})
    if not isinstance(webpush, dict):
        return "message.webpush", "Invalid webpush."
    link = webpush.get("fcm_options", {}).get("link")
    if link is not None and not (isinstance(link, str) and link.startswith("https://")):
        return "message.webpush.fcm_options.link", "The link must be an HTTPS URL."
    return None


def _google_error(
    status: int,
    grpc: str,
    message: str,
    fcm_code: str,
    headers: dict[str, str] | None = None,
    field: str | None = None,
) -> JSONResponse:
    details: list[dict[str, Any]] = []
    if fcm_code:
        details.append({"@type": FCM_ERROR, "errorCode": fcm_code})
    if field is not None:
        details.append(
            {"@type": BAD_REQUEST, "fieldViolations": [{"field": field, "description": message}]}
        )
    body: dict[str, Any] = {"code": status, "message": message, "status": grpc}
    if details:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _outage(status: int, retry_after: float | None) -> JSONResponse:
    grpc, code, text = OUTAGES.get(status, ("INTERNAL", "INTERNAL", "Internal error."))
    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="https://accounts.google.com/"'
    return _google_error(status, grpc, text, code, headers)


def _oauth_error(error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=400)
