"""Telegram: messages and photos through the Bot API, and the updates its webhook posts.

Rules kept here (https://core.telegram.org/bots/api):
- each send is one ``POST {base_url}/bot{token}/sendMessage`` (``sendPhoto`` when the content
  has a ``photo``), JSON, through one ``httpx`` client per adapter; the token is checked
  against Telegram's shape (digits, ``:``, then ``[A-Za-z0-9_-]``) so it cannot alter the path;
- the address is a chat id: an integer (negative for groups and channels) or ``@username`` of
  a public channel; anything else is an invalid address and nothing is sent;
- ``{"ok": true, "result": {"message_id": n}}`` is a sent message, recorded as
  ``"{chat_id}:{message_id}"`` (a message id is only unique within its chat);
- Telegram's errors become Junction's: 429 is retried no sooner than
  ``parameters.retry_after``; 5xx, a connection error and a timeout are retried; 403 (the
  bot was blocked, the user deactivated, the bot removed from the group) marks the address
  ``unsubscribed``; 400 "chat not found" (and its kin, and a group that became a supergroup)
  marks it ``invalid``; every other 4xx fails for good with Telegram's description;
- Telegram takes no idempotency key: a timeout after the request went out may hide a message
  Telegram did send, and its retry sends it twice (at-least-once, as the dispatcher says);
- inbound (``Receiving``), Telegram posts each Update to the webhook set with
  ``setWebhook``; it is accepted only when ``X-Telegram-Bot-Api-Secret-Token`` equals the
  configured ``webhook_secret`` (compared in constant time; no secret configured accepts
  nothing). Any bytes whatever give messages, ``InvalidSignature`` or ``MalformedBody``,
  never another exception. An update with a text ``message`` gives one message; others
  (edits, stickers, button presses, channel posts) none. The dedup key is
  ``telegram:{update_id}``: Telegram posts an update again until it is acknowledged;
- Telegram sends no delivery receipts, so this adapter has no ``parse_webhook`` and is not
  ``CallingBack``: a message stays ``sent``.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
from pydantic import Field

from junction.channels.base import (
    AddressInvalid,
    Capabilities,
    Channel,
    DeliveryError,
    InboundMessage,
    OutboundMessage,
    PermanentFailure,
    ProviderConfig,
    RetryLater,
    SendResult,
)
from junction.channels.http import LazyClient, json_object
from junction.errors import FieldError, InvalidSignature, MalformedBody

HTTP_URL = r"^https?://\S+$"
BOT_TOKEN = r"^[0-9]{1,20}:[A-Za-z0-9_-]{1,100}$"
# What Telegram allows in setWebhook's secret_token.
WEBHOOK_SECRET = r"^[A-Za-z0-9_-]{1,256}$"
SECRET_HEADER = "x-telegram-bot-api-secret-token"
CHAT_ID = re.compile(r"-?[0-9]{1,20}|@[A-Za-z][A-Za-z0-9_]{3,31}")
MAX_TEXT = 4096  # characters of a message's text, after entities are parsed
MAX_CAPTION = 1024  # characters of a photo's caption
PARSE_MODES = frozenset({"HTML", "MarkdownV2", "Markdown"})
MAX_BUTTONS = 10  # URL buttons under a message, one a row
MAX_BUTTON_TEXT = 64
# 400 descriptions that say the chat itself does not exist (or not for this bot).
DEAD_CHATS = ("chat not found", "user not found", "peer_id_invalid", "chat_id is empty")
MAX_REASON_CHARACTERS = 200  # of Telegram's description, quoted in the stored error
TOKEN_IN_PATH = re.compile(r"/bot[0-9]{1,20}:[A-Za-z0-9_-]+")


class _RedactBotTokens(logging.Filter):
    """httpx logs each request's URL at INFO, and the Bot API puts the token in the path:
    hide it in the "httpx" logger's records, whoever logs them."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a record that cannot be formatted: leave it to the handler
            return True
        if TOKEN_IN_PATH.search(text):
            record.msg, record.args = TOKEN_IN_PATH.sub("/bot<redacted>", text), None
        return True


_httpx_logger = logging.getLogger("httpx")
if not any(isinstance(f, _RedactBotTokens) for f in _httpx_logger.filters):
    _httpx_logger.addFilter(_RedactBotTokens())


class TelegramConfig(ProviderConfig):
    secret_fields: ClassVar[frozenset[str]] = frozenset({"bot_token", "webhook_secret"})

    bot_token: str = Field(pattern=BOT_TOKEN, description="from @BotFather: 123456:ABC-…")
    base_url: str = Field(
        default="https://api.telegram.org",
        pattern=HTTP_URL,
        description="a local Bot API server, or a test server",
    )
    webhook_secret: str | None = Field(
        default=None,
        pattern=WEBHOOK_SECRET,
        description="the secret_token given to setWebhook; without it no update is accepted",
    )
    timeout: float = Field(default=10.0, gt=0, le=60, description="seconds for each request")


