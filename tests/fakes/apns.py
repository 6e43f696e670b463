"""A fake Apple Push Notification service, served for real over TLS and HTTP/2 on loopback.

It follows Apple's documented shapes:

- ``POST /3/device/{token}`` with ``authorization: bearer <JWT>``: the provider token must
  be ES256-signed with the key whose public half this fake holds, with header ``kid`` the
  key id and claims ``iss`` the team id and an ``iat`` not older than an hour, else 403
  ``InvalidProviderToken`` (``ExpiredProviderToken`` when only its age is wrong;
  ``MissingProviderToken`` without one);
- ``apns-topic`` must be the bundle id (else 400 ``DeviceTokenNotForTopic``),
  ``apns-push-type`` alert or background (else 400 ``InvalidPushType``), the body JSON with
  an ``aps`` object, at most 4096 bytes (else 413 ``PayloadTooLarge``);
- success is 200 with an empty body and the ``apns-id`` header (the request's, or a new
  UUID); every error is ``{"reason": "..."}``.

Every request is recorded (``requests``) with its HTTP version and what was answered.
Scripting, safe from the test's thread while the server runs in its own:

    apns = FakeApns()
    apns.reject(device, "Unregistered")          # 410; or BadDeviceToken (400), ... any
    apns.fail_next(2, status=429, retry_after=7) # the next two requests (also 500, 503)
    apns.expire_next(1)                          # the next request: 403 ExpiredProviderToken
    with apns.serve() as base_url:
        config = apns.config()                   # team, key, topic, base_url and ca_file
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from hypercorn.asyncio import serve
from hypercorn.config import Config

TEAM_ID = "JUNCTION01"
KEY_ID = "KEYID12345"
TOPIC = "com.example.junction"
MAX_PAYLOAD_BYTES = 4096

# reason → status, as Apple documents them.
STATUSES = {
    "BadDeviceToken": 400,
    "DeviceTokenNotForTopic": 400,
    "BadCollapseId": 400,
    "BadExpirationDate": 400,
    "BadPriority": 400,
    "BadTopic": 400,
    "TopicDisallowed": 400,
    "InvalidPushType": 400,
    "PayloadEmpty": 400,
    "ExpiredProviderToken": 403,
    "InvalidProviderToken": 403,
    "MissingProviderToken": 403,
    "BadPath": 404,
    "Unregistered": 410,
    "PayloadTooLarge": 413,
    "TooManyProviderTokenUpdates": 429,
    "TooManyRequests": 429,
    "InternalServerError": 500,
    "ServiceUnavailable": 503,
    "Shutdown": 503,
}
OUTAGES = {429: "TooManyRequests", 500: "InternalServerError", 503: "ServiceUnavailable"}


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def p8(key: ec.EllipticCurvePrivateKey) -> str:
    """The key as Apple's .p8 file holds it: PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@dataclass
class Recorded:
    """One request the fake received, and what it answered."""

    device: str
    http_version: str
    headers: dict[str, str]
    body: Any  # the parsed JSON (None if it was not JSON)
    answered: int | None = None

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")


