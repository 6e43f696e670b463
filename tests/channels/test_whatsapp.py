"""The WhatsApp adapter against a fake Cloud API served on loopback: what it sends, how Graph
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
)
from junction.channels.meta import signature
from junction.channels.whatsapp import WhatsAppAdapter, WhatsAppConfig
from junction.errors import InvalidSignature, MalformedBody
from tests.channels.sending import send
from tests.fakes.whatsapp import (
    ACCESS_TOKEN,
    APP_SECRET,
    PHONE_NUMBER_ID,
    VERIFY_TOKEN,
    FakeWhatsApp,
    contact,
    signed,
    status,
    text_message,
    webhook,
)

ADA = "+14155550100"


@pytest.fixture(scope="module")
def served() -> Iterator[FakeWhatsApp]:
    fake = FakeWhatsApp()
    with fake.serve():
        yield fake


@pytest.fixture
def whatsapp(served: FakeWhatsApp) -> Iterator[FakeWhatsApp]:
    served.reset()
    yield served
    served.reset()


def adapter(whatsapp: FakeWhatsApp | None = None, **overrides: Any) -> WhatsAppAdapter:
    settings: dict[str, Any] = {
        "access_token": ACCESS_TOKEN,
        "phone_number_id": PHONE_NUMBER_ID,
        "app_secret": APP_SECRET,
        "verify_token": VERIFY_TOKEN,
        "base_url": whatsapp.base_url if whatsapp else "http://127.0.0.1:9",
        **overrides,
    }
    return WhatsAppAdapter(WhatsAppConfig.model_validate(settings))


def message(to: str = ADA, **content: Any) -> OutboundMessage:
    return OutboundMessage(1, "k1", 1, Channel.WHATSAPP, to, content or {"text": "Hi Ada"})


# -- sending -------------------------------------------------------------------------------


def test_the_adapter_describes_itself() -> None:
    built = adapter()
    assert isinstance(built, Adapter)
    assert isinstance(built, Receiving) and isinstance(built, CallingBack)
    caps = WhatsAppAdapter.capabilities
    assert (caps.two_way, caps.opt_in_required, caps.session_window_hours) == (True, True, 24)
    assert WhatsAppConfig.secret_fields == {"access_token", "app_secret", "verify_token"}


def test_a_text_is_sent_as_a_session_message(whatsapp) -> None:
    [result] = send(adapter(whatsapp), message(text="Your order shipped"))
    [request] = whatsapp.requests
    assert (request.version, request.phone_number_id) == ("v21.0", PHONE_NUMBER_ID)
    assert request.authorization == f"Bearer {ACCESS_TOKEN}"
    assert request.body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "14155550100",
        "type": "text",
        "text": {"body": "Your order shipped"},
    }
    assert result == SendResult(provider_message_id="wamid.FAKE000001", details={"type": "text"})


def test_a_template_is_sent_with_its_body_parameters(whatsapp) -> None:
    template = {"name": "order_shipped", "language": "en_US", "parameters": ["Ada", 42]}
    [result, bare] = send(
        adapter(whatsapp),
        message(template=template, text="ignored"),
        message(template={"name": "hello_world", "language": "en"}),
    )
    assert whatsapp.requests[0].body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "14155550100",
        "type": "template",
        "template": {
            "name": "order_shipped",
            "language": {"code": "en_US"},
            "components": [
                {
                    "type": "body",
                    "parameters": [{"type": "text", "text": "Ada"}, {"type": "text", "text": "42"}],
                }
            ],
        },
    }
    assert whatsapp.requests[1].body["template"] == {
        "name": "hello_world",
        "language": {"code": "en"},
    }
    assert isinstance(result, SendResult) and result.details == {"type": "template"}
    assert isinstance(bare, SendResult) and bare.provider_message_id == "wamid.FAKE000002"


def test_content_whatsapp_would_refuse_fails_without_calling(whatsapp) -> None:
    outcomes = send(
        adapter(whatsapp),
        message(text=""),
        message(text="x" * 4097),
        message(template={"name": "Bad Name", "language": "en"}),
        message(template={"name": "ok", "language": "english please"}),
        message(template={"name": "ok", "language": "en", "parameters": [{"x": 1}]}),
        message(to="14155550100"),
        message(to="+1 415 555"),
    )
    assert [type(o) for o in outcomes] == [PermanentFailure] * 5 + [AddressInvalid] * 2
    assert whatsapp.requests == []


def test_the_configuration_is_checked() -> None:
    with pytest.raises(ValidationError) as caught:
        WhatsAppConfig.model_validate(
            {"access_token": "t", "phone_number_id": "12/../x", "api_version": "21", "extra": 1}
        )
    assert sorted(str(e["loc"][0]) for e in caught.value.errors()) == [
        "api_version",
        "extra",
        "phone_number_id",
    ]
    config = WhatsAppConfig.model_validate({"access_token": "t", "phone_number_id": "1"})
    assert (config.base_url, config.api_version) == ("https://graph.facebook.com", "v21.0")


# -- errors --------------------------------------------------------------------------------


def test_a_closed_session_window_fails_for_good_and_says_to_send_a_template(whatsapp) -> None:
    whatsapp.reject(ADA, 131047)
    [closed] = send(adapter(whatsapp), message())
    assert type(closed) is PermanentFailure
    assert "131047" in closed.reason and "template" in closed.reason


def test_a_number_that_cannot_receive_is_invalid(whatsapp) -> None:
    whatsapp.reject(ADA, 131026)
    [dead, other] = send(adapter(whatsapp), message(), message(to="+447700900123"))
    assert isinstance(dead, AddressInvalid) and dead.status == "invalid"
    assert dead.reason == "WhatsApp error 131026: (#131026) Message undeliverable"
    assert isinstance(other, SendResult)


@pytest.mark.parametrize(
    ("code", "retry_after"),
    [
        (131049, 24 * 3600.0),
        (131056, 60.0),
        (130429, None),
        (80007, None),
        (80004, None),
        (4, None),
        (131000, None),
        (131016, None),
    ],
)
def test_passing_problems_are_retried(whatsapp, code, retry_after) -> None:
    whatsapp.fail_next(1, code=code)
    [failed, later] = send(adapter(whatsapp), message(), message())
    assert isinstance(failed, RetryLater) and failed.retry_after == retry_after
    assert str(code) in failed.reason
    assert isinstance(later, SendResult)


def test_an_expired_token_fails_for_good_and_says_what_to_check(whatsapp) -> None:
    [failed] = send(adapter(whatsapp, access_token="EAAGwrong"), message())
    assert type(failed) is PermanentFailure
    assert failed.reason.startswith("WhatsApp error 190: Error validating access token")
    assert failed.reason.endswith("check the access_token of this provider")


def test_other_client_errors_fail_for_good(whatsapp) -> None:
    [wrong_number] = send(adapter(whatsapp, phone_number_id="999"), message())
    assert type(wrong_number) is PermanentFailure and "WhatsApp error 100" in wrong_number.reason
    whatsapp.reject(ADA, 132001)  # template does not exist
    [missing] = send(adapter(whatsapp), message(template={"name": "nope", "language": "en"}))
    assert type(missing) is PermanentFailure and "132001" in missing.reason


def test_an_unreachable_api_is_retried() -> None:
    gone = FakeWhatsApp()
    with gone.serve():
        pass
    [outcome] = send(adapter(gone), message())
    assert isinstance(outcome, RetryLater) and outcome.reason.startswith("cannot reach WhatsApp")
    assert ACCESS_TOKEN not in outcome.reason


# -- webhooks ------------------------------------------------------------------------------


def test_statuses_become_delivery_updates() -> None:
    body, headers = signed(
        webhook(
            statuses=[
                status("wamid.A", "sent"),
                status("wamid.A", "delivered"),
                status("wamid.B", "read"),
                status("wamid.C", "failed", error=131026),
            ]
        )
    )
    updates = adapter().parse_webhook(headers, body, "https://j.example/hooks/1/whatsapp")
    assert [(u.provider_message_id, u.status, u.reason) for u in updates] == [
        ("wamid.A", "sent", None),
        ("wamid.A", "delivered", None),
        ("wamid.B", "read", None),
        ("wamid.C", "failed", "WhatsApp error 131026: (#131026) Message undeliverable"),
    ]
    assert all(isinstance(u, DeliveryUpdate) for u in updates)
    assert adapter().parse_inbound(headers, body) == []  # statuses carry no message


def test_inbound_messages_are_read_with_the_senders_name() -> None:
    text = text_message("wamid.IN1", text="STOP", timestamp="1763900000")
    image = {
        "from": "447700900123",
        "id": "wamid.IN2",
        "timestamp": "1763900001",
        "type": "image",
        "image": {"id": "123", "mime_type": "image/jpeg"},
    }
    body, headers = signed(webhook(messages=[text, image], contacts=[contact()]))
    [got, picture] = adapter().parse_inbound(headers, body)
    assert got == InboundMessage(
        channel="whatsapp",
        sender_id=ADA,
        external_id="whatsapp:wamid.IN1",
        text="STOP",
        sent_at=datetime(2025, 11, 23, 12, 13, 20, tzinfo=UTC),
        sender_name="Ada Lovelace",
        raw=text,
    )
    assert (picture.sender_id, picture.text, picture.sender_name) == ("+447700900123", "", None)
    assert picture.raw["type"] == "image"
    assert adapter().parse_webhook(headers, body) == []


def test_other_fields_are_ignored() -> None:
    notification = webhook(statuses=[status("wamid.A")])
    notification["entry"][0]["changes"][0]["field"] = "account_update"
    body, headers = signed(notification)
    assert adapter().parse_webhook(headers, body) == []


@pytest.mark.parametrize(
    "header",
    [None, "", "sha256=", "sha256=00", "sha1=abc", "SIGNED", "é", "wrong-secret"],
)
def test_a_wrong_or_missing_signature_is_refused(header) -> None:
    body, headers = signed(webhook(statuses=[status("wamid.A")]))
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


def test_the_signature_covers_the_raw_body_and_the_header_name_is_any_case() -> None:
    body, headers = signed(webhook(statuses=[status("wamid.A")]))
    with pytest.raises(InvalidSignature):
        adapter().parse_webhook(headers, body + b" ")
    assert signature(APP_SECRET, body) == headers["x-hub-signature-256"]
    [update] = adapter().parse_webhook({"X-Hub-Signature-256": signature(APP_SECRET, body)}, body)
    assert update.provider_message_id == "wamid.A"


def test_nothing_is_accepted_without_an_app_secret() -> None:
    body, headers = signed(webhook(statuses=[status("wamid.A")]))
    with pytest.raises(InvalidSignature, match="app_secret"):
        adapter(app_secret=None).parse_webhook(headers, body)


def test_the_subscription_handshake() -> None:
    ok = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    assert adapter().verify_subscription(ok) == "1158201444"
    for wrong in (
        ok | {"hub.verify_token": "nope"},
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
        (b'{"object": "page", "entry": []}', "object"),
        (b'{"object": "whatsapp_business_account"}', "entry"),
        (b'{"object": "whatsapp_business_account", "entry": [1]}', "entry.0.changes"),
        (
            b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"field":'
            b' "messages", "value": []}]}]}',
            "entry.0.changes.0.value",
        ),
    ],
)
def test_a_body_that_is_not_a_notification_is_malformed(junk, field) -> None:
    body, headers = signed(junk)
    with pytest.raises(MalformedBody) as caught:
        adapter().parse_webhook(headers, body)
    assert [e.field for e in caught.value.errors] == [field]


def test_bad_statuses_and_messages_are_malformed() -> None:
    cases = [
        (webhook(statuses=[{"id": "wamid.A", "status": "exploded"}]), "value.statuses.0.status"),
        (webhook(statuses=[{"status": "sent"}]), "value.statuses.0.id"),
        (webhook(messages=[text_message("w", sender="+1415")]), "value.messages.0.from"),
        (webhook(messages=[text_message("w", timestamp="soon")]), "value.messages.0.timestamp"),
        (webhook(messages=[text_message("w", timestamp="9" * 40)]), "value.messages.0.timestamp"),
    ]
    for notification, field in cases:
        body, headers = signed(notification)
        with pytest.raises(MalformedBody) as caught:
            adapter().parse_webhook(
                headers, body
            ) if "statuses" in field else adapter().parse_inbound(headers, body)
        assert [e.field for e in caught.value.errors] == [field]


def junk_bodies(seed: int, count: int) -> Iterator[bytes]:
    """Random bytes, random JSON, and mutations of real notifications."""
    rng = random.Random(seed)
    real = [
        json.dumps(webhook(statuses=[status("wamid.A")])).encode(),
        json.dumps(webhook(messages=[text_message("wamid.B")], contacts=[contact()])).encode(),
    ]
    values: list[Any] = [None, True, 0, -1, 2**70, 1.5, "", "x", "123", [], {}, [1], {"a": 1}]
    keys = [
        "object",
        "entry",
        "changes",
        "field",
        "value",
        "statuses",
        "messages",
        "contacts",
        "id",
        "status",
        "from",
        "timestamp",
        "type",
        "text",
        "body",
        "errors",
        "profile",
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
            # Real statuses and messages, one of their keys given a random value.
            a_status, a_message = status("wamid.A"), text_message("wamid.B")
            for item in (a_status, a_message):
                if rng.random() < 0.6:
                    item[rng.choice([*item, "errors", "text"])] = value()
            notification = webhook(
                statuses=[a_status] if rng.random() < 0.5 else None,
                messages=[a_message] if rng.random() < 0.5 else None,
                contacts=[rng.choice([contact(), value()])] if rng.random() < 0.5 else None,
            )
            if rng.random() < 0.3:
                notification["entry"][0]["changes"][0]["value"] |= {rng.choice(keys): value()}
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


# -- through Junction: hooks, window, dispatcher -------------------------------------------


def test_a_customer_writes_then_gets_a_free_text_reply(
    client, database, clock, tenant, whatsapp
) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from junction.engine.dispatcher import Dispatcher
    from tests.fakes.whatsapp import contact, signed, text_message, webhook

    config = {
        "access_token": ACCESS_TOKEN,
        "phone_number_id": PHONE_NUMBER_ID,
        "app_secret": APP_SECRET,
        "verify_token": VERIFY_TOKEN,
        "base_url": whatsapp.base_url,
    }
    assert (
        client.put(
            "/v1/channels/whatsapp", json={"provider": "whatsapp", "config": config}
        ).status_code
        == 200
    )
    hook = f"/hooks/{tenant.id}/whatsapp"
    handshake = client.get(
        hook,
        params={
            "hub.mode": "subscribe",
            "hub.verify_token": VERIFY_TOKEN,
            "hub.challenge": "1158201444",
        },
    )
    assert (handshake.status_code, handshake.text) == (200, "1158201444")
    assert (
        client.get(
            hook, params={"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "x"}
        ).status_code
        == 403
    )

    client.post("/v1/identify", json={"userId": "ada", "traits": {"phone": "+14155550100"}})
    reply = {"to": {"userId": "ada"}, "channel": "whatsapp", "content": {"text": "On its way!"}}
    assert client.post("/v1/messages", json=reply).status_code == 422  # she never wrote

    minute_ago = str(int(clock.now().timestamp()) - 60)
    body, headers = signed(
        webhook(
            messages=[text_message("wamid.IN1", text="Where is it?", timestamp=minute_ago)],
            contacts=[contact()],
        )
    )
    for _ in range(2):  # Meta redelivers: stored once
        assert client.post(hook, content=body, headers=headers).json()["inbound"] == 1
    forged = client.post(hook, content=body, headers={"X-Hub-Signature-256": "sha256=00"})
    assert forged.status_code == 403
    received = [
        e
        for e in client.get("/v1/contacts/ada").json()["latestEvents"]
        if e["name"] == "message.received"
    ]
    assert [e["properties"]["text"] for e in received] == ["Where is it?"]

    sent = client.post("/v1/messages", json=reply)
    assert sent.status_code == 202, sent.text
    assert asyncio.run(Dispatcher(database, clock).drain()) == 1
    [request] = whatsapp.requests
    assert request.body["to"] == "14155550100" and request.body["text"]["body"] == "On its way!"
    wamid = client.get(f"/v1/messages/{sent.json()['id']}").json()["providerMessageId"]

    body, headers = signed(webhook(statuses=[status(wamid, "read")]))
    assert client.post(hook, content=body, headers=headers).json()["applied"] == 1
    assert client.get(f"/v1/messages/{sent.json()['id']}").json()["status"] == "read"
