"""A fake WhatsApp Cloud API, served for real on loopback, for tests that send to numbers.

It follows Meta's documented shapes (https://developers.facebook.com/docs/whatsapp/cloud-api):

- ``POST /{version}/{phone_number_id}/messages`` with ``Authorization: Bearer TOKEN``; another
  token answers 401 with Graph error code 190; another phone number id answers 400 code 100;
- the body must be ``{"messaging_product": "whatsapp", "to", "type": "text" | "template"}``
  with ``text.body`` or ``template.name`` and ``template.language.code`` (else 400 code 100);
- success answers ``{"messaging_product": "whatsapp", "contacts": [{"input", "wa_id"}],
  "messages": [{"id": "wamid.…"}]}``;
- every error is ``{"error": {"message", "type", "code", "error_subcode"?, "fbtrace_id"}}``.

Every request is recorded (``requests``). Scripting, safe from the test's thread:

    whatsapp = FakeWhatsApp()
    whatsapp.reject("14155550100", 131047)     # re-engagement: 24 h window closed
    whatsapp.fail_next(1, code=130429)          # 429
    whatsapp.fail_next(2, code=131000)          # 500
    with whatsapp.serve() as base_url:
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

ACCESS_TOKEN = "EAAGfakeWhatsAppAccessToken0001"
PHONE_NUMBER_ID = "106540352242922"
APP_SECRET = "fake-app-secret-0001"
VERIFY_TOKEN = "fake-verify-token-0001"

# code → (HTTP status, type, message)
ERRORS: dict[int, tuple[int, str, str]] = {
    4: (400, "OAuthException", "(#4) Application request limit reached"),
    100: (400, "OAuthException", "(#100) Invalid parameter"),
    190: (401, "OAuthException", "Error validating access token: Session has expired"),
    80004: (429, "OAuthException", "(#80004) There have been too many calls to this account"),
    80007: (400, "OAuthException", "(#80007) Rate limit issues"),
    130429: (429, "OAuthException", "(#130429) Rate limit hit"),
    131000: (500, "OAuthException", "(#131000) Something went wrong"),
    131016: (503, "OAuthException", "(#131016) Service unavailable"),
    131026: (400, "OAuthException", "(#131026) Message undeliverable"),
    131047: (
        400,
        "OAuthException",
        "(#131047) Re-engagement message: more than 24 hours have passed since the"
        " recipient last replied",
    ),
    131049: (
        400,
        "OAuthException",
        "(#131049) This message was not delivered to maintain healthy ecosystem engagement.",
    ),
    131056: (
        400,
        "OAuthException",
        "(#131056) (Business Account, Consumer Account) pair rate limit hit",
    ),
}


@dataclass
class Recorded:
    version: str
    phone_number_id: str
    authorization: str | None
    body: Any
    answered: int | None = None


@dataclass
class FakeWhatsApp:
    token: str = ACCESS_TOKEN
    phone_number_id: str = PHONE_NUMBER_ID
    requests: list[Recorded] = field(default_factory=list)
    base_url: str = ""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._rejections: dict[str, int] = {}
        self._script: deque[int] = deque()
        self._counter = 0
        self.app = self._build_app()

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._rejections.clear()
            self._script.clear()
            self._counter = 0

    def reject(self, to: str, code: int) -> None:
        """Answer every send to this number (digits, no ``+``) with this Graph error code."""
        with self._lock:
            self._rejections[to.lstrip("+")] = code

    def fail_next(self, count: int, code: int = 131000) -> None:
        """Answer the next ``count`` requests with this Graph error code."""
        with self._lock:
            self._script.extend([code] * count)

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

        @app.post("/{version}/{phone_number_id}/messages")
        async def messages(version: str, phone_number_id: str, request: Request) -> JSONResponse:
            raw = await request.body()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            recorded = Recorded(
                version, phone_number_id, request.headers.get("authorization"), body
            )
            with self._lock:
                self.requests.append(recorded)
                answer = self._answer(recorded)
            recorded.answered = answer.status_code
            return answer

        return app

    def _answer(self, request: Recorded) -> JSONResponse:  # called with the lock held
        if self._script:
            return _error(self._script.popleft())
        if request.authorization != f"Bearer {self.token}":
            return _error(190)
        if request.phone_number_id != self.phone_number_id:
            return _error(100, "Unsupported post request. Object does not exist")
        body = request.body
        if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp":
            return _error(100, "(#100) The parameter messaging_product is required.")
        to = body.get("to")
        if not isinstance(to, str) or not to.isdigit():
            return _error(100, "(#100) Invalid parameter: to")
        kind = body.get("type")
        if kind == "text":
            text = body.get("text")
            if not isinstance(text, dict) or not isinstance(text.get("body"), str):
                return _error(100, "(#100) The parameter text['body'] is required.")
        elif kind == "template":
            template = body.get("template")
            language = template.get("language") if isinstance(template, dict) else None
            if (
                not isinstance(template, dict)
                or not isinstance(template.get("name"), str)
                or not isinstance(language, dict)
                or not isinstance(language.get("code"), str)
            ):
                return _error(100, "(#100) The parameter template['name'] is required.")
        else:
            return _error(100, f"(#100) Unsupported message type {kind!r}")
        if to in self._rejections:
            return _error(self._rejections[to])
        self._counter += 1
        return JSONResponse(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": to}],
                "messages": [{"id": f"wamid.FAKE{self._counter:06d}"}],
            }
        )


def _error(code: int, message: str | None = None) -> JSONResponse:
    status, kind, default = ERRORS.get(code, (400, "OAuthException", f"(#{code}) Error"))
    error: dict[str, Any] = {
        "message": message or default,
        "type": kind,
        "code": code,
        "fbtrace_id": "AbCdEfGhIjK",
    }
    if code == 190:
        error["error_subcode"] = 463
    return JSONResponse({"error": error}, status_code=status)


# -- webhooks, the other way round ---------------------------------------------------------


def webhook(
    statuses: list[dict[str, Any]] | None = None,
    messages: list[dict[str, Any]] | None = None,
    contacts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A notification as Meta posts it to the webhook."""
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": PHONE_NUMBER_ID},
    }
    if contacts is not None:
        value["contacts"] = contacts
    if messages is not None:
        value["messages"] = messages
    if statuses is not None:
        value["statuses"] = statuses
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": "messages"}]}],
    }


def status(
    wamid: str, state: str = "delivered", to: str = "14155550100", error: int | None = None
) -> dict[str, Any]:
    found: dict[str, Any] = {
        "id": wamid,
        "status": state,
        "timestamp": "1763900000",
        "recipient_id": to,
    }
    if error is not None:
        found["errors"] = [{"code": error, "title": ERRORS.get(error, (0, "", "Error"))[2]}]
    return found


def text_message(
    wamid: str, sender: str = "14155550100", text: str = "hello", timestamp: str = "1763900000"
) -> dict[str, Any]:
    return {
        "from": sender,
        "id": wamid,
        "timestamp": timestamp,
        "type": "text",
        "text": {"body": text},
    }


def contact(wa_id: str = "14155550100", name: str = "Ada Lovelace") -> dict[str, Any]:
    return {"profile": {"name": name}, "wa_id": wa_id}


def signed(notification: Any, app_secret: str = APP_SECRET) -> tuple[bytes, dict[str, str]]:
    """The body Meta posts and its headers, signed with ``app_secret``."""
    body = notification if isinstance(notification, bytes) else json.dumps(notification).encode()
    digest = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"content-type": "application/json", "x-hub-signature-256": f"sha256={digest}"}