class TelegramAdapter:
    name: ClassVar[str] = "telegram"
    channels: ClassVar[frozenset[Channel]] = frozenset({Channel.TELEGRAM})
    capabilities: ClassVar[Capabilities] = Capabilities(
        max_length=MAX_TEXT, rich_media=True, buttons=True, two_way=True
    )
    Config: ClassVar[type[ProviderConfig]] = TelegramConfig

    def __init__(self, config: TelegramConfig) -> None:
        self.config = config
        # Built on first send: an inbound update builds an adapter only to check its secret.
        self._client = LazyClient(config.base_url, config.timeout)

    def _http(self) -> httpx.AsyncClient:
        return self._client.get()

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- inbound -----------------------------------------------------------------------

    def parse_inbound(
        self, headers: Mapping[str, str], body: bytes, url: str = ""
    ) -> list[InboundMessage]:
        """The messages of one webhook post, once Telegram's secret header is checked
        (``Receiving``; Telegram signs nothing else, so ``url`` is not used).

        Raises ``InvalidSignature`` (a missing or wrong secret, or none configured) or
        ``MalformedBody``; an update without message text gives no message.
        """
        given = next((v for k, v in headers.items() if k.lower() == SECRET_HEADER), None)
        expected = self.config.webhook_secret
        if not expected:
            raise InvalidSignature("configure webhook_secret to accept Telegram updates")
        if given is None or not hmac.compare_digest(
            given.encode("utf-8", "replace"), expected.encode("utf-8")
        ):
            raise InvalidSignature()
        return inbound_of(parse_update(body))

    # -- sending -----------------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> SendResult:
        chat_id = message.to.strip()
        if not CHAT_ID.fullmatch(chat_id):
            raise AddressInvalid(
                f"{message.to!r} is not a Telegram chat id (an integer, or @channelusername)",
                "invalid",
            )
        method, payload = _request(chat_id, message.content)
        result = await self._call(method, payload)
        message_id = result.get("message_id")
        chat = result.get("chat")
        sent_to = chat.get("id") if isinstance(chat, dict) else None
        if not isinstance(sent_to, int) or isinstance(sent_to, bool):
            sent_to = chat_id
        if not isinstance(message_id, int) or isinstance(message_id, bool):
            return SendResult(provider_message_id=None, details={"method": method})
        return SendResult(provider_message_id=f"{sent_to}:{message_id}", details={"method": method})

    async def _call(self, method: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """One Bot API call: its ``result`` on success, else the mapped delivery error."""
        path = f"/bot{self.config.bot_token}/{method}"
        try:
            response = await self._http().post(path, json=payload)
        except httpx.TimeoutException as error:
            raise RetryLater(
                f"Telegram did not answer within {self.config.timeout:g} s ({type(error).__name__})"
            ) from None
        except httpx.TransportError as error:
            # The message of a transport error may quote the URL, and so the token: not it.
            raise RetryLater(f"cannot reach Telegram: {type(error).__name__}") from None
        body = json_object(response)
        if response.is_success and body.get("ok") is True:
            result = body.get("result")
            return result if isinstance(result, dict) else {}
        raise _error(response, body)


def _request(chat_id: str, content: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The Bot API method and JSON body for a message's content."""
    text, photo = content.get("text"), content.get("photo")
    caption, parse_mode = content.get("caption"), content.get("parse_mode")
    payload: dict[str, Any] = {"chat_id": int(chat_id) if chat_id[0] != "@" else chat_id}
    if content.get("buttons") is not None:
        payload["reply_markup"] = {"inline_keyboard": _buttons(content["buttons"])}
    if parse_mode is not None:
        if parse_mode not in PARSE_MODES:
            raise PermanentFailure(
                f"content.parse_mode must be one of {', '.join(sorted(PARSE_MODES))}"
            )
        payload["parse_mode"] = parse_mode
    if photo is not None:
        if not isinstance(photo, str) or not photo.strip():
            raise PermanentFailure("content.photo must be a URL (or a Telegram file_id)")
        # The caption is content.caption, else the text.
        words = caption if caption is not None else text
        if words is not None and not isinstance(words, str):
            raise PermanentFailure("content.caption must be text")
        if words and len(words) > MAX_CAPTION:
            raise PermanentFailure(
                f"a photo's caption is {len(words)} characters; Telegram takes at most"
                f" {MAX_CAPTION}"
            )
        payload["photo"] = photo
        if words:
            payload["caption"] = words
        return "sendPhoto", payload
    if not isinstance(text, str) or not text.strip():
        raise PermanentFailure("a telegram message needs content.text (or content.photo)")
    if len(text) > MAX_TEXT:
        raise PermanentFailure(
            f"the text is {len(text)} characters; Telegram takes at most {MAX_TEXT}"
        )
    payload["text"] = text
    return "sendMessage", payload


def _buttons(buttons: Any) -> list[list[dict[str, str]]]:
    """content.buttons, ``[{"text", "url"}, …]``, as an inline keyboard of one button a row."""
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= MAX_BUTTONS:
        raise PermanentFailure(f"content.buttons must be a list of 1 to {MAX_BUTTONS} buttons")
    rows = []
    for i, button in enumerate(buttons):
        text = button.get("text") if isinstance(button, dict) else None
        url = button.get("url") if isinstance(button, dict) else None
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_BUTTON_TEXT:
            raise PermanentFailure(f"content.buttons.{i}.text must be 1 to 64 characters")
        if not isinstance(url, str) or not re.fullmatch(r"(https?|tg)://\S+", url):
            raise PermanentFailure(f"content.buttons.{i}.url must be an http(s) or tg:// URL")
        rows.append([{"text": text, "url": url}])
    return rows


def _error(response: httpx.Response, body: Mapping[str, Any]) -> DeliveryError:
    code = body.get("error_code")
    status = response.status_code
    if response.is_success and isinstance(code, int) and not isinstance(code, bool):
        status = code  # a 2xx saying ok false: trust its error_code
    description = body.get("description")
    if not isinstance(description, str) or not description.strip():
        description = response.reason_phrase or "no description"
    description = TOKEN_IN_PATH.sub("/bot<redacted>", description)[:MAX_REASON_CHARACTERS]
    reason = f"Telegram error {status}: {description}"
    parameters = body.get("parameters")
    parameters = parameters if isinstance(parameters, dict) else {}
    if status == 429:
        return RetryLater(reason, _seconds(parameters.get("retry_after")))
    if status >= 500 or 200 <= status < 300:  # 2xx with ok false: not a Bot API answer
        return RetryLater(reason, None)
    if status == 403:  # blocked, deactivated, kicked: the chat wants no more from the bot
        return AddressInvalid(reason, "unsubscribed")
    migrated = parameters.get("migrate_to_chat_id")
    if status == 400 and isinstance(migrated, int):
        return AddressInvalid(f"{reason} (the chat is now {migrated})", "invalid")
    if status == 400 and any(dead in description.lower() for dead in DEAD_CHATS):
        return AddressInvalid(reason, "invalid")
    if status in (401, 404):  # Telegram answers 404 to a token that is not a bot's
        reason += "; check the bot_token of this provider"
    return PermanentFailure(reason)


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return max(0.0, float(value))


# -- inbound -------------------------------------------------------------------------------


def parse_update(body: bytes) -> dict[str, Any]:
    """The Update object of a webhook body, or ``MalformedBody``."""
    try:
        update = json.loads(body)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, nested beyond reason
        raise MalformedBody(FieldError("body", "not JSON: Telegram posts an Update")) from None
    if not isinstance(update, dict):
        raise MalformedBody(FieldError("body", "not an Update object"))
    update_id = update.get("update_id")
    if not isinstance(update_id, int) or isinstance(update_id, bool):
        raise MalformedBody(FieldError("update_id", "an Update needs an integer update_id"))
    return update


def inbound_of(update: Mapping[str, Any]) -> list[InboundMessage]:
    """The text message an Update carries: none for edits, photos, button presses…"""
    message = update.get("message")
    if message is None:
        return []
    if not isinstance(message, dict):
        raise MalformedBody(FieldError("message", "not a Message object"))
    text = message.get("text")
    if not isinstance(text, str):
        return []
    chat = message.get("chat")
    chat_id = chat.get("id") if isinstance(chat, dict) else None
    if not isinstance(chat_id, int) or isinstance(chat_id, bool):
        raise MalformedBody(FieldError("message.chat.id", "a Message needs an integer chat id"))
    date = message.get("date")
    try:
        if isinstance(date, bool) or not isinstance(date, int):
            raise TypeError
        sent_at = datetime.fromtimestamp(date, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise MalformedBody(FieldError("message.date", "not a Unix time")) from None
    return [
        InboundMessage(
            channel=Channel.TELEGRAM.value,
            sender_id=str(chat_id),
            external_id=f"telegram:{update['update_id']}",
            text=text,
            sent_at=sent_at,
            sender_name=_name(message.get("from"), chat),
            raw=update,
        )
    ]


def _name(sender: Any, chat: Any) -> str | None:
    for who in (sender, chat):
        if not isinstance(who, dict):
            continue
        parts = [who.get("first_name"), who.get("last_name")]
        full = " ".join(p for p in parts if isinstance(p, str) and p)
        for name in (full, who.get("username"), who.get("title")):
            if isinstance(name, str) and name:
                return name
    return None
