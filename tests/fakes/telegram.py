"""A fake Telegram Bot API, served for real on loopback, for tests that send to chats.

It follows the Bot API's documented shapes (https://core.telegram.org/bots/api):

- ``POST /bot{token}/sendMessage`` and ``/bot{token}/sendPhoto``, with a JSON body; a token
  other than the fake's answers 401 ``{"ok": false, "error_code": 401, "description":
  "Unauthorized"}``; an unknown method answers 404 "Not Found";
- ``chat_id`` is required (400 "Bad Request: chat_id is empty"), as are ``text`` for
  sendMessage (400 "Bad Request: message text is empty") and ``photo`` for sendPhoto;
  a text over 4,096 characters answers 400 "Bad Request: message is too long", a caption
  over 1,024 "Bad Request: message caption is too long", an unknown ``parse_mode`` 400
  "Bad Request: unsupported parse_mode";
- success answers ``{"ok": true, "result": Message}``, with ``message_id`` counting up per
  chat and ``chat.id`` the chat's;
- every error is ``{"ok": false, "error_code": n, "description": "..."}``, with
  ``parameters.retry_after`` on 429.

Every request is recorded (``requests``). Scripting, safe from the test's thread:

    telegram = FakeTelegram()
    telegram.block(42)                     # 403 Forbidden: bot was blocked by the user
    telegram.unknown(43)                   # 400 Bad Request: chat not found
    telegram.reject(44, 400, "Bad Request: not enough rights to send text messages")
    telegram.fail_next(1, status=429, retry_after=7)
    telegram.fail_next(2, status=502)
    with telegram.serve() as base_url:
        ...
        telegram.reset()

And the other way round: ``update(...)`` is an Update as Telegram posts it to a webhook.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.e2e.server import serving

BOT_TOKEN = "123456789:AAFakeTelegramBotToken_for-tests0001"
BOT = {"id": 123456789, "is_bot": True, "first_name": "Junction", "username": "junction_bot"}
PARSE_MODES = {"HTML", "MarkdownV2", "Markdown"}
DESCRIPTIONS = {
    429: "Too Many Requests: retry after {retry_after}",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


@dataclass
class Recorded:
    """One request the fake received, and what it answered."""

    token: str  # as in the path
    method: str  # sendMessage, sendPhoto…
    body: Any  # the JSON sent (None when it was not JSON)
    headers: dict[str, str]
    client: tuple[str, int] | None
    answered: int | None = None


@dataclass(frozen=True)
class _Outage:
    status: int
    retry_after: int | None


@dataclass
class FakeTelegram:
    token: str = BOT_TOKEN
    requests: list[Recorded] = field(default_factory=list)
    base_url: str = ""  # while serving

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        # chat → (HTTP status, description, parameters)
        self._rejections: dict[str, tuple[int, str, dict[str, Any] | None]] = {}
        self._script: deque[_Outage] = deque()
        self._last_message_id: dict[str, int] = {}
        self._date = 1_763_900_000  # Unix time of the next message: a fixed, moving clock
        self.app = self._build_app()

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._rejections.clear()
            self._script.clear()
            self._last_message_id.clear()

    # -- scripting ---------------------------------------------------------------------

    def block(self, chat_id: int | str) -> None:
        """The user of this chat blocked the bot: 403."""
        self.reject(chat_id, 403, "Forbidden: bot was blocked by the user")

    def unknown(self, chat_id: int | str) -> None:
        """This chat does not exist for the bot: 400 "chat not found"."""
        self.reject(chat_id, 400, "Bad Request: chat not found")

    def reject(
        self,
        chat_id: int | str,
        status: int,
        description: str,
        parameters: dict[str, Any] | None = None,
    ) -> None:
        """Answer every send to this chat with this error."""
        with self._lock:
            self._rejections[str(chat_id)] = (status, description, parameters)

    def fail_next(self, count: int, status: int = 502, retry_after: int | None = None) -> None:
        """Answer the next ``count`` requests with ``status`` (429: with retry_after)."""
        with self._lock:
            self._script.extend([_Outage(status, retry_after)] * count)

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
        """Sends that succeeded."""
        return [r for r in self.requests if r.answered == 200]

    # -- updates, the other way round --------------------------------------------------

    def update(
        self,
        update_id: int,
        chat_id: int,
        text: str | None = "hello",
        date: int = 1_763_900_000,
        first_name: str = "Ada",
        last_name: str | None = "Lovelace",
    ) -> dict[str, Any]:
        """An Update carrying a private message, as Telegram posts it."""
        user: dict[str, Any] = {"id": chat_id, "is_bot": False, "first_name": first_name}
        if last_name:
            user["last_name"] = last_name
        user |= {"username": "ada", "language_code": "en"}
        chat = {k: v for k, v in user.items() if k not in ("is_bot", "language_code")}
        message: dict[str, Any] = {
            "message_id": update_id % 1000 + 1,
            "from": user,
            "chat": {**chat, "type": "private"},
            "date": date,
        }
        if text is not None:
            message["text"] = text
        else:
            message["sticker"] = {"file_id": "CAACAgIAAxk", "width": 512, "height": 512}
        return {"update_id": update_id, "message": message}

    # -- the API -----------------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/bot{token}/{method}")
        async def call(token: str, method: str, request: Request) -> JSONResponse:
            raw = await request.body()
            try:
                body = await request.json() if raw else {}
            except ValueError:
                body = None
            recorded = Recorded(
                token=token,
                method=method,
                body=body,
                headers=dict(request.headers),
                client=(request.client.host, request.client.port) if request.client else None,
            )
            with self._lock:
                self.requests.append(recorded)
                answer = self._answer(recorded)
            recorded.answered = answer.status_code
            return answer

        return app

    def _answer(self, request: Recorded) -> JSONResponse:  # called with the lock held
        if self._script:
            outage = self._script.popleft()
            if outage.status == 429:
                retry_after = outage.retry_after if outage.retry_after is not None else 1
                description = DESCRIPTIONS[429].format(retry_after=retry_after)
                return _error(429, description, {"retry_after": retry_after})
            return _error(outage.status, DESCRIPTIONS.get(outage.status, "Server Error"))
        if request.token != self.token:
            return _error(401, "Unauthorized")
        if request.method not in ("sendMessage", "sendPhoto"):
            return _error(404, "Not Found")
        body = request.body
        if not isinstance(body, dict):
            return _error(400, "Bad Request: invalid JSON")
        chat_id = body.get("chat_id")
        if chat_id is None or chat_id == "":
            return _error(400, "Bad Request: chat_id is empty")
        chat = str(chat_id)
        parse_mode = body.get("parse_mode")
        if parse_mode is not None and parse_mode not in PARSE_MODES:
            return _error(400, f"Bad Request: unsupported parse_mode {parse_mode!r}")
        message: dict[str, Any]
        if request.method == "sendMessage":
            text = body.get("text")
            if not isinstance(text, str) or not text.strip():
                return _error(400, "Bad Request: message text is empty")
            if len(text) > 4096:
                return _error(400, "Bad Request: message is too long")
            message = {"text": text}
        else:
            photo = body.get("photo")
            if not isinstance(photo, str) or not photo:
                return _error(400, "Bad Request: there is no photo in the request")
            caption = body.get("caption")
            if isinstance(caption, str) and len(caption) > 1024:
                return _error(400, "Bad Request: message caption is too long")
            message = {"photo": [{"file_id": "AgACAgQAAxk", "file_unique_id": "AQAD", "width": 90}]}
            if caption:
                message["caption"] = caption
        if chat in self._rejections:
            return _error(*self._rejections[chat])
        message_id = self._last_message_id.get(chat, 0) + 1
        self._last_message_id[chat] = message_id
        self._date += 1
        numeric = chat_id if isinstance(chat_id, int) else -1001234567890  # a @channel's id
        result = {
            "message_id": message_id,
            "from": BOT,
            "chat": {"id": numeric, "type": "private" if numeric > 0 else "channel"},
            "date": self._date,
            **message,
        }
        return JSONResponse({"ok": True, "result": result})


def _error(status: int, description: str, parameters: dict[str, Any] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return JSONResponse(body, status_code=status)
