"""The Telegram adapter against a fake Bot API served on loopback: what it sends, how
Telegram's answers become Junction's outcomes, and how webhook updates are checked and read."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import select

from junction.api.app import create_app
from junction.channels import registry
from junction.channels.base import (
    Adapter,
    AddressInvalid,
    CallingBack,
    Channel,
    InboundMessage,
    OutboundMessage,
    PermanentFailure,
    Receiving,
    RetryLater,
    SendResult,
)
from junction.channels.http import json_object
from junction.channels.telegram import (
    TelegramAdapter,
    TelegramConfig,
    _error,
)
from junction.engine.dispatcher import Dispatcher
from junction.errors import InvalidSignature, MalformedBody
from junction.store.database import Database
from junction.store.providers import set_channel_provider
from junction.store.sends import SendRequest, accept, get_message
from junction.store.tables import events
from tests.channels.sending import send
from tests.conftest import Tenant
from tests.e2e.server import serving
from tests.fakes.telegram import BOT_TOKEN, FakeTelegram

ADA = 987654321
SECRET = "whs_Telegram-secret_0001"


@pytest.fixture(scope="module")
def served() -> Iterator[FakeTelegram]:
    fake = FakeTelegram()
    with fake.serve():
        yield fake


@pytest.fixture
def telegram(served: FakeTelegram) -> Iterator[FakeTelegram]:
    served.reset()
    yield served
    served.reset()


def adapter(telegram: FakeTelegram | None = None, **overrides: Any) -> TelegramAdapter:
    settings: dict[str, Any] = {
        "bot_token": BOT_TOKEN,
        "base_url": telegram.base_url if telegram else "http://127.0.0.1:9",
        "webhook_secret": SECRET,
        **overrides,
    }
    return TelegramAdapter(TelegramConfig.model_validate(settings))


def message(to: int | str = ADA, **content: Any) -> OutboundMessage:
    return OutboundMessage(1, "k1", 1, Channel.TELEGRAM, str(to), content or {"text": "Hi Ada"})


# -- sending -------------------------------------------------------------------------------


def test_the_adapter_receives_messages_but_no_delivery_callbacks() -> None:
    built = adapter()
    assert isinstance(built, Adapter) and isinstance(built, Receiving)
    assert not isinstance(built, CallingBack)
    caps = TelegramAdapter.capabilities
    assert (caps.two_way, caps.rich_media, caps.buttons, caps.max_length) == (
        True,
        True,
        True,
        4096,
    )
    assert TelegramConfig.secret_fields == {"bot_token", "webhook_secret"}


def test_a_text_is_sent_with_sendmessage(telegram) -> None:
    [result] = send(adapter(telegram), message(text="<b>Hi</b> Ada", parse_mode="HTML"))
    [request] = telegram.requests
    assert (request.token, request.method) == (BOT_TOKEN, "sendMessage")
    assert request.headers["content-type"] == "application/json"
    assert request.body == {"chat_id": ADA, "text": "<b>Hi</b> Ada", "parse_mode": "HTML"}
    assert result == SendResult(provider_message_id=f"{ADA}:1", details={"method": "sendMessage"})


def test_a_photo_is_sent_with_sendphoto_and_its_caption(telegram) -> None:
    photo = "https://example.com/cat.jpg"
    [captioned, from_text] = send(
        adapter(telegram),
        message(photo=photo, caption="A cat", text="ignored when there is a caption"),
        message(photo=photo, text="The text as caption", parse_mode="MarkdownV2"),
    )
    assert [r.method for r in telegram.requests] == ["sendPhoto", "sendPhoto"]
    assert telegram.requests[0].body == {"chat_id": ADA, "photo": photo, "caption": "A cat"}
    assert telegram.requests[1].body == {
        "chat_id": ADA,
        "photo": photo,
        "caption": "The text as caption",
        "parse_mode": "MarkdownV2",
    }
    assert isinstance(captioned, SendResult) and captioned.provider_message_id == f"{ADA}:1"
    assert isinstance(from_text, SendResult) and from_text.provider_message_id == f"{ADA}:2"


def test_buttons_are_sent_as_an_inline_keyboard_of_url_buttons(telegram) -> None:
    buttons = [
        {"text": "Track my order", "url": "https://shop.example/orders/42"},
        {"text": "Help", "url": "https://shop.example/help"},
    ]
    [result, bad] = send(
        adapter(telegram),
        message(text="Shipped!", buttons=buttons),
        message(text="Shipped!", buttons=[{"text": "Go", "url": "javascript:alert(1)"}]),
    )
    assert isinstance(result, SendResult)
    assert telegram.requests[0].body["reply_markup"] == {
        "inline_keyboard": [[buttons[0]], [buttons[1]]]
    }
    assert isinstance(bad, PermanentFailure) and "content.buttons.0.url" in bad.reason
    assert len(telegram.requests) == 1


def test_a_channel_username_is_recorded_with_the_numeric_chat_id(telegram) -> None:
    [result] = send(adapter(telegram), message(to="@junction_news"))
    assert telegram.requests[0].body["chat_id"] == "@junction_news"
    assert isinstance(result, SendResult)
    assert result.provider_message_id == "-1001234567890:1"


def test_content_that_telegram_would_refuse_fails_without_calling(telegram) -> None:
    outcomes = send(
        adapter(telegram),
        message(text=""),
        message(caption="no text, no photo"),
        message(text="x" * 4097),
        message(photo="https://example.com/a.png", caption="c" * 1025),
        message(text="hi", parse_mode="BBCode"),
        message(to="not a chat"),
    )
    assert [type(o) for o in outcomes] == [PermanentFailure] * 5 + [AddressInvalid]
    assert "at most 4096" in outcomes[2].reason and "at most 1024" in outcomes[3].reason
    assert telegram.requests == []


def test_the_bot_token_and_secret_are_checked_in_the_configuration() -> None:
    with pytest.raises(ValidationError) as caught:
        TelegramConfig.model_validate(
            {"bot_token": "123/../x", "webhook_secret": "has spaces", "extra": 1}
        )
    assert sorted(str(e["loc"][0]) for e in caught.value.errors()) == [
        "bot_token",
        "extra",
        "webhook_secret",
    ]
    config = TelegramConfig.model_validate({"bot_token": BOT_TOKEN})
    assert config.base_url == "https://api.telegram.org" and config.webhook_secret is None


# -- errors --------------------------------------------------------------------------------


def test_a_chat_that_blocked_the_bot_is_unsubscribed(telegram) -> None:
    telegram.block(42)
    [blocked, fine] = send(adapter(telegram), message(to=42), message())
    assert isinstance(blocked, AddressInvalid) and blocked.status == "unsubscribed"
    assert blocked.reason == "Telegram error 403: Forbidden: bot was blocked by the user"
    assert isinstance(fine, SendResult)  # only that chat is refused


def test_an_unknown_chat_is_invalid(telegram) -> None:
    telegram.unknown(43)
    [unknown] = send(adapter(telegram), message(to=43))
    assert isinstance(unknown, AddressInvalid) and unknown.status == "invalid"
    assert unknown.reason == "Telegram error 400: Bad Request: chat not found"


def test_a_wrong_token_fails_for_good_and_says_what_to_check(telegram) -> None:
    [failed] = send(adapter(telegram, bot_token="1:wrong"), message())
    assert type(failed) is PermanentFailure
    assert failed.reason == (
        "Telegram error 401: Unauthorized; check the bot_token of this provider"
    )


def test_a_rate_limit_is_retried_no_sooner_than_retry_after(telegram) -> None:
    telegram.fail_next(1, status=429, retry_after=7)
    [limited, later] = send(adapter(telegram), message(), message())
    assert isinstance(limited, RetryLater) and limited.retry_after == 7
    assert limited.reason == "Telegram error 429: Too Many Requests: retry after 7"
    assert isinstance(later, SendResult)
    assert [r.answered for r in telegram.requests] == [429, 200]


def test_an_outage_is_retried(telegram) -> None:
    telegram.fail_next(2, status=502)
    [first, second, third] = send(adapter(telegram), message(), message(), message())
    assert isinstance(first, RetryLater) and first.retry_after is None
    assert first.reason == "Telegram error 502: Bad Gateway" and isinstance(second, RetryLater)
    assert isinstance(third, SendResult)


def test_other_bad_requests_fail_for_good_with_telegrams_description(telegram) -> None:
    telegram.reject(44, 400, "Bad Request: not enough rights to send text messages to the chat")
    [failed] = send(adapter(telegram), message(to=44))
    assert type(failed) is PermanentFailure
    assert failed.reason == (
        "Telegram error 400: Bad Request: not enough rights to send text messages to the chat"
    )


def test_a_group_that_became_a_supergroup_is_invalid_and_names_the_new_chat(telegram) -> None:
    telegram.reject(
        -4001,
        400,
        "Bad Request: group chat was upgraded to a supergroup chat",
        {"migrate_to_chat_id": -1004001},
    )
    [moved] = send(adapter(telegram), message(to=-4001))
    assert isinstance(moved, AddressInvalid) and moved.status == "invalid"
    assert moved.reason.endswith("(the chat is now -1004001)")


def test_a_telegram_that_cannot_be_reached_is_retried_without_leaking_the_token() -> None:
    gone = FakeTelegram()
    with gone.serve():
        pass  # its port is closed again
    [outcome] = send(adapter(gone), message())
    assert isinstance(outcome, RetryLater) and outcome.reason.startswith("cannot reach Telegram")
    assert BOT_TOKEN not in outcome.reason


def test_the_bot_token_never_reaches_the_logs(telegram, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="httpx"):
        [result] = send(adapter(telegram), message())
    assert isinstance(result, SendResult)
    assert "/bot<redacted>/sendMessage" in caplog.text  # httpx logged the request…
    assert BOT_TOKEN not in caplog.text  # …without the token


def test_one_adapter_sends_many_at_once_on_kept_connections(telegram) -> None:
    bot = adapter(telegram)

    async def scenario() -> list[SendResult]:
        try:
            first = await bot.send(message())
            second = await bot.send(message())
            crowd = await asyncio.gather(*(bot.send(message(text=f"n°{i}")) for i in range(20)))
            return [first, second, *crowd]
        finally:
            await bot.aclose()

    results = asyncio.run(scenario())
    assert telegram.requests[0].client == telegram.requests[1].client
    assert len({r.provider_message_id for r in results}) == 22


# -- inbound -------------------------------------------------------------------------------


def body(update: Any) -> bytes:
    return json.dumps(update).encode()


def headers(secret: str | None = SECRET) -> dict[str, str]:
    # The API hands adapters Starlette's headers, whose names are lower case.
    found = {"content-type": "application/json"}
    if secret is not None:
        found["x-telegram-bot-api-secret-token"] = secret
    return found


def test_a_text_update_becomes_an_inbound_message(telegram) -> None:
    update = telegram.update(update_id=10001, chat_id=ADA, text="STOP", date=1_763_900_000)
    [got] = adapter().parse_inbound(headers(), body(update))
    assert got == InboundMessage(
        channel="telegram",
        sender_id=str(ADA),
        external_id="telegram:10001",
        text="STOP",
        sent_at=datetime(2025, 11, 23, 12, 13, 20, tzinfo=UTC),
        sender_name="Ada Lovelace",
        raw=update,
    )
    # The header's name is matched whatever its case; the URL plays no part.
    [same] = adapter().parse_inbound(
        {"X-Telegram-Bot-Api-Secret-Token": SECRET}, body(update), "https://j.example/hooks/1"
    )
    assert same == got


def test_the_same_update_twice_has_the_same_dedup_key(telegram) -> None:
    update = telegram.update(update_id=777, chat_id=ADA)
    [first] = adapter().parse_inbound(headers(), body(update))
    [again] = adapter().parse_inbound(headers(), body(update))
    [other] = adapter().parse_inbound(headers(), body(telegram.update(778, ADA)))
    assert first.external_id == again.external_id == "telegram:777"
    assert other.external_id != first.external_id


def test_an_update_without_text_gives_no_message(telegram) -> None:
    sticker = telegram.update(update_id=5, chat_id=ADA, text=None)
    assert adapter().parse_inbound(headers(), body(sticker)) == []
    edited = {"update_id": 6, "edited_message": sticker["message"]}
    assert adapter().parse_inbound(headers(), body(edited)) == []


@pytest.mark.parametrize("secret", [None, "", "wrong", SECRET + "x", SECRET.upper(), "é"])
def test_a_wrong_or_missing_secret_is_refused(telegram, secret) -> None:
    update = body(telegram.update(update_id=1, chat_id=ADA))
    with pytest.raises(InvalidSignature):
        adapter().parse_inbound(headers(secret), update)


def test_no_update_is_accepted_without_a_configured_secret(telegram) -> None:
    update = body(telegram.update(update_id=1, chat_id=ADA))
    with pytest.raises(InvalidSignature, match="webhook_secret"):
        adapter(webhook_secret=None).parse_inbound(headers(), update)


@pytest.mark.parametrize(
    ("junk", "field"),
    [
        (b"", "body"),
        (b"not json", "body"),
        (b"\xff\xfe\x00", "body"),
        (b"[" * 100_000 + b"]" * 100_000, "body"),
        (b"[1, 2]", "body"),
        (b'{"update_id": "1"}', "update_id"),
        (b'{"update_id": true}', "update_id"),
        (b'{"update_id": 1, "message": "hi"}', "message"),
        (b'{"update_id": 1, "message": {"text": "hi", "date": 1}}', "message.chat.id"),
        (b'{"update_id": 1, "message": {"text": "hi", "chat": {"id": 1}}}', "message.date"),
        (
            b'{"update_id": 1, "message": {"text": "hi", "chat": {"id": 1}, "date": 1e400}}',
            "message.date",
        ),
        (
            b'{"update_id": 1, "message": {"text": "hi", "chat": {"id": 1}, "date": 10e20}}',
            "message.date",
        ),
        (
            b'{"update_id": 1, "message": {"text": "hi", "chat": {"id": 1}, "date": '
            + b"9" * 30
            + b"}}",
            "message.date",
        ),
    ],
)
def test_a_body_that_is_not_an_update_is_malformed(junk, field) -> None:
    with pytest.raises(MalformedBody) as caught:
        adapter().parse_inbound(headers(), junk)
    assert [e.field for e in caught.value.errors] == [field]


def junk_bodies(seed: int, count: int) -> Iterator[bytes]:
    """Random bytes, random JSON, and mutations of a real update."""
    rng = random.Random(seed)
    real = body(FakeTelegram().update(update_id=1, chat_id=ADA))
    values: list[Any] = [None, True, 0, -1, 2**70, 1.5, "", "x", [], {}, [1], {"a": 1}]
    keys = ["update_id", "message", "chat", "id", "text", "date", "from", "first_name"]

    def value(depth: int = 0) -> Any:
        if depth > 3 or rng.random() < 0.5:
            return copy.deepcopy(rng.choice(values))  # never a shared, mutable one
        if rng.random() < 0.5:
            return [value(depth + 1) for _ in range(rng.randrange(3))]
        return {rng.choice(keys): value(depth + 1) for _ in range(rng.randrange(4))}

    for i in range(count):
        kind = i % 4
        if kind == 0:
            yield rng.randbytes(rng.randrange(40))
        elif kind == 1:
            yield json.dumps(value()).encode()
        elif kind == 2:
            update = {"update_id": rng.choice([1, *values]), "message": value()}
            if rng.random() < 0.5 and isinstance(update["message"], dict):
                update["message"] |= {"text": rng.choice(values), "chat": value()}
            yield json.dumps(update).encode()
        else:
            mutated = bytearray(real)
            for _ in range(rng.randrange(1, 4)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            yield bytes(mutated)


def test_junk_bodies_give_messages_or_malformed_body_and_nothing_else() -> None:
    bot = adapter()
    outcomes = {"message": 0, "nothing": 0, "malformed": 0}
    for junk in junk_bodies(seed=20261123, count=800):
        try:
            parsed = bot.parse_inbound(headers(), junk)
        except MalformedBody:
            outcomes["malformed"] += 1
        else:
            assert isinstance(parsed, list)
            assert all(isinstance(m, InboundMessage) for m in parsed)
            outcomes["message" if parsed else "nothing"] += 1
    assert min(outcomes.values()) >= 5, outcomes  # every path exercised


def test_answers_that_are_not_bot_api_json_are_still_read() -> None:
    proxy = httpx.Response(502, text="<html>Bad gateway</html>")
    outage = _error(proxy, json_object(proxy))
    assert isinstance(outage, RetryLater) and outage.reason == "Telegram error 502: Bad Gateway"
    odd = httpx.Response(200, json={"ok": False})  # 200 but not a success: try again later
    assert isinstance(_error(odd, json_object(odd)), RetryLater)
    limited = httpx.Response(
        429, json={"ok": False, "error_code": 429, "parameters": {"retry_after": "soon"}}
    )
    unknown_wait = _error(limited, json_object(limited))
    assert isinstance(unknown_wait, RetryLater) and unknown_wait.retry_after is None


# -- through the dispatcher and Junction's hook, on both databases -------------------------
# These need the provider registered: "telegram" in junction.channels.registry.PROVIDERS.

registered = pytest.mark.skipif(
    "telegram" not in registry.PROVIDERS,
    reason="telegram is not in junction.channels.registry.PROVIDERS yet",
)


def use_telegram(database: Database, tenant: Tenant, clock: Any, settings: dict[str, Any]) -> None:
    with database.write() as conn:
        set_channel_provider(conn, tenant.id, "telegram", "telegram", settings, clock.now())


def queue(database: Database, tenant: Tenant, clock: Any, chat_id: int, text: str) -> int:
    with database.write() as conn:
        answer = accept(
            conn,
            tenant.id,
            SendRequest(channel="telegram", to={"chatId": str(chat_id)}, content={"text": text}),
            clock.now(),
        )
    return int(answer.body["id"])


@registered
def test_the_dispatcher_sends_through_telegram_and_records_the_outcome(
    database, clock, tenant, telegram
) -> None:
    settings = {"bot_token": BOT_TOKEN, "base_url": telegram.base_url}
    use_telegram(database, tenant, clock, settings)
    telegram.block(42)
    ada = queue(database, tenant, clock, ADA, "Your order shipped")
    blocked = queue(database, tenant, clock, 42, "Your order shipped")

    assert asyncio.run(Dispatcher(database, clock).drain()) == 2

    [sent] = telegram.sent
    assert sent.body == {"chat_id": ADA, "text": "Your order shipped"}
    with database.read() as conn:
        delivered = get_message(conn, tenant.id, ada)
        refused = get_message(conn, tenant.id, blocked)
    assert delivered["status"] == "sent" and delivered["provider"] == "telegram"
    assert delivered["providerMessageId"] == f"{ADA}:1"
    assert refused["status"] == "failed" and refused["attempts"] == 1
    assert refused["lastError"] == "Telegram error 403: Forbidden: bot was blocked by the user"


@registered
def test_an_update_posted_to_junctions_hook_is_stored_once(
    settings, database, clock, tenant, telegram
) -> None:
    use_telegram(database, tenant, clock, {"bot_token": BOT_TOKEN, "webhook_secret": SECRET})
    update = telegram.update(update_id=4242, chat_id=ADA, text="Where is my order?")
    with serving(create_app(settings, database, clock)) as junction:
        hook = f"{junction}/hooks/{tenant.id}/telegram"
        secret = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
        first = httpx.post(hook, json=update, headers=secret)
        again = httpx.post(hook, json=update, headers=secret)  # Telegram redelivers
        forged = httpx.post(hook, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "x"})
        junk = httpx.post(hook, content=b"{not json", headers=secret)
    assert first.status_code == 200 and first.json()["inbound"] == 1
    assert again.status_code == 200
    assert (forged.status_code, junk.status_code) == (403, 400)
    with database.read() as conn:
        stored = conn.execute(
            select(events.c.message_id, events.c.properties).where(
                events.c.name == "message.received"
            )
        ).all()
    assert [(m, p["text"], p["from"]) for m, p in stored] == [
        ("telegram:4242", "Where is my order?", str(ADA))
    ]
