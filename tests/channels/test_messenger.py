"""The Messenger adapter against a fake Send API served on loopback: what it sends, how Graph
API errors become Junction's outcomes, and how signed webhooks are checked and read."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from junction.channels.base import (
    Adapter,
    AddressInvalid,
    CallingBack,
    Channel,
    DeliveryUpdate,
    InboundMessage,
    OutboundMessage,
    PermanentFailure,
    Receiving,
    RetryLater,
    SendResult,
    Subscribing,
)
from junction.channels.messenger import MessengerAdapter, MessengerConfig
from junction.channels.meta import signature
from junction.errors import InvalidSignature, MalformedBody
from tests.channels.sending import send
from tests.fakes.messenger import (
    APP_SECRET,
    PAGE_ACCESS_TOKEN,
    VERIFY_TOKEN,
    FakeMessenger,
    delivery,
    read,
    signed,
    text_message,
    webhook,
)

ADA = "1254459154682919"


@pytest.fixture(scope="module")
def served() -> Iterator[FakeMessenger]:
    fake = FakeMessenger()
    with fake.serve():
        yield fake


@pytest.fixture
def messenger(served: FakeMessenger) -> Iterator[FakeMessenger]:
    served.reset()
    yield served
    served.reset()


def adapter(messenger: FakeMessenger | None = None, **overrides: Any) -> MessengerAdapter:
    settings: dict[str, Any] = {
        "page_access_token": PAGE_ACCESS_TOKEN,
        "app_secret": APP_SECRET,
        "verify_token": VERIFY_TOKEN,
        "base_url": messenger.base_url if messenger else "http://127.0.0.1:9",
        **overrides,
    }
    return MessengerAdapter(MessengerConfig.model_validate(settings))


def message(to: str = ADA, **content: Any) -> OutboundMessage:
    return OutboundMessage(1, "k1", 1, Channel.MESSENGER, to, content or {"text": "Hi Ada"})


# -- sending -------------------------------------------------------------------------------


def test_the_adapter_describes_itself() -> None:
    built = adapter()
    assert isinstance(built, Adapter)
    assert isinstance(built, Receiving) and isinstance(built, CallingBack)
    assert isinstance(built, Subscribing)
    caps = MessengerAdapter.capabilities
    assert (caps.two_way, caps.session_window_hours, caps.max_length) == (True, 24, 2000)
    assert MessengerConfig.secret_fields == {"page_access_token", "app_secret", "verify_token"}
    assert MessengerAdapter.channels == {Channel.MESSENGER}


def test_a_text_is_sent_as_a_response(messenger) -> None:
    [result] = send(adapter(messenger), message(text="Your order shipped"))
    [request] = messenger.requests
    assert request.version == "v21.0"
    assert request.authorization == f"Bearer {PAGE_ACCESS_TOKEN}"
    assert request.access_token is None  # the token stays out of the URL
    assert request.body == {
        "recipient": {"id": ADA},
        "messaging_type": "RESPONSE",
        "message": {"text": "Your order shipped"},
    }
    assert result == SendResult(
        provider_message_id="m_FAKE000001", details={"messaging_type": "RESPONSE"}
    )


def test_a_tagged_text_is_sent_as_a_message_tag(messenger) -> None:
    [result] = send(
        adapter(messenger), message(text="Your order shipped", tag="POST_PURCHASE_UPDATE")
    )
    [request] = messenger.requests
    assert request.body == {
        "recipient": {"id": ADA},
        "messaging_type": "MESSAGE_TAG",
        "tag": "POST_PURCHASE_UPDATE",
        "message": {"text": "Your order shipped"},
    }
    assert isinstance(result, SendResult) and result.provider_message_id == "m_FAKE000001"
    assert result.details == {"messaging_type": "MESSAGE_TAG", "tag": "POST_PURCHASE_UPDATE"}


def test_content_messenger_would_refuse_fails_without_calling(messenger) -> None:
    outcomes = send(
        adapter(messenger),
        message(text=""),
        message(text="x" * 2001),
        message(template={"name": "x"}),
        message(text="hi", tag="ISSUE_RESOLUTION"),  # retired by Meta
        message(text="hi", tag="post_purchase_update"),
        message(text="hi", tag=["HUMAN_AGENT"]),
        message(to="+14155550100"),
        message(to="ada"),
        message(to=""),
    )
    assert [type(o) for o in outcomes] == [PermanentFailure] * 6 + [AddressInvalid] * 3
    assert "HUMAN_AGENT" in outcomes[3].reason
    assert messenger.requests == []


def test_a_text_of_2000_characters_is_sent(messenger) -> None:
    [result] = send(adapter(messenger), message(text="x" * 2000))
    assert isinstance(result, SendResult)


def test_the_configuration_is_checked() -> None:
    with pytest.raises(ValidationError) as caught:
        MessengerConfig.model_validate(
            {"page_access_token": "", "api_version": "21", "base_url": "ftp://x", "extra": 1}
        )
    assert sorted(str(e["loc"][0]) for e in caught.value.errors()) == [
        "api_version",
        "base_url",
        "extra",
        "page_access_token",
    ]
    config = MessengerConfig.model_validate({"page_access_token": "t"})
    assert (config.base_url, config.api_version) == ("https://graph.facebook.com", "v21.0")
    assert (config.app_secret, config.verify_token, config.timeout) == (None, None, 10.0)


# -- errors --------------------------------------------------------------------------------


def test_outside_the_window_fails_for_good_and_says_to_use_a_tag(messenger) -> None:
    messenger.reject(ADA, 10, 2018278)
    [closed] = send(adapter(messenger), message())
    assert type(closed) is PermanentFailure
    assert "10/2018278" in closed.reason and "message tag" in closed.reason


def test_code_10_without_the_window_subcode_is_a_plain_failure(messenger) -> None:
    messenger.reject(ADA, 10)
    [failed] = send(adapter(messenger), message())
    assert type(failed) is PermanentFailure and "tag" not in failed.reason


@pytest.mark.parametrize(
    ("code", "subcode", "status"),
    [(551, None, "invalid"), (100, 2018001, "invalid"), (200, 1545041, "unsubscribed")],
)
def test_dead_addresses_are_marked(messenger, code, subcode, status) -> None:
    messenger.reject(ADA, code, subcode)
    [dead, other] = send(adapter(messenger), message(), message(to="9876543210"))
    assert isinstance(dead, AddressInvalid) and dead.status == status
    assert dead.reason.startswith(f"Messenger error {code}")
    assert isinstance(other, SendResult)


def test_code_100_without_the_user_subcode_is_a_plain_failure(messenger) -> None:
    messenger.reject(ADA, 100)
    [failed] = send(adapter(messenger), message())
    assert type(failed) is PermanentFailure and "Messenger error 100" in failed.reason


@pytest.mark.parametrize(
    ("code", "status"),
    [(613, None), (4, None), (32, None), (1200, None), (2, None), (999, 429), (999, 500)],
)
def test_passing_problems_are_retried(messenger, code, status) -> None:
    messenger.fail_next(1, code=code, status=status)
    [failed, later] = send(adapter(messenger), message(), message())
    assert isinstance(failed, RetryLater)
    assert f"Messenger error {code}" in failed.reason
    assert isinstance(later, SendResult)


def test_an_expired_token_fails_for_good_and_says_what_to_check(messenger) -> None:
    [failed] = send(adapter(messenger, page_access_token="EAAGwrong"), message())
    assert type(failed) is PermanentFailure
    assert failed.reason.startswith("Messenger error 190/463: Error validating access token")
    assert failed.reason.endswith("check the page_access_token of this provider")


def test_other_client_errors_fail_for_good(messenger) -> None:
    messenger.reject(ADA, 368)  # blocked for policy violations
    [blocked] = send(adapter(messenger), message())
    assert type(blocked) is PermanentFailure and "Messenger error 368" in blocked.reason


def test_an_unreachable_api_is_retried() -> None:
    gone = FakeMessenger()
    with gone.serve():
        pass
    [outcome] = send(adapter(gone), message())
    assert isinstance(outcome, RetryLater) and outcome.reason.startswith("cannot reach Messenger")
    assert PAGE_ACCESS_TOKEN not in outcome.reason


# -- webhooks ------------------------------------------------------------------------------


def test_deliveries_become_delivery_updates_and_reads_are_ignored() -> None:
    body, headers = signed(webhook(delivery("m_A", "m_B"), read(), delivery("m_C")))
    updates = adapter().parse_webhook(headers, body, "https://j.example/hooks/1/messenger")
    assert [(u.provider_message_id, u.status, u.reason) for u in updates] == [
        ("m_A", "delivered", None),
        ("m_B", "delivered", None),
        ("m_C", "delivered", None),
    ]
    assert all(isinstance(u, DeliveryUpdate) for u in updates)
    assert adapter().parse_inbound(headers, body) == []  # deliveries carry no message


def test_a_delivery_without_mids_gives_nothing() -> None:
    event = delivery()
    del event["delivery"]["mids"]
    body, headers = signed(webhook(event))
    assert adapter().parse_webhook(headers, body) == []


def test_inbound_messages_are_read() -> None:
    text = text_message("m_IN1", text="STOP", timestamp=1763900000123)
    picture = {
        "sender": {"id": "9876543210"},
        "recipient": {"id": "1"},
        "timestamp": 1763900001000,
        "message": {"mid": "m_IN2", "attachments": [{"type": "image", "payload": {"url": "x"}}]},
    }
    echo = text_message("m_ECHO", sender="107765241234567", text="our reply")
    echo["message"]["is_echo"] = True
    body, headers = signed(webhook(text, picture, echo, read()))
    [got, image] = adapter().parse_inbound(headers, body)
    assert got == InboundMessage(
        channel="messenger",
        sender_id=ADA,
        external_id="messenger:m_IN1",
        text="STOP",
        sent_at=datetime(2025, 11, 23, 12, 13, 20, 123000, tzinfo=UTC),
        raw=text,
    )
    assert (image.sender_id, image.external_id, image.text) == ("9876543210", "messenger:m_IN2", "")
    assert adapter().parse_webhook(headers, body) == []


def test_entries_without_messaging_are_ignored() -> None:
    body, headers = signed({"object": "page", "entry": [{"id": "1", "time": 1, "standby": []}]})
    assert adapter().parse_webhook(headers, body) == []
    assert adapter().parse_inbound(headers, body) == []


@pytest.mark.parametrize(
    "header",
    [None, "", "sha256=", "sha256=00", "sha1=abc", "SIGNED", "é", "wrong-secret"],
)
def test_a_wrong_or_missing_signature_is_refused(header) -> None:
    body, headers = signed(webhook(delivery("m_A"), text_message("m_B")))
    if header is None:
        del headers["x-hub-signature-256"]
    elif header == "wrong-secret":
        headers = signed(body, "another secret")[1]
    else:
        headers["x-hub-signature-256"] = header
    with pytest.raises(InvalidSignature):
        adapter().parse_webhook(headers, body)
    with pytest.raises(InvalidSignature):
        adapter().parse_inbound(headers, body)


def test_the_signature_is_checked_before_the_body_is_read() -> None:
    with pytest.raises(InvalidSignature):
        adapter().parse_webhook({"x-hub-signature-256": "sha256=00"}, b"junk")
    with pytest.raises(InvalidSignature):
        adapter().parse_inbound({}, b"junk")


def test_the_signature_covers_the_raw_body_and_the_header_name_is_any_case() -> None:
    body, headers = signed(webhook(delivery("m_A")))
    with pytest.raises(InvalidSignature):
        adapter().parse_webhook(headers, body + b" ")
    assert signature(APP_SECRET, body) == headers["x-hub-signature-256"]
    [update] = adapter().parse_webhook({"X-Hub-Signature-256": signature(APP_SECRET, body)}, body)
    assert update.provider_message_id == "m_A"


def test_nothing_is_accepted_without_an_app_secret() -> None:
    body, headers = signed(webhook(delivery("m_A")))
    with pytest.raises(InvalidSignature, match="app_secret"):
        adapter(app_secret=None).parse_webhook(headers, body)
    with pytest.raises(InvalidSignature, match="app_secret"):
        adapter(app_secret=None).parse_inbound(headers, body)


def test_the_subscription_handshake() -> None:
    ok = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    assert adapter().verify_subscription(ok) == "1158201444"
    for wrong in (
        ok | {"hub.verify_token": "nope"},
        ok | {"hub.verify_token": "é"},
        ok | {"hub.mode": "unsubscribe"},
        {k: v for k, v in ok.items() if k != "hub.verify_token"},
        {k: v for k, v in ok.items() if k != "hub.challenge"},
        {},
    ):
        with pytest.raises(InvalidSignature):
            adapter().verify_subscription(wrong)
    with pytest.raises(InvalidSignature, match="verify_token"):
        adapter(verify_token=None).verify_subscription(ok)


@pytest.mark.parametrize(
    ("junk", "field"),
    [
        (b"", "body"),
        (b"\xff\xfe", "body"),
        (b"[" * 100_000 + b"]" * 100_000, "body"),
        (b"[]", "body"),
        (b'{"object": "whatsapp_business_account", "entry": []}', "object"),
        (b'{"object": "page"}', "entry"),
        (b'{"object": "page", "entry": [1]}', "entry.0"),
        (b'{"object": "page", "entry": [{"messaging": {}}]}', "entry.0.messaging"),
        (b'{"object": "page", "entry": [{"messaging": [1]}]}', "entry.0.messaging.0"),
    ],
)
def test_a_body_that_is_not_a_notification_is_malformed(junk, field) -> None:
    body, headers = signed(junk)
    for parse in (adapter().parse_webhook, adapter().parse_inbound):
        with pytest.raises(MalformedBody) as caught:
            parse(headers, body)
        assert [e.field for e in caught.value.errors] == [field]


def _bad(event: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    event = copy.deepcopy(event)
    target = event
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return event


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (_bad(delivery("m_A"), ["delivery"], []), "delivery"),
        (_bad(delivery("m_A"), ["delivery", "mids"], "m_A"), "delivery.mids"),
        (_bad(delivery("m_A"), ["delivery", "mids"], ["m_A", ""]), "delivery.mids.1"),
        (_bad(text_message("m"), ["message"], "hi"), "message"),
        (_bad(text_message("m"), ["message", "mid"], 5), "message.mid"),
        (_bad(text_message("m"), ["sender"], {"id": "+1415"}), "sender.id"),
        (_bad(text_message("m"), ["sender"], None), "sender.id"),
        (_bad(text_message("m"), ["timestamp"], "1763900000123"), "timestamp"),
        (_bad(text_message("m"), ["timestamp"], True), "timestamp"),
        (_bad(text_message("m"), ["timestamp"], -1), "timestamp"),
        (_bad(text_message("m"), ["timestamp"], 9 * 10**40), "timestamp"),
        (_bad(text_message("m"), ["message", "text"], ["hi"]), "message.text"),
    ],
)
def test_bad_events_are_malformed_for_both_parsers(event, field) -> None:
    body, headers = signed(webhook(event))
    for parse in (adapter().parse_webhook, adapter().parse_inbound):
        with pytest.raises(MalformedBody) as caught:
            parse(headers, body)
        assert [e.field for e in caught.value.errors] == [f"entry.0.messaging.0.{field}"]


def junk_bodies(seed: int, count: int) -> Iterator[bytes]:
    """Random bytes, random JSON, and mutations of real notifications."""
    rng = random.Random(seed)
    real = [
        json.dumps(webhook(delivery("m_A", "m_B"), read())).encode(),
        json.dumps(webhook(text_message("m_C"))).encode(),
    ]
    values: list[Any] = [None, True, 0, -1, 2**70, 1.5, "", "x", "123", [], {}, [1], {"a": 1}]
    keys = [
        "object",
        "entry",
        "messaging",
        "sender",
        "recipient",
        "id",
        "timestamp",
        "message",
        "mid",
        "text",
        "is_echo",
        "delivery",
        "mids",
        "read",
        "watermark",
    ]

    def value(depth: int = 0) -> Any:
        if depth > 3 or rng.random() < 0.4:
            return copy.deepcopy(rng.choice(values))
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
            # Real events, one of their keys (or their inner object's) given a random value.
            events = [delivery("m_A"), text_message("m_B"), read()]
            for event in events:
                if rng.random() < 0.6:
                    event[rng.choice([*event, "message", "delivery"])] = value()
                inner = event.get("message", event.get("delivery"))
                if isinstance(inner, dict) and rng.random() < 0.4:
                    inner[rng.choice([*inner, "is_echo", "text"])] = value()
            chosen = [e for e in events if rng.random() < 0.6]
            notification = webhook(*chosen)
            if rng.random() < 0.3:
                notification["entry"][0] |= {rng.choice(keys): value()}
            yield json.dumps(notification).encode()
        else:
            mutated = bytearray(rng.choice(real))
            for _ in range(rng.randrange(1, 4)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            yield bytes(mutated)


def test_junk_bodies_signed_correctly_give_results_or_malformed_body_only() -> None:
    bot = adapter()
    outcomes = {"some": 0, "none": 0, "malformed": 0}
    for junk in junk_bodies(seed=20261123, count=800):
        body, headers = signed(junk)
        for parse in (bot.parse_webhook, bot.parse_inbound):
            try:
                parsed = parse(headers, body)
            except MalformedBody:
                outcomes["malformed"] += 1
            else:
                assert isinstance(parsed, list)
                outcomes["some" if parsed else "none"] += 1
    assert min(outcomes.values()) >= 5, outcomes


def test_a_person_writes_to_the_page_then_gets_a_reply(
    client, database, clock, tenant, messenger
) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from junction.engine.dispatcher import Dispatcher
    from tests.fakes.messenger import delivery, signed, text_message, webhook

    config = {
        "page_access_token": PAGE_ACCESS_TOKEN,
        "app_secret": APP_SECRET,
        "verify_token": VERIFY_TOKEN,
        "base_url": messenger.base_url,
    }
    assert (
        client.put(
            "/v1/channels/messenger", json={"provider": "messenger", "config": config}
        ).status_code
        == 200
    )
    hook = f"/hooks/{tenant.id}/messenger"
    reply = {"to": {"psid": ADA}, "channel": "messenger", "content": {"text": "Happy to help"}}
    assert client.post("/v1/messages", json=reply).status_code == 422  # the window is shut

    written = int(clock.now().timestamp() * 1000) - 60_000
    body, headers = signed(
        webhook(text_message("m_IN1", sender=ADA, text="Hi!", timestamp=written))
    )
    assert client.post(hook, content=body, headers=headers).json()["inbound"] == 1

    sent = client.post("/v1/messages", json=reply)
    assert sent.status_code == 202, sent.text
    assert asyncio.run(Dispatcher(database, clock).drain()) == 1
    mid = client.get(f"/v1/messages/{sent.json()['id']}").json()["providerMessageId"]
    body, headers = signed(webhook(delivery(mid)))
    assert client.post(hook, content=body, headers=headers).json()["applied"] == 1
    assert client.get(f"/v1/messages/{sent.json()['id']}").json()["status"] == "delivered"
