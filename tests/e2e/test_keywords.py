"""STOP, START and HELP texted to a workspace's Twilio number: through Junction's hook, into
the preferences, and one reply back out through (fake) Twilio, on both databases."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from junction.channels.base import InboundMessage
from junction.clock import VirtualClock
from junction.domain.tracking import Identify
from junction.engine.dispatcher import Dispatcher
from junction.store.database import Database
from junction.store.inbound import record_inbound
from junction.store.ingest import Batch, ingest
from junction.store.preferences import set_rules
from junction.store.providers import set_channel_provider
from junction.store.tables import events, messages, preferences
from tests.conftest import SECRET, Tenant
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, twilio_signature

OUR_NUMBER = "+15017122661"
ADA = "+33612345678"
UNSUBSCRIBED = (
    "You're unsubscribed from Acme messages on SMS and will get no more. "
    "Reply START to subscribe again."
)


@pytest.fixture(scope="module")
def served() -> Iterator[FakeTwilio]:
    fake = FakeTwilio()
    with fake.serve():
        yield fake


@pytest.fixture
def twilio(
    served: FakeTwilio, database: Database, clock: VirtualClock, tenant: Tenant
) -> Iterator[FakeTwilio]:
    """The fake Twilio, clean, as the workspace's SMS provider; Ada is a known contact and
    the workspace's brand is Acme."""
    served.reset()
    config = {
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "from_number": OUR_NUMBER,
        "base_url": served.base_url,
    }
    with database.write() as conn:
        set_channel_provider(conn, tenant.id, "sms", "twilio_sms", config, clock.now())
        set_rules(conn, tenant.id, {"brand": "Acme"}, clock.now())
        ingest(
            conn,
            tenant.id,
            Batch([Identify(user_id="ada", traits={"phone": ADA})], clock.now()),
            SECRET,
        )
    yield served
    served.reset()


def text_us(
    client: TestClient, tenant: Tenant, sid: str, body: str, sender: str = ADA
) -> httpx.Response:
    """An SMS to our number, as Twilio's messaging webhook posts it: a signed form."""
    url = f"http://testserver/hooks/{tenant.id}/twilio_sms"
    form = {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": sender,
        "To": OUR_NUMBER,
        "Body": body,
        "NumMedia": "0",
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
    }
    answer = client.post(
        url, data=form, headers={"X-Twilio-Signature": twilio_signature(AUTH_TOKEN, url, form)}
    )
    assert answer.status_code == 200, answer.text
    return answer


def choices(database: Database) -> dict[tuple[str, str], tuple[bool, str]]:
    with database.read() as conn:
        rows = conn.execute(select(preferences)).all()
    return {(r.topic, r.channel): (r.opted_in, r.source) for r in rows}


def replies(database: Database) -> list[Any]:
    with database.read() as conn:
        return list(conn.execute(select(messages).order_by(messages.c.id)).all())


def keyword_events(database: Database) -> list[tuple[str, dict[str, Any]]]:
    with database.read() as conn:
        rows = conn.execute(
            select(events.c.name, events.c.properties)
            .where(events.c.name.in_(["message.unsubscribed", "message.resubscribed"]))
            .order_by(events.c.id)
        ).all()
    return [(r.name, r.properties) for r in rows]


def dispatch(database: Database, clock: VirtualClock) -> int:
    return asyncio.run(Dispatcher(database, clock).drain())


def test_stop_opts_out_of_sms_and_is_answered_once(client, database, clock, tenant, twilio) -> None:
    text_us(client, tenant, "SM" + "1" * 32, "Stop")

    assert choices(database) == {("*", "sms"): (False, "keyword")}
    assert keyword_events(database) == [
        (
            "message.unsubscribed",
            {"channel": "sms", "topic": "*", "source": "keyword", "keyword": "STOP"},
        )
    ]
    [reply] = replies(database)
    assert (reply.channel, reply.provider, reply.to_address) == ("sms", "twilio_sms", ADA)
    assert reply.content == {"text": UNSUBSCRIBED}
    assert reply.category == "transactional" and reply.policy == {"reply": True}

    text_us(client, tenant, "SM" + "1" * 32, "Stop")  # Twilio delivers the webhook again
    assert len(replies(database)) == 1
    assert len(keyword_events(database)) == 1

    assert dispatch(database, clock) == 1
    [sent] = replies(database)
    assert sent.status == "sent", f"the STOP reply was {sent.status}: {sent.last_error}"
    [out] = twilio.messages
    assert out.form["To"] == ADA and out.form["Body"] == UNSUBSCRIBED


