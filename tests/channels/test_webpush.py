"""The web push adapter against a fake push service on loopback that verifies VAPID and
decrypts each payload with the subscription's private key, as a browser would."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import ValidationError

from junction.channels.base import (
    AddressInvalid,
    Channel,
    OutboundMessage,
    PermanentFailure,
    RetryLater,
    SendResult,
)
from junction.channels.webpush import (
    MAX_PAYLOAD_BYTES,
    WebPushAdapter,
    WebPushConfig,
    generate_vapid_keys,
    vapid_public_key,
)
from tests.channels.sending import send
from tests.fakes.push_service import FakePushService, Subscription, b64url

PRIVATE_PEM, PUBLIC_KEY = generate_vapid_keys()


@pytest.fixture
def push() -> Iterator[FakePushService]:
    service = FakePushService()
    with service.serve():
        yield service


def adapter(**config: Any) -> WebPushAdapter:
    config.setdefault("vapid_private_key", PRIVATE_PEM)
    config.setdefault("vapid_subject", "mailto:ops@example.com")
    config.setdefault("allow_http", True)  # the fake serves plain http on loopback
    return WebPushAdapter(WebPushConfig.model_validate(config))


def message(
    subscription: Subscription, key: str = "api:n-1", keys: Any = None, **content: Any
) -> OutboundMessage:
    content.setdefault("title", "Your order shipped")
    content.setdefault("body", "It arrives Thursday.")
    content["subscription_keys"] = subscription.keys if keys is None else keys
    return OutboundMessage(7, key, 1, Channel.WEB_PUSH, subscription.endpoint, content)


# -- what is sent ----------------------------------------------------------------------------


def test_the_browser_decrypts_exactly_the_notification(push) -> None:
    subscription = push.subscribe(application_server_key=PUBLIC_KEY)
    content = {"url": "https://shop.example/o/42", "icon": "/i.png", "data": {"order": 42}}
    [result] = send(adapter(), message(subscription, **content, extra="not sent"))
    assert push.rejected == []
    [delivery] = push.deliveries
    assert delivery.payload == {
        "title": "Your order shipped",
        "body": "It arrives Thursday.",
        **content,
    }  # the subscription keys (and unknown keys) are never sent
    assert isinstance(result, SendResult)
    assert result.provider_message_id == delivery.location
    assert result.details == {"status": 201}


def test_vapid_is_signed_for_the_push_service(push) -> None:
    subscription = push.subscribe()
    send(adapter(vapid_subject="https://shop.example/contact"), message(subscription))
    [delivery] = push.deliveries  # PyJWT verified the ES256 signature, aud and exp
    assert delivery.vapid_key == PUBLIC_KEY == vapid_public_key(PRIVATE_PEM)
    assert delivery.claims["aud"] == push.url
    assert delivery.claims["sub"] == "https://shop.example/contact"
    assert delivery.headers["authorization"].startswith("vapid t=")
    assert delivery.headers["content-encoding"] == "aes128gcm"


def test_ttl_urgency_and_topic_headers(push) -> None:
    subscription = push.subscribe()
    send(
        adapter(ttl=600, urgency="high"),
        message(subscription, key="a"),
        message(subscription, key="a"),  # a retry of the same message
        message(subscription, key="b"),
    )
    first, retry, other = push.deliveries
    assert first.headers["ttl"] == "600"
    assert first.headers["urgency"] == "high"
    assert first.headers["topic"] == retry.headers["topic"] != other.headers["topic"]
    assert len(first.headers["topic"]) <= 32
    send(adapter(), message(subscription))
    assert push.deliveries[-1].headers["ttl"] == "86400"
    assert push.deliveries[-1].headers["urgency"] == "normal"


def test_a_raw_base64url_key_signs_as_the_pem_does(push) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    raw = b64url(key.private_numbers().private_value.to_bytes(32, "big"))
    subscription = push.subscribe()
    [result] = send(adapter(vapid_private_key=raw), message(subscription))
    assert isinstance(result, SendResult)
    assert push.deliveries[0].vapid_key == vapid_public_key(raw)


def test_a_subscription_made_for_another_key_is_refused(push) -> None:
    _, other_public = generate_vapid_keys()
    subscription = push.subscribe(application_server_key=other_public)
    [outcome] = send(adapter(), message(subscription))
    assert isinstance(outcome, PermanentFailure) and outcome.reason.startswith("403")


# -- what the answers mean -------------------------------------------------------------------


def test_a_withdrawn_or_unknown_subscription_is_invalid(push) -> None:
    gone = push.subscribe()
    push.unsubscribe(gone)
    unknown = push.subscribe()
    unknown.endpoint = f"{push.url}/push/nobody"
    outcomes = send(adapter(), message(gone), message(unknown))
    assert [type(o) for o in outcomes] == [AddressInvalid, AddressInvalid]
    assert outcomes[0].reason.startswith("410") and outcomes[1].reason.startswith("404")
    assert all(o.status == "invalid" for o in outcomes if isinstance(o, AddressInvalid))


@pytest.mark.parametrize(
    ("status", "retry_after", "expected", "seconds"),
    [
        (429, 30, RetryLater, 30.0),
        (503, None, RetryLater, None),
        (503, 7, RetryLater, 7.0),
        (500, None, RetryLater, None),
        (413, None, PermanentFailure, None),
        (400, None, PermanentFailure, None),
    ],
)
def test_each_refusal_has_its_outcome(push, status, retry_after, expected, seconds) -> None:
    push.fail_next(1, status, retry_after)
    subscription = push.subscribe()
    outcomes = send(adapter(), message(subscription), message(subscription))
    assert type(outcomes[0]) is expected
    assert outcomes[0].reason.startswith(f"{status} ")
    if isinstance(outcomes[0], RetryLater):
        assert outcomes[0].retry_after == seconds
    assert isinstance(outcomes[1], SendResult)  # the script is spent: the next one goes


def test_no_answer_in_time_is_retried_later(push) -> None:
    push.hang_next(1)
    subscription = push.subscribe()
    [outcome] = send(adapter(timeout=0.3), message(subscription))
    assert isinstance(outcome, RetryLater)
    assert "no answer within 0.3 s" in outcome.reason


def test_a_push_service_that_is_down_is_retried_later(push) -> None:
    subscription = push.subscribe()
    subscription.endpoint = "http://127.0.0.1:9/push/x"  # the discard port: nothing listens
    [outcome] = send(adapter(), message(subscription))
    assert isinstance(outcome, RetryLater)


# -- what is refused before sending ----------------------------------------------------------


def test_what_cannot_be_sent_fails_without_a_request(push) -> None:
    subscription = push.subscribe()
    outcomes = send(
        adapter(),
        message(subscription, body="x" * (MAX_PAYLOAD_BYTES + 1)),
        message(subscription, title=None),
        message(subscription, keys={}),
        message(subscription, keys={"p256dh": "AAAA", "auth": subscription.auth}),
    )
    assert [type(o) for o in outcomes] == [
        PermanentFailure,
        PermanentFailure,
        PermanentFailure,
        AddressInvalid,
    ]
    assert push.requests == 0


def test_the_largest_payload_fits_one_push_message(push) -> None:
    subscription = push.subscribe()
    overhead = len('{"title":"","body":""}')
    [outcome] = send(
        adapter(), message(subscription, title="", body="x" * (MAX_PAYLOAD_BYTES - overhead))
    )
    assert isinstance(outcome, SendResult)  # the fake refuses bodies over 4,096 bytes


def test_only_https_endpoints_unless_allowed(push) -> None:
    subscription = push.subscribe()
    [outcome] = send(adapter(allow_http=False), message(subscription))
    assert isinstance(outcome, AddressInvalid)
    assert push.requests == 0


# -- configuration ---------------------------------------------------------------------------


def test_generated_keys_are_a_p256_pair() -> None:
    pem, public = generate_vapid_keys()
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    assert public == b64url(point) and len(point) == 65 and "=" not in public


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"vapid_subject": "ops@example.com"}, "vapid_subject"),
        ({"vapid_subject": "http://shop.example"}, "vapid_subject"),
        ({"vapid_subject": "mailto:nobody"}, "vapid_subject"),
        ({"vapid_private_key": "not a key"}, "vapid_private_key"),
        ({"vapid_private_key": b64url(b"\x01" * 31)}, "vapid_private_key"),
        ({"urgency": "urgent"}, "urgency"),
        ({"ttl": -1}, "ttl"),
        ({"region": "eu"}, "region"),
    ],
)
def test_bad_configuration_is_refused(config, field) -> None:
    full = {"vapid_private_key": PRIVATE_PEM, "vapid_subject": "mailto:ops@example.com"}
    with pytest.raises(ValidationError) as caught:
        WebPushAdapter.Config.model_validate({**full, **config})
    assert [error["loc"][0] for error in caught.value.errors()] == [field]
    assert PRIVATE_PEM not in str(caught.value)


def test_a_key_on_another_curve_or_algorithm_is_refused() -> None:
    for key in (ec.generate_private_key(ec.SECP384R1()), rsa.generate_private_key(65537, 2048)):
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        with pytest.raises(ValidationError):
            WebPushConfig.model_validate(
                {"vapid_private_key": pem, "vapid_subject": "mailto:ops@example.com"}
            )


def test_the_private_key_is_a_secret_field() -> None:
    assert "vapid_private_key" in WebPushAdapter.Config.secret_fields


def test_a_subscribed_browser_gets_the_push_decrypted(  # type: ignore[no-untyped-def]
    client, database, clock, tenant, push
) -> None:
    import asyncio

    from junction.engine.dispatcher import Dispatcher
    from junction.store.contacts import register_device

    subscription = push.subscribe()
    # Stored as the devices API stores it (the API itself insists on https://; the fake
    # push service is plain http on loopback).
    with database.write() as conn:
        register_device(
            conn,
            tenant.id,
            "ada",
            "web_push",
            subscription.endpoint,
            {"platform": "web", "keys": subscription.keys},
            clock.now(),
        )
    config = {
        "vapid_private_key": PRIVATE_PEM,
        "vapid_subject": "mailto:ops@example.com",
        "allow_http": True,
    }
    assert (
        client.put(
            "/v1/channels/web_push", json={"provider": "webpush", "config": config}
        ).status_code
        == 200
    )
    sent = client.post(
        "/v1/messages",
        json={
            "to": {"userId": "ada"},
            "channel": "web_push",
            "content": {"title": "Shipped", "body": "Thursday"},
        },
    )
    assert sent.status_code == 202, sent.text
    assert asyncio.run(Dispatcher(database, clock).drain()) == 1
    [delivery] = push.deliveries
    assert delivery.payload == {"title": "Shipped", "body": "Thursday"}
    assert client.get(f"/v1/messages/{sent.json()['id']}").json()["status"] == "sent"
