"""The APNs adapter against a fake APNs served over TLS and HTTP/2 on loopback: the
requests it builds, the provider token it signs, caches and refreshes, and how APNs'
errors become Junction's outcomes."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from junction.channels.apns import (
    TOKEN_REFRESH,
    ApnsAdapter,
    ApnsConfig,
    apns_error,
    apns_id,
)
from junction.channels.base import (
    AddressInvalid,
    Channel,
    OutboundMessage,
    PermanentFailure,
    RetryLater,
    SendResult,
)
from tests.channels.sending import send
from tests.fakes.apns import KEY_ID, TEAM_ID, TOPIC, FakeApns, new_key, p8

DEVICE = "a1" * 32


@pytest.fixture(scope="module")
def apns_served() -> Iterator[FakeApns]:
    fake = FakeApns()
    with fake.serve():
        yield fake


@pytest.fixture
def apns(apns_served: FakeApns) -> Iterator[FakeApns]:
    apns_served.reset()
    yield apns_served
    apns_served.reset()


def config(apns: FakeApns, **overrides: Any) -> dict[str, Any]:
    return apns.config(**overrides)


def adapter(apns: FakeApns, **overrides: Any) -> ApnsAdapter:
    return ApnsAdapter(ApnsConfig.model_validate(config(apns, **overrides)))


def push_message(to: str = DEVICE, key: str = "k1", **content: Any) -> OutboundMessage:
    return OutboundMessage(
        1, key, 1, Channel.PUSH, to, content or {"title": "Hello", "body": "Your order shipped"}
    )


def device(n: int) -> str:
    return f"{n:064x}"


# -- configuration ---------------------------------------------------------------------------


def test_the_config_is_checked_and_the_key_secret(apns) -> None:
    parsed = ApnsConfig.model_validate({k: v for k, v in config(apns).items() if k != "base_url"})
    assert parsed.base_url == "https://api.push.apple.com" and parsed.timeout == 10.0
    assert ApnsConfig.secret_fields == {"private_key"}
    with pytest.raises(ValidationError, match="PEM private key"):
        ApnsConfig.model_validate(config(apns, private_key="-----BEGIN PRIVATE KEY-----\nx\n"))
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValidationError, match="EC P-256"):
        ApnsConfig.model_validate(config(apns, private_key=rsa_key.decode()))
    with pytest.raises(ValidationError, match="team_id"):
        ApnsConfig.model_validate(config(apns, team_id="short"))
    with pytest.raises(ValidationError, match="Extra inputs"):
        ApnsConfig.model_validate(config(apns, certificate="p12"))


# -- what is sent ----------------------------------------------------------------------------


def test_an_alert_push_carries_headers_and_body_over_http2(apns) -> None:
    message = push_message(
        title="Your order shipped",
        body="It arrives Thursday",
        badge=3,
        sound="default",
        thread_id="orders",
        image="https://cdn.example.com/parcel.png",
        url="myapp://orders/42",
        data={"order_id": "42", "count": 2},
        ttl_seconds=3600,
        collapse_id="order-42",
    )
    before = int(time.time())
    [result] = send(adapter(apns), message)
    after = int(time.time())
    [request] = apns.requests
    assert request.http_version == "2"
    assert request.device == DEVICE
    headers = request.headers
    assert headers["apns-topic"] == TOPIC
    assert headers["apns-push-type"] == "alert"
    assert headers["apns-priority"] == "10"
    assert headers["apns-collapse-id"] == "order-42"
    assert before + 3600 <= int(headers["apns-expiration"]) <= after + 3600
    assert headers["apns-id"] == apns_id(message) == str(uuid.UUID(headers["apns-id"]))
    assert request.body == {
        "aps": {
            "alert": {"title": "Your order shipped", "body": "It arrives Thursday"},
            "badge": 3,
            "sound": "default",
            "thread-id": "orders",
            "mutable-content": 1,
        },
        "order_id": "42",
        "count": 2,
        "url": "myapp://orders/42",
        "image": "https://cdn.example.com/parcel.png",
    }
    assert result == SendResult(provider_message_id=headers["apns-id"])


def test_a_push_without_title_or_body_is_a_silent_background_push(apns) -> None:
    [result] = send(adapter(apns), push_message(data={"sync": "inbox"}, ttl_seconds=0))
    assert isinstance(result, SendResult)
    [request] = apns.sent
    assert request.http_version == "2"
    assert request.headers["apns-push-type"] == "background"
    assert request.headers["apns-priority"] == "5"
    assert request.headers["apns-expiration"] == "0"
    assert "apns-collapse-id" not in request.headers
    assert request.body == {"aps": {"content-available": 1}, "sync": "inbox"}


def test_a_normal_priority_alert_is_sent_at_priority_5(apns) -> None:
    send(adapter(apns), push_message(body="New message", priority="normal"))
    [request] = apns.sent
    assert request.headers["apns-priority"] == "5"
    assert "apns-expiration" not in request.headers
    assert request.body == {"aps": {"alert": {"body": "New message"}}}


def test_the_apns_id_is_the_same_for_each_attempt_at_one_message() -> None:
    first, again = push_message(key="same"), push_message(key="same")
    assert apns_id(first) == apns_id(again) != apns_id(push_message(key="other"))


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ({"data": {}}, "needs content.title, content.body or content.data"),
        ({"title": 7}, "content.title"),
        ({"title": "x", "badge": -1}, "content.badge"),
        ({"badge": 1, "data": {"a": "b"}}, "silent background push"),
        ({"body": "x", "data": {"aps": {}}}, "content.data.aps"),
        ({"body": "x" * 5000}, "at most 4096"),
        ({"body": "x", "priority": "urgent"}, "content.priority"),
        ({"body": "x", "ttl_seconds": -1}, "content.ttl_seconds"),
        ({"body": "x", "collapse_id": "c" * 65}, "collapse_id"),
    ],
)
def test_content_apns_would_refuse_fails_without_calling(apns, content, complaint) -> None:
    [outcome] = send(adapter(apns), push_message(**content))
    assert isinstance(outcome, PermanentFailure)
    assert complaint in outcome.reason
    assert apns.requests == []


def test_a_token_that_is_not_hex_is_an_invalid_address(apns) -> None:
    [outcome] = send(adapter(apns), push_message(to="not a token"))
    assert isinstance(outcome, AddressInvalid) and outcome.status == "invalid"
    assert apns.requests == []


# -- the provider token ----------------------------------------------------------------------


def test_the_provider_token_is_an_es256_jwt_of_team_and_key(apns) -> None:
    built = adapter(apns)
    token = built.provider_token(now=1_700_000_000)
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": KEY_ID, "typ": "JWT"}
    claims = jwt.decode(
        token, apns.key.public_key(), algorithms=["ES256"], options={"verify_iat": False}
    )
    assert claims == {"iss": TEAM_ID, "iat": 1_700_000_000}


def test_one_provider_token_serves_many_sends(apns) -> None:
    built = adapter(apns)

    async def scenario() -> list[Any]:
        try:
            crowd = await asyncio.gather(*(built.send(push_message(device(i))) for i in range(20)))
            return [*crowd, await built.send(push_message())]
        finally:
            await built.aclose()

    results = asyncio.run(scenario())
    assert all(isinstance(r, SendResult) for r in results)
    assert len(apns.sent) == 21
    assert len(apns.tokens_seen) == 1
    assert all(r.http_version == "2" for r in apns.requests)


def test_a_provider_token_near_the_hour_is_signed_again(apns) -> None:
    built = adapter(apns)

    async def scenario() -> None:
        try:
            await built.send(push_message())
            built._issued_at -= TOKEN_REFRESH  # as if it were signed 45 minutes ago
            await built.send(push_message())
            await built.send(push_message())
        finally:
            await built.aclose()

    asyncio.run(scenario())
    assert len(apns.sent) == 3
    assert len(apns.tokens_seen) == 2


def test_an_expired_provider_token_is_signed_again_and_the_send_retried_once(apns) -> None:
    built = adapter(apns)

    async def scenario() -> list[Any]:
        try:
            first = await built.send(push_message())
            apns.expire_next(1)
            second = await built.send(push_message())
            third = await built.send(push_message())
            return [first, second, third]
        finally:
            await built.aclose()

    results = asyncio.run(scenario())
    assert all(isinstance(r, SendResult) for r in results)
    assert [r.answered for r in apns.requests] == [200, 403, 200, 200]
    tokens = [r.authorization for r in apns.requests]
    assert tokens[0] == tokens[1] != tokens[2] == tokens[3]


def test_a_fresh_provider_token_refused_too_fails_for_good(apns) -> None:
    apns.expire_next(2)
    [outcome] = send(adapter(apns), push_message())
    assert isinstance(outcome, PermanentFailure)
    assert "ExpiredProviderToken" in outcome.reason and "clock" in outcome.reason
    assert len(apns.requests) == 2


def test_a_key_apple_does_not_know_fails_for_good(apns) -> None:
    [outcome] = send(adapter(apns, private_key=p8(new_key())), push_message())
    assert isinstance(outcome, PermanentFailure)
    assert "InvalidProviderToken" in outcome.reason and "403" in outcome.reason


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "outcome"),
    [
        ("Unregistered", AddressInvalid),
        ("BadDeviceToken", AddressInvalid),
        ("DeviceTokenNotForTopic", AddressInvalid),
        ("TopicDisallowed", PermanentFailure),
        ("BadCollapseId", PermanentFailure),
        ("PayloadTooLarge", PermanentFailure),
        ("BadPath", PermanentFailure),
    ],
)
def test_apns_rejections_become_outcomes(apns, reason, outcome) -> None:
    apns.reject(DEVICE, reason)
    [result] = send(adapter(apns), push_message())
    assert type(result) is outcome
    assert reason in result.reason
    if isinstance(result, AddressInvalid):
        assert result.status == "invalid"


def test_a_wrong_topic_is_refused_as_not_for_this_topic(apns) -> None:
    [result] = send(adapter(apns, topic="com.example.other"), push_message())
    assert isinstance(result, AddressInvalid)
    assert "DeviceTokenNotForTopic" in result.reason


@pytest.mark.parametrize("status", [429, 500, 503])
def test_rate_limits_and_outages_are_retried_no_sooner_than_retry_after(apns, status) -> None:
    apns.fail_next(1, status=status, retry_after=7)
    apns.fail_next(1, status=status)
    outcomes = send(adapter(apns), push_message(), push_message(), push_message())
    assert isinstance(outcomes[0], RetryLater) and outcomes[0].retry_after == 7
    assert isinstance(outcomes[1], RetryLater) and outcomes[1].retry_after is None
    assert str(status) in outcomes[0].reason
    assert isinstance(outcomes[2], SendResult)


def test_an_apns_that_cannot_be_reached_is_retried(apns) -> None:
    [outcome] = send(adapter(apns, base_url="https://127.0.0.1:9"), push_message())
    assert isinstance(outcome, RetryLater)
    assert "cannot reach APNs" in outcome.reason


def test_a_server_not_signed_by_the_trusted_ca_is_not_trusted(apns) -> None:
    [outcome] = send(adapter(apns, ca_file=None), push_message())  # the system CAs
    assert isinstance(outcome, RetryLater)
    assert apns.requests == []


def test_answers_that_are_not_apns_json_are_still_read() -> None:
    request = httpx.Request("POST", "https://api.push.apple.com/3/device/x")
    html = httpx.Response(502, text="<html>Bad Gateway</html>", request=request)
    assert isinstance(apns_error(html), RetryLater)
    gone = httpx.Response(410, request=request)
    assert isinstance(apns_error(gone), AddressInvalid)
    odd = httpx.Response(405, json={"reason": "MethodNotAllowed"}, request=request)
    failure = apns_error(odd)
    assert isinstance(failure, PermanentFailure) and "MethodNotAllowed" in failure.reason
