"""Reachability end to end, through the API, with the fake providers and a real SMTP server:
a STOP stops the next SMS, a one-click unsubscribe the next marketing email, each person gets
their best channel, a failed SMS becomes a call, and every decision keeps its reasons."""

from __future__ import annotations

import asyncio
import email
import email.policy
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest

from junction.engine.dispatcher import Dispatcher
from junction.render.personalise import Links
from junction.store.providers import set_channel_provider
from tests.channels.test_smtp import config as smtp_config
from tests.channels.test_smtp import server, sink  # noqa: F401 - fixtures
from tests.conftest import SECRET
from tests.e2e.test_keywords import ADA, served, text_us, twilio  # noqa: F401 - fixtures

LINKS = Links(SECRET.encode(), "http://testserver")


def dispatch(database: Any, clock: Any) -> int:
    return asyncio.run(Dispatcher(database, clock, links=LINKS).drain())


def identify(client: Any, user_id: str, **traits: Any) -> None:
    answer = client.post("/v1/identify", json={"userId": user_id, "traits": traits})
    assert answer.status_code == 200, answer.text


def send(client: Any, **body: Any) -> dict[str, Any]:
    answer = client.post("/v1/messages", json=body)
    assert answer.status_code == 202, answer.text
    shown: dict[str, Any] = client.get(f"/v1/messages/{answer.json()['id']}").json()
    return shown


