"""A fake RFC 8030 push service, served for real on loopback, that plays the browser too.

``subscribe()`` does what a browser does for ``pushManager.subscribe()``: it makes a P-256
key pair and a 16-byte auth secret, keeps the private key, and hands out the subscription
(endpoint URL on this service, base64url ``p256dh`` and ``auth``). Each ``POST`` to an
endpoint is then checked as a push service and a browser would:

- ``Authorization: vapid t=<JWT>,k=<key>`` (RFC 8292): the JWT's ES256 signature verifies
  against ``k`` (by PyJWT, not the library that signed it), ``aud`` is this service's origin,
  ``exp`` is in the future and no more than 24 hours ahead, ``sub`` is mailto: or https:;
  otherwise 401 (403 when the subscription was made for another ``applicationServerKey``);
- ``TTL`` is present and a non-negative integer (400 otherwise), ``Urgency`` if present is
  one of RFC 8030's four (400), ``Content-Encoding`` is ``aes128gcm`` (415);
- the body is at most 4,096 bytes (413) and decrypts with the subscription's private key and
  auth secret (``http_ece.decrypt``, RFC 8291) to a JSON object (400 otherwise);
- an unknown endpoint answers 404, a withdrawn one (``unsubscribe()``) 410.

Accepted messages answer 201 with a ``Location`` and are recorded in ``deliveries``, with
the decrypted payload; refused ones in ``rejected``. Scripting, safe from the test's thread:

    push = FakePushService()
    push.fail_next(1, status=429, retry_after=7)   # the next request(s) answer so
    push.hang_next(1)                              # never answers until released/stopped
    with push.serve():
        subscription = push.subscribe()
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import http_ece
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI, Request, Response

from tests.e2e.server import serving

MAX_BODY = 4096
URGENCIES = frozenset({"very-low", "low", "normal", "high"})


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Subscription:
    """What the browser holds: the endpoint, its key pair and auth secret."""

    token: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth_secret: bytes
    application_server_key: str | None = None  # when given, only this VAPID key may send
    withdrawn: bool = False

    @property
    def p256dh(self) -> str:
        return b64url(
            self.private_key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        )

    @property
    def auth(self) -> str:
        return b64url(self.auth_secret)

    @property
    def keys(self) -> dict[str, str]:
        return {"p256dh": self.p256dh, "auth": self.auth}


@dataclass(frozen=True)
class Delivery:
    endpoint: str
    headers: dict[str, str]
    claims: dict[str, Any]
    vapid_key: str
    payload: Any
    location: str


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False


class FakePushService:
    def __init__(self) -> None:
        self.url = ""
        self.subscriptions: dict[str, Subscription] = {}
        self.deliveries: list[Delivery] = []
        self.rejected: list[str] = []
        self.requests = 0
        self._script: deque[Answer] = deque()
        self._lock = threading.Lock()
        self.released = threading.Event()

    # -- scripting -------------------------------------------------------------------------

    def subscribe(self, application_server_key: str | None = None) -> Subscription:
        token = uuid.uuid4().hex
        subscription = Subscription(
            token=token,
            endpoint=f"{self.url}/push/{token}",
            private_key=ec.generate_private_key(ec.SECP256R1()),
            auth_secret=os.urandom(16),
            application_server_key=application_server_key,
        )
        with self._lock:
            self.subscriptions[token] = subscription
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscription.withdrawn = True

    def fail_next(self, count: int, status: int, retry_after: int | str | None = None) -> None:
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        with self._lock:
            self._script.extend(Answer(status, headers) for _ in range(count))

    def hang_next(self, count: int) -> None:
        with self._lock:
            self._script.extend(Answer(0, hang=True) for _ in range(count))

    @contextmanager
    def serve(self) -> Iterator[str]:
        with serving(self.app()) as url:
            self.url = url
            try:
                yield url
            finally:
                self.released.set()  # the server waits for answers in progress to end

    # -- the service -----------------------------------------------------------------------

    def _refuse(self, status: int, reason: str) -> Response:
        self.rejected.append(reason)
        return Response(reason, status_code=status)

    def _claims(self, authorization: str, subscription: Subscription) -> tuple[dict[str, Any], str]:
        scheme, _, params = authorization.partition(" ")
        if scheme.lower() != "vapid":
            raise PermissionError("the Authorization scheme is not vapid")
        parts = dict(p.strip().split("=", 1) for p in params.split(",") if "=" in p)
        token, key = parts.get("t"), parts.get("k")
        if not token or not key:
            raise PermissionError("vapid needs t= and k=")
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(key))
        claims: dict[str, Any] = jwt.decode(
            token,
            public,
            algorithms=["ES256"],
            audience=self.url,
            options={"require": ["aud", "exp", "sub"]},
        )
        if claims["exp"] > time.time() + 24 * 3600:
            raise PermissionError("exp is more than 24 hours ahead")
        sub = str(claims["sub"])
        if not (sub.startswith("mailto:") or sub.startswith("https://")):
            raise PermissionError("sub is neither mailto: nor https:")
        return claims, key

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/push/{token}")
        async def push(token: str, request: Request) -> Response:
            with self._lock:
                self.requests += 1
                answer = self._script.popleft() if self._script else None
            if answer is not None and answer.hang:
                await anyio.to_thread.run_sync(self.released.wait)
                return Response(status_code=201)
            subscription = self.subscriptions.get(token)
            if subscription is None:
                return self._refuse(404, "no such subscription")
            if subscription.withdrawn:
                return self._refuse(410, "the subscription has been withdrawn")
            try:
                claims, key = self._claims(request.headers.get("authorization", ""), subscription)
            except (PermissionError, jwt.InvalidTokenError, ValueError) as error:
                return self._refuse(401, f"VAPID: {error}")
            if subscription.application_server_key not in (None, key):
                return self._refuse(403, "another applicationServerKey made this subscription")
            ttl = request.headers.get("ttl", "")
            if not (ttl.isascii() and ttl.isdigit()):
                return self._refuse(400, "TTL must be a non-negative integer")
            urgency = request.headers.get("urgency")
            if urgency is not None and urgency not in URGENCIES:
                return self._refuse(400, f"unknown Urgency {urgency}")
            if request.headers.get("content-encoding") != "aes128gcm":
                return self._refuse(415, "Content-Encoding must be aes128gcm")
            body = await request.body()
            if len(body) > MAX_BODY:
                return self._refuse(413, "payload too large")
            try:  # as the browser: with the subscription's private key and auth secret
                plain = http_ece.decrypt(
                    body,
                    private_key=subscription.private_key,
                    auth_secret=subscription.auth_secret,
                    version="aes128gcm",
                )
                payload = json.loads(plain)
            except Exception as error:  # whatever fails, the browser drops it
                return self._refuse(400, f"does not decrypt to JSON: {type(error).__name__}")
            if answer is not None:
                return Response(f"scripted {answer.status}", answer.status, answer.headers)
            location = f"{self.url}/message/{uuid.uuid4().hex}"
            self.deliveries.append(
                Delivery(
                    subscription.endpoint, dict(request.headers), claims, key, payload, location
                )
            )
            return Response(status_code=201, headers={"Location": location})

        return app