@dataclass
class FakeApns:
    team_id: str = TEAM_ID
    key_id: str = KEY_ID
    topic: str = TOPIC
    requests: list[Recorded] = field(default_factory=list)
    base_url: str = ""  # while serving
    ca_file: str = ""  # while serving

    def __post_init__(self) -> None:
        self.key = new_key()
        self.ca = trustme.CA()
        self._lock = threading.Lock()
        self._rejections: dict[str, str] = {}  # device token → reason
        self._script: deque[tuple[int, str, float | None]] = deque()
        self.app = self._build_app()

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._rejections.clear()
            self._script.clear()

    def config(self, **overrides: Any) -> dict[str, Any]:
        return {
            "team_id": self.team_id,
            "key_id": self.key_id,
            "private_key": p8(self.key),
            "topic": self.topic,
            "base_url": self.base_url,
            "ca_file": self.ca_file,
            **overrides,
        }

    # -- scripting ---------------------------------------------------------------------

    def reject(self, device: str, reason: str) -> None:
        """Answer every request for ``device`` with ``reason`` (and its status)."""
        if reason not in STATUSES:
            raise ValueError(f"unknown reason {reason!r}")
        with self._lock:
            self._rejections[device] = reason

    def fail_next(self, count: int, status: int = 503, retry_after: float | None = None) -> None:
        with self._lock:
            self._script.extend([(status, OUTAGES[status], retry_after)] * count)

    def expire_next(self, count: int = 1) -> None:
        """Answer the next ``count`` requests 403 ExpiredProviderToken, whatever the token."""
        with self._lock:
            self._script.extend([(403, "ExpiredProviderToken", None)] * count)

    @property
    def sent(self) -> list[Recorded]:
        return [r for r in self.requests if r.answered == 200]

    @property
    def tokens_seen(self) -> list[str]:
        """The distinct provider tokens, in the order they first came."""
        seen: dict[str, None] = {}
        for request in self.requests:
            seen.setdefault((request.authorization or "").removeprefix("bearer "), None)
        return list(seen)

    # -- serving -----------------------------------------------------------------------

    @contextmanager
    def serve(self) -> Iterator[str]:
        """Serve over TLS (trustme's certificate for 127.0.0.1) with HTTP/2, in a thread
        with its own event loop; yields the base URL once a request gets an answer."""
        with tempfile.TemporaryDirectory() as folder:
            cert = self.ca.issue_cert("127.0.0.1", "localhost")
            certfile, keyfile = Path(folder, "cert.pem"), Path(folder, "key.pem")
            cert.cert_chain_pems[0].write_to_path(str(certfile))
            cert.private_key_pem.write_to_path(str(keyfile))
            ca_file = Path(folder, "ca.pem")
            self.ca.cert_pem.write_to_path(str(ca_file))

            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            sock.listen(128)
            port = sock.getsockname()[1]
            config = Config()
            # hypercorn takes (and closes) the descriptor it is given: give it a copy.
            config.bind = [f"fd://{os.dup(sock.fileno())}"]
            config.certfile, config.keyfile = str(certfile), str(keyfile)
            config.alpn_protocols = ["h2"]
            config.accesslog = None
            config.errorlog = None

            loop = asyncio.new_event_loop()
            stop = asyncio.Event()
            failure: list[BaseException] = []

            def run() -> None:
                asyncio.set_event_loop(loop)
                try:
                    loop.run_until_complete(
                        serve(self.app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
                    )
                except BaseException as error:  # reported by the waiting test
                    failure.append(error)
                finally:
                    loop.close()

            thread = threading.Thread(target=run, daemon=True, name="fake-apns")
            thread.start()
            base_url = f"https://127.0.0.1:{port}"
            try:
                # The socket already listens: this request waits until hypercorn answers it.
                trusted = ssl.create_default_context(cafile=str(ca_file))
                with httpx.Client(verify=trusted, http2=True, timeout=10) as client:
                    client.get(f"{base_url}/health").raise_for_status()
                self.base_url, self.ca_file = base_url, str(ca_file)
                yield base_url
            finally:
                if not loop.is_closed():
                    loop.call_soon_threadsafe(stop.set)
                thread.join(timeout=10)
                sock.close()
                self.reset()
                if failure:
                    raise RuntimeError("the fake APNs server failed") from failure[0]

    # -- the API -----------------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/health")
        async def health() -> dict[str, str]:
            return {"ok": "yes"}

        @app.post("/3/device/{device}")
        async def push(device: str, request: Request) -> Response:
            raw = await request.body()
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            recorded = Recorded(
                device, request.scope.get("http_version", ""), dict(request.headers), body
            )
            with self._lock:
                self.requests.append(recorded)
            answer = self._answer(recorded, len(raw))
            recorded.answered = answer.status_code
            return answer

        return app

    def _answer(self, request: Recorded, size: int) -> Response:
        with self._lock:
            scripted = self._script.popleft() if self._script else None
            rejection = self._rejections.get(request.device)
        if scripted is not None:
            return _error(scripted[1], scripted[0], scripted[2])
        problem = self._unauthorized(request.authorization)
        if problem is not None:
            return _error(problem)
        headers = request.headers
        if headers.get("apns-topic") != self.topic:
            return _error("DeviceTokenNotForTopic")
        if headers.get("apns-push-type") not in {"alert", "background"}:
            return _error("InvalidPushType")
        if headers.get("apns-priority") not in {None, "1", "5", "10"}:
            return _error("BadPriority")
        if size == 0:
            return _error("PayloadEmpty")
        if size > MAX_PAYLOAD_BYTES:
            return _error("PayloadTooLarge")
        if not isinstance(request.body, dict) or not isinstance(request.body.get("aps"), dict):
            return _error("PayloadEmpty")
        if rejection is not None:
            return _error(rejection)
        apns_id = headers.get("apns-id") or str(uuid.uuid4())
        return Response(status_code=200, headers={"apns-id": apns_id})

    def _unauthorized(self, header: str | None) -> str | None:
        scheme, _, token = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return "MissingProviderToken"
        try:
            if jwt.get_unverified_header(token).get("kid") != self.key_id:
                return "InvalidProviderToken"
            claims = jwt.decode(
                token,
                self.key.public_key(),
                algorithms=["ES256"],
                issuer=self.team_id,
                options={"require": ["iss", "iat"]},
            )
        except jwt.PyJWTError:
            return "InvalidProviderToken"
        if time.time() - claims["iat"] > 3600:
            return "ExpiredProviderToken"
        return None


def _error(reason: str, status: int | None = None, retry_after: float | None = None) -> Response:
    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
    return JSONResponse({"reason": reason}, status_code=status or STATUSES[reason], headers=headers)
