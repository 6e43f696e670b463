"""The canonical journey, end to end: "send the launch email; if it is not opened within 24
hours, send a push; if there is still no purchase 48 hours later, send an SMS; stop as soon as
the person buys" — people and events through the API, email to a real SMTP server, push and
SMS to the fake FCM and Twilio, the clock advanced virtually."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from junction.engine.dispatcher import Dispatcher
from junction.render.personalise import Links
from junction.store.providers import set_channel_provider
from tests.channels.test_fcm import config as fcm_config
from tests.channels.test_fcm import fcm, fcm_served  # noqa: F401 - fixtures
from tests.channels.test_smtp import config as smtp_config
from tests.channels.test_smtp import server, sink  # noqa: F401 - fixtures
from tests.conftest import SECRET
from tests.e2e.test_keywords import OUR_NUMBER, served, twilio  # noqa: F401 - fixtures
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN

LINKS = Links(SECRET.encode(), "http://testserver")
PEOPLE = {
    "buys-after-email": "+33611111111",
    "buys-after-push": "+33622222222",
    "never-buys": "+33633333333",
    "opens-never-buys": "+33644444444",
}
TEMPLATES = [
    {
        "key": "launch-email",
        "channels": {
            "email": {
                "subject": "It's here, {{ contact.first_name }}",
                "html": '<p>Our new thing.</p><a href="https://shop.example/new">See it</a>',
            }
        },
    },
    {"key": "launch-push", "channels": {"push": {"title": "It's here", "body": "Take a look"}}},
    {"key": "launch-sms", "channels": {"sms": {"text": "Last chance: https://shop.example/new"}}},
]
LAUNCH = {
    "key": "launch",
    "name": "Launch",
    "trigger": {"event": "Signed Up"},
    "goal": {"event": "Order Completed", "within": {"amount": 7, "unit": "days"}},
    "steps": [
        {
            "id": "email",
            "type": "send",
            "channel": "email",
            "template": "launch-email",
            "next": "wait-open",
        },
        {
            "id": "wait-open",
            "type": "wait_for",
            "messageOf": "email",
            "engagement": "opened",
            "timeout": {"amount": 24, "unit": "hours"},
            "onEvent": "wait-buy",
            "onTimeout": "push",
        },
        {
            "id": "push",
            "type": "send",
            "channel": "push",
            "template": "launch-push",
            "next": "wait-buy",
        },
        {
            "id": "wait-buy",
            "type": "wait_for",
            "event": "Order Completed",
            "timeout": {"amount": 48, "unit": "hours"},
            "onEvent": None,
            "onTimeout": "sms",
        },
        {"id": "sms", "type": "send", "channel": "sms", "template": "launch-sms", "next": None},
    ],
}


def dispatch(database: Any, clock: Any) -> None:
    asyncio.run(Dispatcher(database, clock, links=LINKS, journey_grace=timedelta(0)).drain())


def track(client: Any, user_id: str, event: str) -> None:
    answer = client.post("/v1/track", json={"userId": user_id, "event": event})
    assert answer.status_code == 200, answer.text


def test_the_canonical_journey(
    client,
    database,
    clock,
    tenant,
    server,  # noqa: F811
    sink,  # noqa: F811
    fcm,  # noqa: F811
    twilio,  # noqa: F811
) -> None:
    with database.write() as conn:
        now = clock.now()
        set_channel_provider(conn, tenant.id, "email", "smtp", smtp_config(server), now)
        set_channel_provider(conn, tenant.id, "push", "fcm", fcm_config(fcm), now)
        twilio_config = {
            "account_sid": ACCOUNT_SID,
            "auth_token": AUTH_TOKEN,
            "from_number": OUR_NUMBER,
            "base_url": twilio.base_url,
        }
        set_channel_provider(conn, tenant.id, "sms", "twilio_sms", twilio_config, now)
    for template in TEMPLATES:
        assert client.post("/v1/templates", json=template).status_code == 201
    assert client.post("/v1/journeys", json=LAUNCH).status_code == 201
    assert client.post("/v1/journeys/launch/activate").json()["status"] == "active"
    for user, phone in PEOPLE.items():
        traits = {"email": f"{user}@x.io", "phone": phone, "first_name": user.split("-")[0]}
        client.post("/v1/identify", json={"userId": user, "traits": traits})
        answer = client.post(
            f"/v1/contacts/{user}/devices", json={"type": "android", "token": f"token-{user}"}
        )
        assert answer.status_code == 201, answer.text
        track(client, user, "Signed Up")
    dispatch(database, clock)
    assert sorted(m.rcpt_tos[0] for m in sink.received) == sorted(f"{u}@x.io" for u in PEOPLE)

    # One person buys within the day; another opens the email (its pixel loads).
    clock.advance(timedelta(hours=2))
    track(client, "buys-after-email", "Order Completed")
    opener = next(m for m in sink.received if m.rcpt_tos == ["opens-never-buys@x.io"])
    html = email.message_from_bytes(opener.raw, policy=email.policy.default)
    body = html.get_body(("html",)).get_content()
    pixel = re.search(r'<img src="([^"]+/o/[^"]+)"', body).group(1)
    assert client.get(urlsplit(pixel).path).status_code == 200
    dispatch(database, clock)

    # A day later: those who did not open get the push.
    clock.advance(timedelta(hours=23))
    dispatch(database, clock)
    assert sorted(r.message["token"] for r in fcm.sent) == [
        "token-buys-after-push",
        "token-never-buys",
    ]
    clock.advance(timedelta(hours=10))
    track(client, "buys-after-push", "Order Completed")
    dispatch(database, clock)

    # 48 hours after the push (and after the open): an SMS to whoever has not bought.
    clock.advance(timedelta(hours=40))
    dispatch(database, clock)
    assert sorted(m.form["To"] for m in twilio.messages) == sorted(
        [PEOPLE["never-buys"], PEOPLE["opens-never-buys"]]
    )
    clock.advance(timedelta(days=5))
    dispatch(database, clock)
    assert len(sink.received) == 4 and len(fcm.sent) == 2 and len(twilio.messages) == 2

    journey = client.get("/v1/journeys/launch").json()
    assert journey["runs"] == {"converted": 2, "completed": 2}
    assert journey["totals"]["entered"] == 4
    steps = journey["steps"]
    assert steps["email"]["sent"] == 4 and steps["push"]["sent"] == 2
    assert steps["sms"]["sent"] == 2
    assert steps["email"]["converted"] == 2 and steps["push"]["converted"] == 1


def test_bad_journeys_and_entries_are_refused(client, database) -> None:
    broken = {
        **LAUNCH,
        "steps": [
            *LAUNCH["steps"][:-1],
            {
                "id": "sms",
                "type": "send",
                "channel": "sms",
                "template": "launch-sms",
                "next": "nowhere",
            },
        ],
    }
    answer = client.post("/v1/journeys", json=broken)
    assert answer.status_code == 422
    assert "nowhere" in answer.text and "sms" in answer.text
    assert client.get("/v1/journeys").json() == {"journeys": []}
    nobody = client.post("/v1/journeys/launch/entries", json={"userId": "x"})
    assert nobody.status_code == 422 and "userId" in nobody.text
    assert client.post("/v1/journeys", json=LAUNCH).status_code == 201
    client.post("/v1/identify", json={"userId": "p", "traits": {"email": "p@x.io"}})
    draft = client.post("/v1/journeys/launch/entries", json={"userId": "p"})
    assert draft.status_code == 409 and "draft" in draft.text
    client.post("/v1/journeys/launch/activate")
    client.post("/v1/journeys/launch/pause")
    paused = client.post("/v1/journeys/launch/entries", json={"userId": "p"})
    assert paused.status_code == 409 and "paused" in paused.text
    assert client.post("/v1/journeys/launch/pause").status_code == 409
    assert client.post("/v1/journeys/nope/activate").status_code == 404


def test_a_scheduled_journey_enters_everyone_when_its_cron_fires(client, database, clock) -> None:
    digest = {
        "key": "weekly",
        "name": "Weekly digest",
        "trigger": {"schedule": {"cron": "0 9 * * mon"}},
        "entry": {"mode": "every_time"},
        "steps": [
            {
                "id": "mail",
                "type": "send",
                "channel": "email",
                "content": {"subject": "This week", "text": "News"},
                "next": None,
            },
        ],
    }
    for user in ("ann", "bob"):
        client.post("/v1/identify", json={"userId": user, "traits": {"email": f"{user}@x.io"}})
    assert client.post("/v1/journeys", json=digest).status_code == 201
    client.post("/v1/journeys/weekly/activate")

    def mails() -> int:
        return sum(
            len(client.get("/v1/messages", params={"user_id": u}).json()["messages"])
            for u in ("ann", "bob")
        )

    dispatch(database, clock)  # Friday 2026-11-20 09:00: not yet
    assert mails() == 0
    clock.advance(timedelta(days=3))  # Monday 09:00
    dispatch(database, clock)
    assert mails() == 2
    clock.advance(timedelta(hours=1))
    dispatch(database, clock)
    assert mails() == 2  # once per firing
    client.post("/v1/journeys/weekly/pause")
    clock.advance(timedelta(days=7))
    dispatch(database, clock)
    assert mails() == 2  # paused: the Monday passes
    client.post("/v1/journeys/weekly/resume")
    clock.advance(timedelta(days=7))
    dispatch(database, clock)
    assert mails() == 4


def test_a_journeys_sends_see_the_event_that_started_it(client, database, clock) -> None:
    template = {
        "key": "cart",
        "channels": {"sms": {"text": "Still thinking about the {{ event.properties.item }}?"}},
    }
    assert client.post("/v1/templates", json=template).status_code == 201
    journey = {
        "key": "cart",
        "name": "Cart",
        "trigger": {"event": "Cart Abandoned", "where": {"total": {"op": "gte", "value": 20}}},
        "steps": [{"id": "nudge", "type": "send", "channel": "sms", "template": "cart"}],
    }
    assert client.post("/v1/journeys", json=journey).status_code == 201
    client.post("/v1/journeys/cart/activate")
    client.post("/v1/identify", json={"userId": "cy", "traits": {"phone": "+33612345670"}})
    for item, total in (("pin", 2), ("lamp", 40)):  # the first is under the filter
        answer = client.post(
            "/v1/track",
            json={
                "userId": "cy",
                "event": "Cart Abandoned",
                "properties": {"item": item, "total": total},
            },
        )
        assert answer.status_code == 200
    dispatch(database, clock)
    [sms] = client.get("/v1/messages", params={"user_id": "cy"}).json()["messages"]
    assert sms["details"]["rendered"]["text"] == "Still thinking about the lamp?"


def test_sends_a_person_cannot_get_are_counted_failed_and_the_run_goes_on(
    client, database, clock
) -> None:
    templates = [
        {"key": "hi-mail", "channels": {"email": {"subject": "Hi", "text": "Hi"}}},
        {"key": "hi-sms", "channels": {"sms": {"text": "Hi"}}},
    ]
    for template in templates:
        assert client.post("/v1/templates", json=template).status_code == 201
    journey = {
        "key": "hello",
        "name": "Hello",
        "trigger": {"api": True},
        "steps": [
            {"id": "sms", "type": "send", "channel": "sms", "template": "hi-sms", "next": "mail"},
            {"id": "mail", "type": "send", "channel": "email", "template": "hi-mail"},
        ],
    }
    assert client.post("/v1/journeys", json=journey).status_code == 201
    client.post("/v1/journeys/hello/activate")
    client.post("/v1/identify", json={"userId": "em", "traits": {"email": "em@x.io"}})
    client.post("/v1/identify", json={"userId": "ph", "traits": {"phone": "+33612345671"}})
    for user in ("em", "ph"):
        assert client.post("/v1/journeys/hello/entries", json={"userId": user}).status_code == 202
    dispatch(database, clock)
    steps = client.get("/v1/journeys/hello").json()["steps"]
    assert (steps["sms"]["sent"], steps["sms"]["failed"]) == (1, 1)
    assert (steps["mail"]["sent"], steps["mail"]["failed"]) == (1, 1)
    assert client.get("/v1/journeys/hello").json()["runs"] == {"completed": 2}
