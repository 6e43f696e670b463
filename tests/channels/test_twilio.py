"""The Twilio adapters against a fake Twilio API served on loopback: what they send, how
Twilio's answers and errors become Junction's outcomes, how status callbacks are checked and
read — and, through the real dispatcher on both databases, what a send leaves recorded."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from junction.api.app import create_app
from junction.channels import registry
from junction.channels.base import (
    AddressInvalid,
    Channel,
    DeliveryUpdate,
    OutboundMessage,
    PermanentFailure,
    RetryLater,
    SendResult,
)
from junction.channels.twilio import (
    TwilioSmsAdapter,
    TwilioVoiceAdapter,
    _error,
    say_language,
)
from junction.domain.tracking import Identify
from junction.engine.dispatcher import Dispatcher
from junction.errors import InvalidInput, InvalidSignature
from junction.store.database import Database
from junction.store.ingest import Batch, ingest
from junction.store.providers import set_channel_provider
from junction.store.sends import SendRequest, accept, get_message
from junction.store.tables import addresses
from tests.channels.sending import send
from tests.conftest import SECRET, Tenant
from tests.e2e.server import serving
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, twilio_signature

SENDER = "+15017122661"
ADA = "+33612345678"
CALLBACKS = "https://junction.example.com/hooks/1/twilio_sms"
SERVICE = "MG" + "9" * 32


@pytest.fixture(scope="module")
def served() -> Iterator[FakeTwilio]:
    fake = FakeTwilio()
    with fake.serve():
        yield fake


@pytest.fixture
def twilio(served: FakeTwilio) -> Iterator[FakeTwilio]:
    """The fake Twilio, with no request, resource or script left by an earlier test."""
    served.reset()
    yield served
    served.reset()


def config(twilio: FakeTwilio, **overrides: Any) -> dict[str, Any]:
    return {
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "from_number": SENDER,
        "base_url": twilio.base_url,
        "status_callback_url": CALLBACKS,
        **overrides,
    }


def sms(to: str = ADA, text: str = "Your code is 1234") -> OutboundMessage:
    return OutboundMessage(1, "k1", 1, Channel.SMS, to, {"text": text})


def call(
    to: str = ADA, text: str = "Your code is 1 2 3 4", locale: str | None = None
) -> OutboundMessage:
    return OutboundMessage(2, "k2", 1, Channel.VOICE, to, {"text": text}, locale=locale)


# -- SMS -----------------------------------------------------------------------------------


def test_an_sms_is_posted_as_twilio_documents_and_records_its_segments(twilio) -> None:
    [result] = send(registry.build("twilio_sms", config(twilio)), sms())
    [request] = twilio.requests
    assert request.auth == (ACCOUNT_SID, AUTH_TOKEN)
    assert request.account_sid == ACCOUNT_SID and request.resource == "Messages"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.form == {
        "To": ADA,
        "Body": "Your code is 1234",
        "From": SENDER,
        "StatusCallback": CALLBACKS,
    }
    assert isinstance(result, SendResult)
    assert result.provider_message_id in twilio.created
    assert str(result.provider_message_id).startswith("SM")
    assert result.details == {"encoding": "GSM-7", "segments": 1}


def test_a_long_unicode_sms_is_ucs_2_in_several_segments(twilio) -> None:
    text = "Fête de l'été ✨ " * 10  # 160 characters, but ê and ✨ make it UCS-2: 67 per segment
    [result] = send(registry.build("twilio_sms", config(twilio)), sms(text=text))
    assert isinstance(result, SendResult)
    assert result.details == {"encoding": "UCS-2", "segments": 3}
    assert twilio.messages[0].form["Body"] == text


def test_an_sms_can_go_through_a_messaging_service_instead_of_a_number(twilio) -> None:
    settings = config(twilio, from_number=None, messaging_service_sid=SERVICE)
    del settings["status_callback_url"]
    [result] = send(registry.build("twilio_sms", settings), sms())
    assert isinstance(result, SendResult)
    assert twilio.messages[0].form == {
        "To": ADA,
        "Body": "Your code is 1234",
        "MessagingServiceSid": SERVICE,
    }
    assert twilio.created[str(result.provider_message_id)]["status"] == "accepted"


def test_a_configuration_needs_a_sender_and_keeps_its_token_secret(twilio) -> None:
    with pytest.raises(InvalidInput) as caught:
        registry.validate_config("twilio_sms", config(twilio, from_number=None))
    assert [e.as_dict() for e in caught.value.errors] == [
        {
            "field": "config.from_number",
            "message": "Value error, give from_number (E.164) or messaging_service_sid",
        }
    ]
    with pytest.raises(InvalidInput) as caught:
        registry.validate_config("twilio_voice", config(twilio, from_number="0612345678"))
    assert [e.field for e in caught.value.errors] == ["config.from_number"]  # not E.164
    with pytest.raises(InvalidInput) as caught:
        registry.validate_config("twilio_sms", config(twilio, account_sid="SK123", extra=1))
    assert sorted(e.field for e in caught.value.errors) == ["config.account_sid", "config.extra"]
    shown = registry.masked("twilio_sms", config(twilio))
    assert shown["auth_token"] == "********0001" and shown["account_sid"] == ACCOUNT_SID


# -- voice ---------------------------------------------------------------------------------


def test_a_call_says_the_text_in_the_language_of_the_locale(twilio) -> None:
    text = 'Votre code : 1 2 3 4. Merci & à bientôt <3 "Acme"'
    [result] = send(registry.build("twilio_voice", config(twilio)), call(text=text, locale="fr"))
    [request] = twilio.calls
    assert request.auth == (ACCOUNT_SID, AUTH_TOKEN)
    assert (request.form["To"], request.form["From"]) == (ADA, SENDER)
    assert request.form["Twiml"] == (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Say language="fr-FR">'
        'Votre code : 1 2 3 4. Merci &amp; à bientôt &lt;3 "Acme"</Say></Response>'
    )
    assert request.form["StatusCallback"] == CALLBACKS
    assert request.all("StatusCallbackEvent") == ["ringing", "answered", "completed"]
    assert isinstance(result, SendResult)
    assert str(result.provider_message_id).startswith("CA")
    assert result.provider_message_id in twilio.created
    assert result.details == {"language": "fr-FR"}


@pytest.mark.parametrize(
    ("locale", "language"),
    [
        (None, "en-US"),
        ("en", "en-US"),
        ("en-GB", "en-GB"),
        ("fr", "fr-FR"),
        ("fr-CA", "fr-CA"),
        ("fr_BE", "fr-FR"),  # Twilio has no Belgian French: France's
        ("pt", "pt-BR"),
        ("de-de", "de-DE"),
        ("zh-Hant-TW", "zh-TW"),
        ("tlh", "en-US"),  # a language Twilio does not speak
    ],
)
def test_locales_map_to_a_language_twilio_speaks(locale, language) -> None:
    assert say_language(locale) == language


def test_a_call_whose_twiml_is_over_twilios_inline_limit_fails_without_calling(twilio) -> None:
    [outcome] = send(registry.build("twilio_voice", config(twilio)), call(text="a & b " * 600))
    assert isinstance(outcome, PermanentFailure) and "at most 4000" in outcome.reason
    assert twilio.requests == []


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "outcome", "address_status"),
    [
        (21211, AddressInvalid, "invalid"),
        (21614, AddressInvalid, "invalid"),
        (21610, AddressInvalid, "unsubscribed"),
        (21408, PermanentFailure, None),  # permission to send to this region is not enabled
    ],
)
def test_twilio_error_codes_become_outcomes(twilio, code, outcome, address_status) -> None:
    twilio.reject("+15005550001", code)
    [failed, fine] = send(
        registry.build("twilio_sms", config(twilio)), sms(to="+15005550001"), sms()
    )
    assert type(failed) is outcome
    assert f"Twilio error {code}: " in failed.reason and "(HTTP 400)" in failed.reason
    assert getattr(failed, "status", None) == address_status
    assert isinstance(fine, SendResult)  # only that number is refused


def test_a_call_to_an_invalid_number_marks_it_invalid(twilio) -> None:
    twilio.reject("+15005550001", 21211)
    [failed] = send(registry.build("twilio_voice", config(twilio)), call(to="+15005550001"))
    assert isinstance(failed, AddressInvalid) and failed.status == "invalid"
    assert "The 'To' number is not a valid phone number." in failed.reason


def test_wrong_credentials_fail_for_good_and_say_what_to_check(twilio) -> None:
    [failed] = send(registry.build("twilio_sms", config(twilio, auth_token="wrong")), sms())
    assert isinstance(failed, PermanentFailure) and not isinstance(failed, AddressInvalid)
    assert failed.reason == (
        "Twilio error 20003: Authenticate (HTTP 401); check the account_sid and auth_token"
        " of this provider"
    )


def test_a_rate_limit_is_retried_no_sooner_than_retry_after(twilio) -> None:
    twilio.fail_next(1, status=429, retry_after=7)
    [limited, later] = send(registry.build("twilio_sms", config(twilio)), sms(), sms())
    assert isinstance(limited, RetryLater) and limited.retry_after == 7
    assert limited.reason == "Twilio error 20429: Too Many Requests (HTTP 429)"
    assert isinstance(later, SendResult)
    assert [r.answered for r in twilio.requests] == [429, 201]


def test_an_outage_is_retried(twilio) -> None:
    twilio.fail_next(2, status=503)
    adapter = registry.build("twilio_voice", config(twilio))
    [first, second, third] = send(adapter, call(), call(), call())
    assert isinstance(first, RetryLater) and first.retry_after is None
    assert "HTTP 503" in first.reason and isinstance(second, RetryLater)
    assert isinstance(third, SendResult)


def test_a_twilio_that_does_not_answer_is_retried_after_the_timeout(twilio) -> None:
    twilio.hang_next(1)
    adapter = registry.build("twilio_sms", config(twilio, timeout=0.3))
    [timed_out, fine] = send(adapter, sms(), sms())
    assert isinstance(timed_out, RetryLater)
    assert timed_out.reason == "Twilio did not answer within 0.3 s (ReadTimeout)"
    assert isinstance(fine, SendResult)
    assert [r.answered for r in twilio.requests] == [None, 201]  # the first still hangs


def test_a_twilio_that_cannot_be_reached_is_retried() -> None:
    gone = FakeTwilio()
    with gone.serve():
        pass  # its port is closed again: nothing listens there any more
    [outcome] = send(registry.build("twilio_sms", config(gone)), sms())
    assert isinstance(outcome, RetryLater) and outcome.reason.startswith("cannot reach Twilio")


def test_answers_that_are_not_twilio_json_are_still_read() -> None:
    dated = httpx.Response(
        429,
        headers={
            "Retry-After": "Fri, 20 Nov 2026 09:01:00 GMT",
            "Date": "Fri, 20 Nov 2026 09:00:15 GMT",
        },
        json={"code": 20429, "message": "Too Many Requests", "status": 429},
    )
    limited = _error(dated)
    assert isinstance(limited, RetryLater) and limited.retry_after == 45
    proxy = _error(httpx.Response(502, text="<html>Bad gateway</html>"))
    assert isinstance(proxy, RetryLater) and proxy.reason == "Bad Gateway (HTTP 502)"
    missing = _error(httpx.Response(404, text=""))  # a base_url that is not Twilio's API
    assert isinstance(missing, PermanentFailure) and missing.reason == "Not Found (HTTP 404)"


def test_one_adapter_keeps_its_connection_and_sends_many_at_once(twilio) -> None:
    adapter = registry.build("twilio_sms", config(twilio))

    async def scenario() -> list[SendResult]:
        try:
            first = await adapter.send(sms())
            second = await adapter.send(sms())
            crowd = await asyncio.gather(*(adapter.send(sms(text=f"n°{i}")) for i in range(20)))
            return [first, second, *crowd]
        finally:
            await adapter.aclose()

    results = asyncio.run(scenario())
    assert twilio.requests[0].client == twilio.requests[1].client  # kept alive, reused
    assert len({r.provider_message_id for r in results}) == 22
    assert sorted(r.form["Body"] for r in twilio.requests[2:]) == sorted(
        f"n°{i}" for i in range(20)
    )


# -- status callbacks ----------------------------------------------------------------------


def delivered_sms(twilio: FakeTwilio) -> tuple[TwilioSmsAdapter, str]:
    adapter = registry.build("twilio_sms", config(twilio))
    assert isinstance(adapter, TwilioSmsAdapter)
    [result] = send(adapter, sms())
    assert isinstance(result, SendResult) and result.provider_message_id
    return adapter, result.provider_message_id


def received(
    adapter: TwilioSmsAdapter | TwilioVoiceAdapter, headers: dict[str, str], body: bytes, url: str
) -> Sequence[DeliveryUpdate]:
    # The API hands adapters Starlette's headers, whose names are lower case.
    return adapter.parse_webhook({k.lower(): v for k, v in headers.items()}, body, url)


def test_a_signed_status_callback_becomes_a_delivery_update(twilio) -> None:
    adapter, sid = delivered_sms(twilio)
    callback = twilio.status_callback(sid, "delivered")
    assert callback.url == CALLBACKS
    assert received(adapter, callback.headers, callback.body, callback.url) == [
        DeliveryUpdate(sid, "delivered", None, {"twilio_status": "delivered"})
    ]


def test_the_signature_is_twilios_documented_hmac_sha1() -> None:
    # Twilio's own example: the URL, then each sorted name and value, keyed with the token.
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675309", "Digits": "1234"}
    params |= {"From": "+14158675309", "To": "+18005551212"}
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert twilio_signature("12345", url, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_a_tampered_or_unsigned_callback_is_refused(twilio) -> None:
    adapter, sid = delivered_sms(twilio)
    callback = twilio.status_callback(sid, "delivered")
    tampered = callback.body.replace(b"delivered", b"undelivered")
    with pytest.raises(InvalidSignature):
        received(adapter, callback.headers, tampered, callback.url)
    with pytest.raises(InvalidSignature):  # signed for another URL: another workspace's
        received(adapter, callback.headers, callback.body, CALLBACKS.replace("/1/", "/2/"))
    unsigned = {k: v for k, v in callback.headers.items() if k != "X-Twilio-Signature"}
    with pytest.raises(InvalidSignature):
        received(adapter, unsigned, callback.body, callback.url)
    forged = {**callback.headers, "X-Twilio-Signature": twilio_signature("guess", CALLBACKS, {})}
    with pytest.raises(InvalidSignature):
        received(adapter, forged, callback.body, callback.url)


@pytest.mark.parametrize(
    ("twilio_status", "error_code", "update", "reason"),
    [
        ("queued", None, "queued", None),
        ("sending", None, "queued", None),
        ("sent", None, "sent", None),
        ("delivered", None, "delivered", None),
        ("read", None, "read", None),
        ("undelivered", "30003", "failed", "Twilio error 30003: unreachable destination handset"),
        ("failed", "30008", "failed", "Twilio error 30008: unknown error"),
    ],
)
def test_message_statuses_map_to_delivery_updates(
    twilio, twilio_status, error_code, update, reason
) -> None:
    adapter, sid = delivered_sms(twilio)
    callback = twilio.status_callback(sid, twilio_status, error_code=error_code)
    [got] = received(adapter, callback.headers, callback.body, callback.url)
    assert (got.provider_message_id, got.status, got.reason) == (sid, update, reason)


@pytest.mark.parametrize(
    ("twilio_status", "update", "reason"),
    [
        ("initiated", "queued", None),
        ("ringing", "sent", None),
        ("in-progress", "delivered", None),
        ("completed", "delivered", None),
        ("busy", "failed", "the line was busy"),
        ("no-answer", "failed", "nobody answered"),
        ("canceled", "failed", "the call was canceled before it was answered"),
        ("failed", "failed", "the call could not be placed"),
    ],
)
def test_call_statuses_map_to_delivery_updates(twilio, twilio_status, update, reason) -> None:
    adapter = registry.build("twilio_voice", config(twilio))
    assert isinstance(adapter, TwilioVoiceAdapter)
    [result] = send(adapter, call())
    sid = str(result.provider_message_id)  # type: ignore[union-attr]
    callback = twilio.status_callback(sid, twilio_status)
    [got] = received(adapter, callback.headers, callback.body, callback.url)
    assert (got.provider_message_id, got.status, got.reason) == (sid, update, reason)
    assert got.details.get("duration_seconds") == (12 if twilio_status == "completed" else None)


def test_callbacks_are_translated_as_they_come_even_out_of_order(twilio) -> None:
    adapter, sid = delivered_sms(twilio)
    updates = []
    for status in ("delivered", "sent"):  # Twilio may report sent after delivered
        callback = twilio.status_callback(sid, status)
        updates += received(adapter, callback.headers, callback.body, callback.url)
    assert [u.status for u in updates] == ["delivered", "sent"]  # ordering is the store's job


def test_a_callback_with_a_status_not_tracked_gives_no_update(twilio) -> None:
    adapter, sid = delivered_sms(twilio)
    callback = twilio.status_callback(sid, "receiving")
    assert received(adapter, callback.headers, callback.body, callback.url) == []


# -- through the dispatcher, on both databases ---------------------------------------------


def use_twilio(database: Database, tenant: Tenant, clock: Any, settings: dict[str, Any]) -> None:
    with database.write() as conn:
        set_channel_provider(conn, tenant.id, "sms", "twilio_sms", settings, clock.now())


def queue_sms(database: Database, tenant: Tenant, clock: Any, user: str, phone: str) -> int:
    with database.write() as conn:
        ingest(
            conn,
            tenant.id,
            Batch([Identify(user_id=user, traits={"phone": phone})], clock.now()),
            SECRET,
        )
        answer = accept(
            conn,
            tenant.id,
            SendRequest(channel="sms", to={"userId": user}, content={"text": f"Hi {user} €5"}),
            clock.now(),
        )
    return int(answer.body["id"])


def message(database: Database, tenant: Tenant, message_id: int) -> dict[str, Any]:
    with database.read() as conn:
        return get_message(conn, tenant.id, message_id)


def dispatch(database: Database, clock: Any) -> int:
    """Send everything due (drain() closes the adapters it built)."""
    return asyncio.run(Dispatcher(database, clock).drain())


def test_the_dispatcher_sends_sms_through_twilio_and_records_the_outcome(
    database, clock, tenant, twilio
) -> None:
    use_twilio(database, tenant, clock, config(twilio))
    twilio.reject("+33698765432", 21610)
    ada = queue_sms(database, tenant, clock, "ada", ADA)
    bob = queue_sms(database, tenant, clock, "bob", "+33698765432")

    assert dispatch(database, clock) == 2

    [sent] = twilio.messages
    assert sent.form == {
        "To": ADA,
        "Body": "Hi ada €5",
        "From": SENDER,
        "StatusCallback": CALLBACKS,
    }
    delivered = message(database, tenant, ada)
    assert delivered["status"] == "sent" and delivered["provider"] == "twilio_sms"
    assert delivered["providerMessageId"] in twilio.created
    assert delivered["details"] == {"encoding": "GSM-7", "segments": 1}
    refused = message(database, tenant, bob)
    assert refused["status"] == "failed" and refused["attempts"] == 1
    assert refused["lastError"].startswith("Twilio error 21610: Attempt to send to unsubscribed")
    with database.read() as conn:
        statuses = dict(conn.execute(select(addresses.c.value, addresses.c.status)).all())
    assert statuses == {ADA: "active", "+33698765432": "unsubscribed"}


def test_twilios_status_callback_reaches_the_message_through_junctions_hook(
    settings, database, clock, tenant, twilio
) -> None:
    with serving(create_app(settings, database, clock)) as junction:
        hook = f"{junction}/hooks/{tenant.id}/twilio_sms"
        use_twilio(database, tenant, clock, config(twilio, status_callback_url=hook))
        message_id = queue_sms(database, tenant, clock, "ada", ADA)
        dispatch(database, clock)
        sid = message(database, tenant, message_id)["providerMessageId"]

        answer = twilio.post(twilio.status_callback(sid, "delivered"))
        assert answer.status_code == 200 and answer.json() == {
            "received": 1,
            "applied": 1,
            "inbound": 0,
        }
        late = twilio.post(twilio.status_callback(sid, "sent"))  # out of order: ignored
        assert late.json() == {"received": 1, "applied": 0, "inbound": 0}
        forged = twilio.status_callback(sid, "failed")
        forged.headers["X-Twilio-Signature"] = twilio_signature("not-the-token", hook, {})
        assert twilio.post(forged).status_code == 403

    assert message(database, tenant, message_id)["status"] == "delivered"
