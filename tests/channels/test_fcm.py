"""The FCM adapter against a fake Google token endpoint and FCM v1 API served on loopback:
the OAuth2 token it signs, fetches once and refreshes, the message it builds, and how FCM's
errors become Junction's outcomes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from pydantic import ValidationError

from junction.channels.base import (
    AddressInvalid,
    Channel,
    DeliveryError,
    OutboundMessage,
    PermanentFailure,
    RetryLater,
    SendResult,
)
from junction.channels.fcm import SCOPE, FcmAdapter, FcmConfig, build_message, fcm_error
from tests.channels.sending import send
from tests.fakes.fcm import BAD_REQUEST, FCM_ERROR, PROJECT_ID, FakeFcm, new_key, pem

DEVICE = "fcm-device-token-ada-0001"


@pytest.fixture(scope="module")
def fcm_served() -> Iterator[FakeFcm]:
    fake = FakeFcm()
    with fake.serve():
        yield fake


@pytest.fixture
def fcm(fcm_served: FakeFcm) -> Iterator[FakeFcm]:
    fcm_served.reset()
    yield fcm_served
    fcm_served.reset()


def config(fcm: FakeFcm, **overrides: Any) -> dict[str, Any]:
    return {"service_account": fcm.service_account(), "base_url": fcm.base_url, **overrides}


def adapter(fcm: FakeFcm, **overrides: Any) -> FcmAdapter:
    return FcmAdapter(FcmConfig.model_validate(config(fcm, **overrides)))


def push_message(to: str = DEVICE, **content: Any) -> OutboundMessage:
    return OutboundMessage(
        1, "k1", 1, Channel.PUSH, to, content or {"title": "Hello", "body": "Your order shipped"}
    )


# -- configuration ---------------------------------------------------------------------------


def test_the_service_account_is_checked_and_secret(fcm) -> None:
    parsed = FcmConfig.model_validate(config(fcm))
    assert parsed.service_account.project_id == PROJECT_ID
    assert parsed.base_url == fcm.base_url and parsed.timeout == 10.0
    assert FcmConfig.secret_fields == {"service_account"}
    broken = fcm.service_account() | {"private_key": "-----BEGIN PRIVATE KEY-----\nnope\n"}
    with pytest.raises(ValidationError, match="PEM private key"):
        FcmConfig.model_validate(config(fcm, service_account=broken))
    with pytest.raises(ValidationError, match="service_account"):
        FcmConfig.model_validate(config(fcm, service_account={"type": "authorized_user"}))
    with pytest.raises(ValidationError, match="Extra inputs"):
        FcmConfig.model_validate(config(fcm, api_key="legacy"))


# -- what is sent ----------------------------------------------------------------------------


def test_a_push_carries_notification_data_link_image_priority_and_ttl(fcm) -> None:
    message = push_message(
        title="Your order shipped",
        body="It arrives Thursday",
        image="https://cdn.example.com/parcel.png",
        url="https://shop.example.com/orders/42",
        data={"order_id": "42", "kind": "shipping"},
        priority="high",
        ttl_seconds=3600,
    )
    before = int(time.time())
    [result] = send(adapter(fcm), message)
    after = int(time.time())
    [request] = fcm.requests
    assert request.project == PROJECT_ID
    assert request.authorization is not None and request.authorization.startswith("Bearer ya29.")
    sent = request.message
    expiration = int(sent["apns"]["headers"].pop("apns-expiration"))
    assert before + 3600 <= expiration <= after + 3600
    assert sent == {
        "token": DEVICE,
        "notification": {
            "title": "Your order shipped",
            "body": "It arrives Thursday",
            "image": "https://cdn.example.com/parcel.png",
        },
        "data": {"order_id": "42", "kind": "shipping", "url": "https://shop.example.com/orders/42"},
        "android": {"priority": "HIGH", "ttl": "3600s"},
        "apns": {"headers": {"apns-priority": "10"}},
        "webpush": {
            "fcm_options": {"link": "https://shop.example.com/orders/42"},
            "headers": {"Urgency": "high", "TTL": "3600"},
        },
    }
    assert isinstance(result, SendResult)
    assert result.provider_message_id is not None
    assert result.provider_message_id.startswith(f"projects/{PROJECT_ID}/messages/0:")


def test_a_plain_push_sends_only_the_notification(fcm) -> None:
    [result] = send(adapter(fcm), push_message(title="Hi", body="there"))
    assert isinstance(result, SendResult)
    assert fcm.sent[0].message == {
        "token": DEVICE,
        "notification": {"title": "Hi", "body": "there"},
    }


def test_an_app_deep_link_goes_in_data_only_and_normal_priority_is_kept(fcm) -> None:
    [result] = send(
        adapter(fcm), push_message(body="New message", url="myapp://inbox/7", priority="normal")
    )
    assert isinstance(result, SendResult)
    sent = fcm.sent[0].message
    assert sent["data"] == {"url": "myapp://inbox/7"}
    assert sent["android"] == {"priority": "NORMAL"}
    assert sent["webpush"] == {"headers": {"Urgency": "normal"}}  # a web link must be HTTPS
    assert sent["apns"] == {"headers": {"apns-priority": "5"}}


def test_a_data_only_push_has_no_notification(fcm) -> None:
    [result] = send(adapter(fcm), push_message(data={"sync": "1"}))
    assert isinstance(result, SendResult)
    assert fcm.sent[0].message == {"token": DEVICE, "data": {"sync": "1"}}


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ({}, "needs content.title, content.body or content.data"),
        ({"title": "x", "data": {"count": 3}}, "content.data.count must be a string"),
        ({"title": "x", "data": {"google.x": "1"}}, "reserves"),
        ({"title": "x", "data": ["a"]}, "must be an object"),
        ({"title": "x", "priority": "urgent"}, "content.priority"),
        ({"title": "x", "ttl_seconds": -1}, "content.ttl_seconds"),
        ({"title": "x", "ttl_seconds": "60"}, "content.ttl_seconds"),
        ({"title": "x", "image": "ftp://example.com/a.png"}, "content.image"),
        ({"title": 3}, "content.title"),
    ],
)
def test_content_fcm_would_refuse_fails_without_calling(fcm, content, complaint) -> None:
    message = OutboundMessage(1, "k", 1, Channel.PUSH, DEVICE, content)
    with pytest.raises(PermanentFailure, match=complaint):
        build_message(message)
    [outcome] = send(adapter(fcm), message)
    assert isinstance(outcome, PermanentFailure)
    assert fcm.requests == [] and fcm.token_requests == 0


# -- the access token ------------------------------------------------------------------------


def test_the_assertion_is_an_rs256_jwt_for_the_token_endpoint(fcm) -> None:
    built = adapter(fcm)
    token = built.assertion(now=1_700_000_000)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256" and header["kid"] == fcm.service_account()["private_key_id"]
    claims = jwt.decode(
        token,
        fcm.key.public_key(),
        algorithms=["RS256"],
        audience=fcm.token_uri,
        options={"verify_exp": False},
    )
    assert claims == {
        "iss": fcm.client_email,
        "scope": SCOPE,
        "aud": fcm.token_uri,
        "iat": 1_700_000_000,
        "exp": 1_700_003_600,
    }


def test_a_token_uri_in_the_config_overrides_the_service_accounts(fcm) -> None:
    account = fcm.service_account() | {"token_uri": "https://oauth2.googleapis.com/token"}
    [result] = send(adapter(fcm, service_account=account, token_uri=fcm.token_uri), push_message())
    assert isinstance(result, SendResult) and fcm.tokens_issued == 1


def test_one_token_serves_many_sends_and_is_fetched_once_for_concurrent_ones(fcm) -> None:
    built = adapter(fcm)

    async def scenario() -> list[SendResult]:
        try:
            crowd = await asyncio.gather(
                *(built.send(push_message(f"device-{i}")) for i in range(20))
            )
            later = await built.send(push_message())
            return [*crowd, later]
        finally:
            await built.aclose()

    results = asyncio.run(scenario())
    assert fcm.token_requests == 1 and fcm.tokens_issued == 1
    assert len({r.provider_message_id for r in results}) == 21
    assert len({r.authorization for r in fcm.requests}) == 1
    assert sorted(r.message["token"] for r in fcm.requests[:20]) == sorted(
        f"device-{i}" for i in range(20)
    )


def test_a_token_near_its_expiry_is_fetched_again(fcm) -> None:
    fcm.expires_in = 30  # inside the adapter's 60 s margin: never reused
    results = send(adapter(fcm), push_message(), push_message())
    assert all(isinstance(r, SendResult) for r in results)
    assert fcm.tokens_issued == 2
    assert fcm.requests[0].authorization != fcm.requests[1].authorization


def test_a_revoked_token_is_dropped_and_the_send_retried_once_with_a_new_one(fcm) -> None:
    built = adapter(fcm)

    async def scenario() -> list[SendResult]:
        try:
            first = await built.send(push_message())
            fcm.revoke()
            crowd = await asyncio.gather(
                *(built.send(push_message(f"device-{i}")) for i in range(10))
            )
            return [first, *crowd]
        finally:
            await built.aclose()

    results = asyncio.run(scenario())
    assert all(isinstance(r, SendResult) for r in results)
    assert fcm.tokens_issued == 2  # ten sends saw the revoked token; one fetched anew
    assert [r.answered for r in fcm.requests].count(401) == 10
    assert len(fcm.sent) == 11


def test_a_fresh_token_refused_too_fails_for_good_after_one_retry(fcm) -> None:
    fcm.fail_next(2, status=401)
    [outcome] = send(adapter(fcm), push_message())
    assert isinstance(outcome, PermanentFailure)
    assert "UNAUTHENTICATED" in outcome.reason and "service account" in outcome.reason
    assert [r.answered for r in fcm.requests] == [401, 401]
    assert fcm.tokens_issued == 2


def test_a_key_google_does_not_know_fails_for_good(fcm) -> None:
    stranger = fcm.service_account(key=new_key())
    [outcome] = send(adapter(fcm, service_account=stranger), push_message())
    assert isinstance(outcome, PermanentFailure)
    assert "invalid_grant" in outcome.reason and "Invalid JWT Signature" in outcome.reason
    assert fcm.requests == [] and fcm.tokens_issued == 0


def test_a_token_endpoint_that_cannot_be_reached_is_retried(fcm) -> None:
    [outcome] = send(adapter(fcm, token_uri="http://127.0.0.1:9/token"), push_message())
    assert isinstance(outcome, RetryLater) and "token endpoint" in outcome.reason


# -- FCM's errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rejection", "outcome", "reason"),
    [
        ("UNREGISTERED", AddressInvalid, "FCM UNREGISTERED: Requested entity was not found."),
        ("SENDER_ID_MISMATCH", AddressInvalid, "FCM SENDER_ID_MISMATCH: SenderId mismatch"),
        ("INVALID_TOKEN", AddressInvalid, "FCM INVALID_ARGUMENT: The registration token is not"),
        ("BAD_PAYLOAD", PermanentFailure, "FCM INVALID_ARGUMENT: Request contains an invalid"),
        ("THIRD_PARTY_AUTH_ERROR", PermanentFailure, "FCM THIRD_PARTY_AUTH_ERROR: Auth error"),
    ],
)
def test_fcm_rejections_become_outcomes(fcm, rejection, outcome, reason) -> None:
    fcm.reject(DEVICE, rejection)
    [result] = send(adapter(fcm), push_message())
    assert type(result) is outcome
    assert isinstance(result, DeliveryError) and result.reason.startswith(reason)
    if isinstance(result, AddressInvalid):
        assert result.status == "invalid"
    assert len(fcm.requests) == 1  # THIRD_PARTY_AUTH_ERROR is a 401, but not our token's
    assert fcm.tokens_issued == 1


@pytest.mark.parametrize("status", [429, 500, 503])
def test_rate_limits_and_outages_are_retried_no_sooner_than_retry_after(fcm, status) -> None:
    fcm.fail_next(1, status=status, retry_after=17)
    fcm.fail_next(1, status=status)
    outcomes = send(adapter(fcm), push_message(), push_message(), push_message())
    first, second, third = outcomes
    assert isinstance(first, RetryLater) and first.retry_after == 17
    assert isinstance(second, RetryLater) and second.retry_after is None
    assert f"(HTTP {status})" in first.reason
    assert isinstance(third, SendResult)


def test_an_fcm_that_does_not_answer_is_retried_after_the_timeout(fcm) -> None:
    fcm.hang_next(1)
    [outcome] = send(adapter(fcm, timeout=0.5), push_message())
    assert isinstance(outcome, RetryLater) and "did not answer within 0.5 s" in outcome.reason


def test_an_fcm_that_cannot_be_reached_is_retried(fcm) -> None:
    [outcome] = send(adapter(fcm, base_url="http://127.0.0.1:9"), push_message())
    assert isinstance(outcome, RetryLater) and "cannot reach FCM" in outcome.reason


def google(status: int, grpc: str, *details: dict[str, Any], **headers: str) -> httpx.Response:
    body = {"error": {"code": status, "message": "m", "status": grpc, "details": list(details)}}
    return httpx.Response(status, json=body, headers=headers)


def test_invalid_argument_blames_the_token_only_when_a_violation_names_it() -> None:
    token = {"@type": BAD_REQUEST, "fieldViolations": [{"field": "message.token"}]}
    other = {"@type": BAD_REQUEST, "fieldViolations": [{"field": "message.data"}]}
    fcm_code = {"@type": FCM_ERROR, "errorCode": "INVALID_ARGUMENT"}
    assert isinstance(fcm_error(google(400, "INVALID_ARGUMENT", fcm_code, token)), AddressInvalid)
    assert isinstance(fcm_error(google(400, "INVALID_ARGUMENT", token)), AddressInvalid)
    for details in [(fcm_code,), (fcm_code, other), ()]:
        outcome = fcm_error(google(400, "INVALID_ARGUMENT", *details))
        assert type(outcome) is PermanentFailure
        assert "payload" in outcome.reason


def test_answers_that_are_not_google_json_are_still_read() -> None:
    proxy = fcm_error(httpx.Response(502, text="<html>Bad gateway</html>", headers={}))
    assert isinstance(proxy, RetryLater) and proxy.reason == "FCM error: Bad Gateway (HTTP 502)"
    quota = fcm_error(
        google(429, "RESOURCE_EXHAUSTED", {"@type": FCM_ERROR, "errorCode": "QUOTA_EXCEEDED"})
    )
    assert isinstance(quota, RetryLater) and quota.retry_after is None
    dated = fcm_error(
        google(
            503,
            "UNAVAILABLE",
            **{
                "Retry-After": "Wed, 21 Oct 2026 07:28:30 GMT",
                "Date": "Wed, 21 Oct 2026 07:28:00 GMT",
            },
        )
    )
    assert isinstance(dated, RetryLater) and dated.retry_after == 30
    denied = fcm_error(google(403, "PERMISSION_DENIED"))
    assert type(denied) is PermanentFailure and "service account" in denied.reason
    missing = fcm_error(httpx.Response(404, text=""))  # a base_url that is not FCM's
    assert type(missing) is PermanentFailure and missing.reason == "FCM error: Not Found (HTTP 404)"


def test_a_wrong_project_is_a_permanent_failure(fcm) -> None:
    account = fcm.service_account() | {"project_id": "someone-else"}
    [outcome] = send(adapter(fcm, service_account=account), push_message())
    assert type(outcome) is PermanentFailure and "PERMISSION_DENIED" in outcome.reason


def test_a_pem_key_of_another_kind_is_refused(fcm) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    ec_key = ec.generate_private_key(ec.SECP256R1())
    text = ec_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    with pytest.raises(ValidationError, match="RSA"):
        FcmConfig.model_validate(
            config(fcm, service_account=fcm.service_account() | {"private_key": text})
        )
    assert pem(fcm.key).startswith("-----BEGIN PRIVATE KEY-----")


def test_a_token_endpoint_outage_is_retried_and_tried_once_for_concurrent_sends(fcm) -> None:
    fcm.fail_token_next(1, status=503, retry_after=9)
    built = adapter(fcm)

    async def scenario() -> list[SendResult | BaseException]:
        try:
            crowd = [built.send(push_message(f"device-{i}")) for i in range(20)]
            failed = await asyncio.gather(*crowd, return_exceptions=True)
            return [*failed, await built.send(push_message())]  # the endpoint is back
        finally:
            await built.aclose()

    *failed, recovered = asyncio.run(scenario())
    assert all(isinstance(f, RetryLater) and f.retry_after == 9 for f in failed)
    assert all("token endpoint" in str(f) and "HTTP 503" in str(f) for f in failed)
    assert isinstance(recovered, SendResult)
    assert fcm.token_requests == 2 and fcm.tokens_issued == 1
    assert len(fcm.requests) == 1