def shown(client: Any, message: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = client.get(f"/v1/messages/{message['id']}").json()
    return found


def topic(client: Any, key: str, **fields: Any) -> None:
    answer = client.put(f"/v1/topics/{key}", json={"name": key.title(), **fields})
    assert answer.status_code == 200, answer.text


def test_a_stop_stops_the_next_sms(client, database, clock, tenant, twilio) -> None:  # noqa: F811
    topic(client, "offers")
    sms = {"to": {"userId": "ada"}, "channel": "sms", "content": {"text": "20% off"}}
    first = send(client, **sms, category="offers")
    assert dispatch(database, clock) == 1
    assert shown(client, first)["status"] == "sent"

    text_us(client, tenant, "SM" + "7" * 32, "STOP")
    later = send(client, **sms, category="offers")
    code = send(client, **{**sms, "content": {"text": "Your code is 4242"}})
    dispatch(database, clock)

    bodies = [m.form["Body"] for m in twilio.messages]
    assert bodies[0] == "20% off" and len(bodies) == 2  # the offer, then the STOP reply
    for message in (later, code):
        suppressed = shown(client, message)
        assert suppressed["status"] == "suppressed"
        assert "sms opted out" in suppressed["lastError"], suppressed["lastError"]
        [decision] = suppressed["decisions"]
        assert decision["action"] == "suppress"
        assert decision["considered"][0]["channel"] == "sms"
        assert not decision["considered"][0]["eligible"]


def test_one_click_unsubscribe_from_a_received_email_stops_the_next(
    client,
    database,
    clock,
    tenant,
    server,  # noqa: F811
    sink,  # noqa: F811
) -> None:
    with database.write() as conn:
        set_channel_provider(conn, tenant.id, "email", "smtp", smtp_config(server), clock.now())
    identify(client, "ada", email="ada@x.io")
    topic(client, "newsletter")
    news = {"subject": "November news", "text": "What is new."}
    send(client, to={"userId": "ada"}, channel="email", content=news, category="newsletter")
    assert dispatch(database, clock) == 1

    received = email.message_from_bytes(sink.only().raw, policy=email.policy.default)
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = str(received["List-Unsubscribe"]).strip("<>")
    path = urlsplit(url).path
    assert client.get(path).status_code == 200  # a scanner's GET changes nothing
    later = send(client, to={"userId": "ada"}, channel="email", content=news, category="newsletter")
    dispatch(database, clock)
    assert shown(client, later)["status"] == "sent"

    # What a mailbox provider does: POST the RFC 8058 body to the URL.
    answer = client.post(
        path,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200
    third = send(client, to={"userId": "ada"}, channel="email", content=news, category="newsletter")
    receipt = send(
        client,
        to={"userId": "ada"},
        channel="email",
        content={"subject": "Receipt", "text": "Paid."},
    )
    dispatch(database, clock)
    assert shown(client, third)["status"] == "suppressed"
    assert "newsletter" in shown(client, third)["lastError"]
    assert shown(client, receipt)["status"] == "sent"  # transactional mail still goes
    assert [m.message["Subject"] for m in sink.received] == [
        "November news",
        "November news",
        "Receipt",
    ]


ALERT = {
    "key": "alert",
    "channels": {
        "whatsapp": {"template": {"name": "alert", "language": "en", "parameters": ["x"]}},
        "telegram": {"text": "Alert"},
        "push": {"body": "Alert"},
        "sms": {"text": "Alert"},
        "voice": {"text": "This is an alert."},
    },
}
BEST_OF = ["whatsapp", "telegram", "push", "sms", "voice"]


@pytest.mark.parametrize(
    ("traits", "expected", "why"),
    [
        ({"phone": "+5511987654321", "country": "BR"}, "whatsapp", "usual app in BR"),
        ({"phone": "+5511987654321"}, "whatsapp", "usual app in BR"),  # the phone's country
        ({"phone": "+819012345678", "country": "JP"}, "sms", "usual apps in JP"),
        ({"phone": "+14155550123", "country": "US"}, "sms", "usual apps in US"),
        (
            {"phone": "+5511987654321", "country": "BR", "preferred_channel": "sms"},
            "sms",
            "preferred",
        ),
    ],
)
def test_each_person_gets_their_best_channel(
    client, database, clock, traits: dict[str, Any], expected: str, why: str
) -> None:
    assert client.post("/v1/templates", json=ALERT).status_code == 201
    identify(client, "p", **traits)
    message = send(client, to={"userId": "p"}, channels=BEST_OF, template="alert")
    assert message["status"] == "queued" and message["policy"] == {"channels": BEST_OF}
    assert dispatch(database, clock) == 1
    sent = shown(client, message)
    assert (sent["status"], sent["channel"], sent["to"]) == ("sent", expected, traits["phone"])
    [decision] = sent["decisions"]
    assert decision["channel"] == expected and why in decision["reason"], decision["reason"]
    considered = {c["channel"]: c for c in decision["considered"]}
    assert set(considered) == set(BEST_OF)
    assert "no address" in " ".join(considered["telegram"]["reasons"])


def test_a_failed_sms_becomes_a_call(client, database, clock, tenant, twilio) -> None:  # noqa: F811
    client.post("/v1/templates", json=ALERT)
    twilio.reject(ADA, 21408)  # "Permission to send an SMS has not been enabled for the region"
    message = send(client, to={"userId": "ada"}, channels=["sms", "voice"], template="alert")
    dispatch(database, clock)
    called = shown(client, message)
    assert (called["status"], called["channel"]) == ("sent", "voice"), called
    assert called["policy"]["tried"] == ["sms"]
    chain = [(d["action"], d["channel"]) for d in called["decisions"]]
    assert chain == [("send", "sms"), ("reroute", "sms"), ("send", "voice")]
    assert "21408" in called["decisions"][1]["reason"]
    assert [h["outcome"] for h in called["history"]] == ["failed", "sent"]
    assert "21408" in called["history"][0]["error"]


def test_undelivered_within_the_timeout_moves_on(client, database, clock) -> None:
    client.post("/v1/templates", json=ALERT)
    identify(client, "bia", phone="+5511987654321", country="BR")
    message = send(
        client,
        to={"userId": "bia"},
        channels=["whatsapp", "sms"],
        template="alert",
        fallbackAfterSeconds=600,
    )
    dispatch(database, clock)
    assert shown(client, message)["channel"] == "whatsapp"
    clock.advance(timedelta(seconds=599))
    assert dispatch(database, clock) == 0
    clock.advance(timedelta(seconds=2))
    assert dispatch(database, clock) == 1
    moved = shown(client, message)
    assert (moved["status"], moved["channel"]) == ("sent", "sms")
    assert "not confirmed within 600 seconds" in moved["decisions"][1]["reason"]


def test_caps_and_quiet_hours_hold_with_reasons(client, database, clock) -> None:
    topic(client, "promo")
    rules = {
        "caps": [{"id": "two-a-day", "limit": 2, "per": {"amount": 1, "unit": "days"}}],
        "quietHours": [{"start": "21:00", "end": "08:00", "channels": ["sms"]}],
    }
    assert client.put("/v1/policies", json=rules).status_code == 200
    identify(client, "cy", phone="+33612345678", email="cy@x.io", timezone="Europe/Paris")
    promo = {"to": {"userId": "cy"}, "category": "promo"}
    sent = [
        send(client, **promo, channel="email", content={"subject": "s", "text": "t"})
        for _ in range(3)
    ]
    dispatch(database, clock)
    statuses = [shown(client, m)["status"] for m in sent]
    assert statuses == ["sent", "sent", "suppressed"]
    assert "two-a-day" in shown(client, sent[2])["lastError"]
    ignored = send(
        client, **promo, channel="email", content={"subject": "s", "text": "t"}, ignoreCaps=True
    )
    dispatch(database, clock)
    assert shown(client, ignored)["status"] == "sent"
    bad = client.put(
        "/v1/policies",
        json={"caps": [{"id": "x", "limit": 1, "per": {"amount": 31, "unit": "days"}}]},
    )
    assert bad.status_code == 422 and "30 days" in bad.text


def test_quiet_hours_defer_to_the_morning_or_drop(client, database, clock) -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    paris = ZoneInfo("Europe/Paris")
    rules = {"quietHours": [{"start": "21:00", "end": "08:00", "channels": ["sms"]}]}
    assert client.put("/v1/policies", json=rules).status_code == 200
    identify(client, "di", phone="+33612345679", timezone="Europe/Paris")
    local = clock.now().astimezone(paris)
    evening = datetime(local.year, local.month, local.day, 23, 0, tzinfo=paris)
    if evening <= clock.now():
        evening += timedelta(days=1)
    clock.advance(evening - clock.now())
    text = {"to": {"userId": "di"}, "channel": "sms", "content": {"text": "Hi"}}
    waiting = send(client, **text, category="transactional")
    promo_topic = client.put("/v1/topics/promo", json={"name": "Promo"})
    assert promo_topic.status_code == 200
    deferred = send(client, **text, category="promo")
    dropped = send(client, **text, category="promo", quietHours="drop")
    dispatch(database, clock)
    # Transactional messages are not held by quiet hours; marketing ones are.
    assert shown(client, waiting)["status"] == "sent"
    held = shown(client, deferred)
    assert held["status"] == "queued"
    morning = datetime(evening.year, evening.month, evening.day, 8, 0, tzinfo=paris)
    morning += timedelta(days=1)
    assert datetime.fromisoformat(held["dueAt"]) == morning
    assert "quiet hours" in held["decisions"][0]["reason"]
    assert shown(client, dropped)["status"] == "suppressed"
    clock.advance(morning - clock.now())
    assert dispatch(database, clock) == 1
    assert shown(client, deferred)["status"] == "sent"


def test_an_sms_reported_undelivered_becomes_a_call(
    client,
    database,
    clock,
    tenant,
    twilio,  # noqa: F811
) -> None:
    client.post("/v1/templates", json=ALERT)
    message = send(client, to={"userId": "ada"}, channels=["sms", "voice"], template="alert")
    dispatch(database, clock)
    sent = shown(client, message)
    assert (sent["status"], sent["channel"]) == ("sent", "sms")
    url = f"http://testserver/hooks/{tenant.id}/twilio_sms"
    report = twilio.status_callback(sent["providerMessageId"], "undelivered", "30003", url=url)
    answer = client.post(urlsplit(url).path, content=report.body, headers=report.headers)
    assert answer.status_code == 200, answer.text
    assert shown(client, message)["status"] == "queued"
    assert dispatch(database, clock) == 1
    called = shown(client, message)
    assert (called["status"], called["channel"], called["policy"]["tried"]) == (
        "sent",
        "voice",
        ["sms"],
    )
    assert called["decisions"][1]["action"] == "reroute"