def test_start_opts_back_in_and_a_late_redelivered_stop_does_not_undo_it(
    client, database, clock, tenant, twilio
) -> None:
    text_us(client, tenant, "SM" + "1" * 32, "STOP")
    text_us(client, tenant, "SM" + "2" * 32, "start")

    assert choices(database) == {("*", "sms"): (True, "keyword")}
    assert [name for name, _ in keyword_events(database)] == [
        "message.unsubscribed",
        "message.resubscribed",
    ]
    stop, start = replies(database)
    assert start.content == {
        "text": "You're subscribed again to Acme messages on SMS. Reply STOP to unsubscribe."
    }
    assert start.policy == {"reply": True} and start.to_address == ADA

    text_us(client, tenant, "SM" + "1" * 32, "STOP")  # the first webhook, delivered late
    assert choices(database) == {("*", "sms"): (True, "keyword")}
    assert len(replies(database)) == 2

    assert dispatch(database, clock) == 2
    assert [m.status for m in replies(database)] == ["sent", "sent"], [
        m.last_error for m in replies(database)
    ]
    bodies = sorted(m.form["Body"] for m in twilio.messages)  # sent at once, in any order
    assert bodies == sorted([stop.content["text"], start.content["text"]])


def test_help_answers_with_the_workspaces_help_text_and_stores_nothing(
    client, database, clock, tenant, twilio
) -> None:
    help_text = "Acme: support at acme.example/help or 0800 123 456. Reply STOP to opt out."
    with database.write() as conn:
        rules = {"brand": "Acme", "keywords": {"helpText": {"en": help_text, "fr": "Aide."}}}
        set_rules(conn, tenant.id, rules, clock.now())

    text_us(client, tenant, "SM" + "3" * 32, "help!")

    assert choices(database) == {}
    assert keyword_events(database) == []
    [reply] = replies(database)
    assert reply.content == {"text": help_text} and reply.policy == {"reply": True}
    assert dispatch(database, clock) == 1
    assert replies(database)[0].status == "sent"
    assert [m.form["Body"] for m in twilio.messages] == [help_text]


def test_a_sentence_that_mentions_stop_changes_nothing_and_gets_no_reply(
    client, database, clock, tenant, twilio
) -> None:
    answer = text_us(client, tenant, "SM" + "4" * 32, "please stop")

    assert answer.json()["inbound"] == 1
    assert choices(database) == {}
    assert replies(database) == []
    assert keyword_events(database) == []
    with database.read() as conn:
        received = conn.execute(
            select(events.c.properties).where(events.c.name == "message.received")
        ).scalar_one()
    assert received["text"] == "please stop"  # stored for a person to read, as before


def test_arret_is_answered_in_french(client, database, clock, tenant, twilio) -> None:
    text_us(client, tenant, "SM" + "5" * 32, "ARRÊT")

    assert choices(database) == {("*", "sms"): (False, "keyword")}
    assert keyword_events(database)[0][1]["keyword"] == "ARRET"
    [reply] = replies(database)
    assert reply.content["text"] == (
        "Vous êtes désabonné(e) des messages Acme par SMS et n'en recevrez plus. "
        "Répondez START pour vous réabonner."
    )
    assert dispatch(database, clock) == 1
    assert replies(database)[0].status == "sent"
    assert twilio.messages[0].form["Body"] == reply.content["text"]


def test_a_workspaces_own_stop_word_works_for_a_stranger_too(
    client, database, clock, tenant, twilio
) -> None:
    with database.write() as conn:
        rules = {"brand": "Acme", "keywords": {"extra": {"BAJA": "stop"}}}
        set_rules(conn, tenant.id, rules, clock.now())

    text_us(client, tenant, "SM" + "6" * 32, "¡Baja!", sender="+34600000001")

    assert choices(database) == {("*", "sms"): (False, "keyword")}
    [reply] = replies(database)
    assert reply.to_address == "+34600000001" and reply.content == {"text": UNSUBSCRIBED}


def test_whatsapp_stop_opts_out_of_whatsapp_only_and_replies_in_free_text(
    database, clock, tenant
) -> None:
    stop = InboundMessage("whatsapp", ADA, "wamid.ABC", "stop")
    hello = InboundMessage("telegram", "4242", "tg:1", "STOP")  # not a keyword channel
    with database.write() as conn:
        assert record_inbound(conn, tenant.id, [stop, hello], clock.now()) == 2

    assert choices(database) == {("*", "whatsapp"): (False, "keyword")}
    [reply] = replies(database)
    assert (reply.channel, reply.provider, reply.to_address) == ("whatsapp", "capture", ADA)
    assert reply.content == {
        "text": "You're unsubscribed from our messages on WhatsApp and will get no more. "
        "Reply START to subscribe again."
    }
    assert dispatch(database, clock) == 1
    assert replies(database)[0].status == "sent"
