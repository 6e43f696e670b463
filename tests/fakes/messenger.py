"""A fake Messenger Send API, served for real on loopback, for tests that send to PSIDs.

It follows Meta's documented shapes
(https://developers.facebook.com/docs/messenger-platform/reference/send-api):

- ``POST /{version}/me/messages`` with ``Authorization: Bearer TOKEN`` or
  ``?access_token=TOKEN``; another token answers 401 with Graph error code 190;
- the body must be ``{"recipient": {"id"}, "messaging_type": "RESPONSE" | "MESSAGE_TAG",
  "message": {"text"}}``, with ``tag`` when ``MESSAGE_TAG`` (else 400 code 100);
- success answers ``{"recipient_id", "message_id": "m_…"}``;
- every error is ``{"error": {"message", "type", "code", "error_subcode"?, "fbtrace_id"}}``.

Every request is recorded (``requests``). Scripting, safe from the test's thread:

    messenger = FakeMessenger()
    messenger.reject("1254459154682919", 10, 2018278)   # outside the 24 h window
    messenger.fail_next(1, code=613)                     # rate limit
    with messenger.serve() as base_url:
        ...

And the other way round: ``webhook(...)`` builds a notification as Meta posts it, with
``signed(...)`` giving its body and ``X-Hub-Signature-256`` header.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.e2e.server import serving

PAGE_ACCESS_TOKEN = "EAAGfakeMessengerPageToken0001"
APP_SECRET = "fake-messenger-app-secret-0001"
VERIFY_TOKEN = "fake-messenger-verify-token-0001"
PAGE_ID = "107765241234567"
TAGS = {"CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE", "ACCOUNT_UPDATE", "HUMAN_AGENT"}

# code → (HTTP status, type, message)
ERRORS: dict[int, tuple[int, str, str]] = {
    2: (503, "OAuthException", "An unexpected error has occurred. Please retry your request."),
    4: (400, "OAuthException", "(#4) Application request limit reached"),
    10: (
        400,
        "OAuthException",
        "(#10) This message is sent outside of allowed window.",
    ),
    32: (400, "OAuthException", "(#32) Page request limit reached"),
    100: (400, "OAuthException", "(#100) No matching user found"),
    190: (401, "OAuthException", "Error validating access token: Session has expired"),
    200: (403, "OAuthException", "(#200) This person isn't available right now."),
    551: (400, "OAuthException", "(#551) This person isn't available right now."),
    613: (400, "OAuthException", "(#613) Calls to this api have exceeded the rate limit."),
    1200: (500, "OAuthException", "(#1200) Temporary send message failure. Please try again."),
}


@dataclass
class Recorded:
    version: str
    authorization: str | None
    access_token: str | None
    body: Any
    answered: int | None = None


@dataclass
class FakeMessenger:
    token: str = PAGE_ACCESS_TOKEN
    requests: list[Recorded] = field(default_factory=list)
    base_url: str = ""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._rejections: dict[str, tuple[int, int | None]] = {}
        self._script: deque[tuple[int, int | None, int | None]] = deque()
        self._counter = 0
        self.app = self._build_app()

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._rejections.clear()
            self._script.clear()
            self._counter = 0

    def reject(self, psid: str, code: int, subcode: int | None = None) -> None:
        """Answer every send to this PSID with this Graph error code (and subcode)."""
        with self._lock:
            self._rejections[psid] = (code, subcode)

    def fail_next(
        self, count: int, code: int = 1200, subcode: int | None = None, status: int | None = None
    ) -> None:
        """Answer the next ``count`` requests with this Graph error (``status`` overrides the
        HTTP status the code usually comes with)."""
        with self._lock:
            self._script.extend([(code, subcode, status)] * count)

    @contextmanager
    def serve(self) -> Iterator[str]:
        with serving(self.app) as base_url:
            self.base_url = base_url
            try:
                yield base_url
            finally:
                self.reset()

    @property
    def sent(self) -> list[Recorded]:
        return [r for r in self.requests if r.answered == 200]

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/{version}/me/messages")
        async def messages(version: str, request: Request) -> JSONResponse:
            raw = await request.body()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            recorded = Recorded(
                version,
                request.headers.get("authorization"),
                request.query_params.get("access_token"),
                body,
            )
            with self._lock:
                self.requests.append(recorded)
                answer = self._answer(recorded)
            recorded.answered = answer.status_code
            return answer

        return app

    def _answer(self, request: Recorded) -> JSONResponse:  # called with the lock held
        if self._script:
            code, subcode, status = self._script.popleft()
            return _error(code, subcode, status=status)
        if request.authorization != f"Bearer {self.token}" and request.access_token != self.token:
            return _error(190, 463)
        body = request.body
        if not isinstance(body, dict):
            return _error(100, None, "(#100) The parameter recipient is required")
        recipient = body.get("recipient")
        psid = recipient.get("id") if isinstance(recipient, dict) else None
        if not isinstance(psid, str) or not psid.isdigit():
            return _error(100, None, "(#100) The parameter recipient is required")
        kind = body.get("messaging_type")
        if kind == "MESSAGE_TAG":
            if body.get("tag") not in TAGS:
                return _error(100, None, "(#100) Param tag must be one of the allowed tags")
        elif kind != "RESPONSE":
            return _error(100, None, "(#100) Param messaging_type is invalid")
        message = body.get("message")
        if not isinstance(message, dict) or not isinstance(message.get("text"), str):
            return _error(100, None, "(#100) The parameter message is required")
        if psid in self._rejections:
            return _error(*self._rejections[psid])
        self._counter += 1
        return JSONResponse({"recipient_id": psid, "message_id": f"m_FAKE{self._counter:06d}"})


def _error(
    code: int, subcode: int | None = None, message: str | None = None, status: int | None = None
) -> JSONResponse:
    usual, kind, default = ERRORS.get(code, (400, "OAuthException", f"(#{code}) Error"))
    error: dict[str, Any] = {
        "message": message or default,
        "type": kind,
        "code": code,
        "fbtrace_id": "AbCdEfGhIjK",
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    return JSONResponse({"error": error}, status_code=status or usual)


# -- webhooks, the other way round ---------------------------------------------------------


def webhook(*events: dict[str, Any]) -> dict[str, Any]:
    """A notification as Meta posts it to the webhook, one entry holding these events."""
    return {
        "object": "page",
        "entry": [{"id": PAGE_ID, "time": 1763900000123, "messaging": list(events)}],
    }


def text_message(
    mid: str, sender: str = "1254459154682919", text: str = "hello", timestamp: int = 1763900000123
) -> dict[str, Any]:
    return {
        "sender": {"id": sender},
        "recipient": {"id": PAGE_ID},
        "timestamp": timestamp,
        "message": {"mid": mid, "text": text},
    }


def delivery(*mids: str, watermark: int = 1763900000999) -> dict[str, Any]:
    return {
        "sender": {"id": "1254459154682919"},
        "recipient": {"id": PAGE_ID},
        "delivery": {"mids": list(mids), "watermark": watermark},
    }


def read(watermark: int = 1763900000999) -> dict[str, Any]:
    return {
        "sender": {"id": "1254459154682919"},
        "recipient": {"id": PAGE_ID},
        "timestamp": watermark + 1,
        "read": {"watermark": watermark},
    }


def signed(notification: Any, app_secret: str = APP_SECRET) -> tuple[bytes, dict[str, str]]:
    """The body Meta posts and its headers, signed with ``app_secret``."""
    body = notification if isinstance(notification, bytes) else json.dumps(notification).encode()
    digest = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"content-type": "application/json", "x-hub-signature-256": f"sha256={digest}"}
