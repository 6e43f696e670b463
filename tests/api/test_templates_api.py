"""Templates over HTTP: save and version, validation at save time, preview, sending by key,
workspace constants, and what a failing render does to the send."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import func, select

from junction.engine.dispatcher import Dispatcher
from junction.render.personalise import Links
from junction.store.database import Database
from junction.store.tables import events, template_versions, templates

ORDER = {
    "key": "order-shipped",
    "name": "Order shipped",
    "channels": {
        "email": {
            "subject": "{{ contact.first_name | default: 'Hello' }}, order {{ data.order }} ships",
            "html": "<p>{{ data.total | money: 'EUR' }} to {{ contact.city }}</p>"
            '<a href="https://shop.example/o/{{ data.order }}">Track it</a>',
        },
        "sms": {"text": "{{ workspace.brand }}: order {{ data.order }} ships today"},
    },
    "locales": {
        "fr": {
            "channels": {
                "sms": {"text": "{{ workspace.brand }} : commande {{ data.order }} expédiée"}
            }
        }
    },
}


def count(database: Database, table: Any) -> int:
    with database.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def drain(database: Database, clock: Any) -> int:
    links = Links(b"test", "https://j.example")
    return asyncio.run(Dispatcher(database, clock, links=links).drain())


def identify(client: Any, user_id: str, **traits: Any) -> None:
    answer = client.post("/v1/identify", json={"userId": user_id, "traits": traits})
    assert answer.status_code == 200, answer.text


def test_saving_versions_a_template_only_when_it_changes(client, database) -> None:
    first = client.post("/v1/templates", json=ORDER)
    assert first.status_code == 201, first.text
    assert first.json()["version"] == 1
    assert first.json()["variables"] == [
        "contact.city",
        "contact.first_name",
        "data.order",
        "data.total",
        "workspace.brand",
    ]
    again = client.post("/v1/templates", json=ORDER)
    assert (again.status_code, again.json()["version"], again.json()["created"]) == (200, 1, False)
    changed = {**ORDER, "name": "Order on its way"}
    assert client.post("/v1/templates", json=changed).json()["version"] == 2
    shown = client.get("/v1/templates/order-shipped").json()
    assert (shown["currentVersion"], [v["version"] for v in shown["versions"]]) == (2, [1, 2])
    assert client.get("/v1/templates/order-shipped?version=1").json()["definition"]["name"] == (
        "Order shipped"
    )
    listed = client.get("/v1/templates").json()["templates"]
    assert [(t["key"], t["currentVersion"]) for t in listed] == [("order-shipped", 2)]


def test_invalid_templates_name_each_problem_and_save_nothing(client, database) -> None:
    broken = {
        "key": "broken",
        "channels": {
            "email": {"subject": "Hi {{ contact.name", "text": "ok"},
            "sms": {"text": "{% for x in data.items %}{{ x }}", "landingPage": "nowhere"},
        },
    }
    answer = client.post("/v1/templates", json=broken)
    assert answer.status_code == 422
    problems = {e["field"]: e["message"] for e in answer.json()["error"]["errors"]}
    assert problems["channels.email.subject"].startswith("line 1 column 4:")
    assert "line 1 column" in problems["channels.sms.text"]
    assert count(database, templates) == 0 and count(database, template_versions) == 0

    shape = client.post("/v1/templates", json={"key": "x", "channels": {"sms": {}}})
    assert shape.status_code == 422
    assert shape.json()["error"]["errors"][0]["field"] == "channels.sms.text"

    landing = {
        "key": "y",
        "channels": {"sms": {"text": "see {{ landing_url }}", "landingPage": "nowhere"}},
    }
    missing = client.post("/v1/templates", json=landing).json()["error"]["errors"]
    assert missing == [
        {
            "field": "channels.sms.landingPage",
            "message": "no landing template 'nowhere' in this workspace; save it first",
        }
    ]
    assert count(database, templates) == 0


def test_content_that_cannot_fit_its_channel_is_refused(client) -> None:
    long_sms = {
        "key": "long",
        "smsMaxSegments": 2,
        "channels": {"sms": {"text": "x" * 400 + " {{ contact.name }}"}},
    }
    answer = client.post("/v1/templates", json=long_sms)
    assert answer.status_code == 422
    assert answer.json()["error"]["errors"][0] == {
        "field": "channels.sms.text",
        "message": "takes 3 GSM-7 segments even with every variable empty; the limit is 2 "
        "(smsMaxSegments)",
    }
    title = {"key": "title", "channels": {"push": {"title": "t" * 300, "body": "b"}}}
    assert (
        client.post("/v1/templates", json=title).json()["error"]["errors"][0]["field"]
        == "channels.push.title"
    )


def test_preview_renders_for_a_stored_contact(client) -> None:
    identify(client, "zoe", first_name="Zoë", city="Lyon", email="zoe@x.io", locale="fr-FR")
    client.put("/v1/constants", json={"brand": "Boutique"})
    assert client.post("/v1/templates", json=ORDER).status_code == 201
    answer = client.post(
        "/v1/templates/order-shipped/preview",
        json={"userId": "zoe", "data": {"order": "A-12", "total": 12.5}},
    )
    assert answer.status_code == 200, answer.text
    shown = answer.json()
    assert shown["locale"] == "fr-FR"
    email = shown["channels"]["email"]["content"]
    assert email["subject"] == "Zoë, order A-12 ships"
    assert "<p>12,50\xa0€ to Lyon</p>" in email["html"]
    # Links show as they will be sent (tracked), with where each leads beside them.
    assert 'href="http://127.0.0.1:8700/l/' in email["html"]
    assert shown["channels"]["email"]["links"] == ["https://shop.example/o/A-12"]
    sms = shown["channels"]["sms"]
    assert (sms["locale"], sms["content"]["text"]) == ("fr", "Boutique : commande A-12 expédiée")
    assert sms["sms"] == {"characters": 33, "encoding": "GSM-7", "segments": 1}

    traits_only = client.post(
        "/v1/templates/order-shipped/preview",
        json={"contact": {"first_name": "Al"}, "channels": ["sms"], "data": {"order": "9"}},
    ).json()
    assert list(traits_only["channels"]) == ["sms"]
    assert traits_only["channels"]["sms"]["content"]["text"] == "Boutique: order 9 ships today"
    assert client.post("/v1/templates/nope/preview", json={}).status_code == 404
    unknown = client.post("/v1/templates/order-shipped/preview", json={"channels": ["voice"]})
    assert unknown.status_code == 422


def test_sending_by_template_renders_at_send_time(client, database, clock) -> None:
    identify(client, "ada", first_name="Ada", city="Paris", email="ada@x.io", phone="+33612345678")
    client.put("/v1/constants", json={"brand": "Shop"})
    client.post("/v1/templates", json=ORDER)
    sent = client.post(
        "/v1/messages",
        json={
            "to": {"userId": "ada"},
            "channel": "email",
            "template": "order-shipped",
            "data": {"order": "A1", "total": 3},
        },
    )
    assert sent.status_code == 202, sent.text
    # The person changes their name before the message goes: they get the new one.
    identify(client, "ada", first_name="Adeline")
    assert drain(database, clock) == 1
    message = client.get(f"/v1/messages/{sent.json()['id']}").json()
    assert message["status"] == "sent"
    assert message["content"] == {
        "templateKey": "order-shipped",
        "templateVersion": 1,
        "data": {"order": "A1", "total": 3},
    }
    rendered = message["details"]["rendered"]
    assert rendered["subject"] == "Adeline, order A1 ships"
    assert message["details"]["links"] == ["https://shop.example/o/A1"]
    assert "https://j.example/l/" in rendered["html"]


def test_a_queued_message_keeps_its_version(client, database, clock) -> None:
    identify(client, "ada", email="ada@x.io")
    client.post("/v1/templates", json=ORDER)
    sent = client.post(
        "/v1/messages",
        json={
            "to": {"userId": "ada"},
            "channel": "email",
            "template": "order-shipped",
            "data": {"order": 1},
        },
    )
    newer = {**ORDER, "channels": {"email": {"subject": "v2", "text": "v2"}}}
    assert client.post("/v1/templates", json=newer).json()["version"] == 2
    drain(database, clock)
    message = client.get(f"/v1/messages/{sent.json()['id']}").json()
    assert message["details"]["rendered"]["subject"] == "Hello, order 1 ships"


def test_bad_template_sends_are_refused_before_anything_is_queued(client, database) -> None:
    identify(client, "ada", email="ada@x.io")
    client.post("/v1/templates", json=ORDER)

    def send(**body: Any) -> Any:
        return client.post("/v1/messages", json={"to": {"userId": "ada"}, **body})

    unknown = send(channel="email", template="nope")
    assert (unknown.status_code, unknown.json()["error"]["errors"][0]["field"]) == (422, "template")
    no_in_app = send(channel="in_app", template="order-shipped")
    assert no_in_app.status_code == 422
    assert (
        "has no in_app content (it has: email, sms)"
        in no_in_app.json()["error"]["errors"][0]["message"]
    )
    both = send(channel="email", template="order-shipped", content={"subject": "s", "text": "t"})
    assert (
        both.json()["error"]["errors"][0]["message"]
        == "give either content or a template, not both"
    )
    neither = send(channel="email")
    assert neither.json()["error"]["errors"][0]["field"] == "content"
    client.delete("/v1/templates/order-shipped")
    archived = send(channel="email", template="order-shipped")
    assert "archived" in archived.json()["error"]["errors"][0]["message"]
    from junction.store.tables import messages

    assert count(database, messages) == 0


def test_a_strict_template_missing_a_trait_suppresses_the_send(client, database, clock) -> None:
    strict = {
        "key": "strict",
        "undefined": "strict",
        "channels": {"sms": {"text": "Your code, {{ contact.first_name }}: {{ data.code }}"}},
    }
    assert client.post("/v1/templates", json=strict).status_code == 201
    identify(client, "nameless", phone="+33612345678")
    identify(client, "named", phone="+33612345679", first_name="Ana")
    ids = [
        client.post(
            "/v1/messages",
            json={
                "to": {"userId": u},
                "channel": "sms",
                "template": "strict",
                "data": {"code": "42"},
            },
        ).json()["id"]
        for u in ("nameless", "named")
    ]
    assert drain(database, clock) == 2
    nameless, named = (client.get(f"/v1/messages/{i}").json() for i in ids)
    assert nameless["status"] == "suppressed"
    assert "contact.first_name is undefined" in nameless["lastError"]
    assert named["status"] == "sent"
    assert named["details"]["rendered"]["text"] == "Your code, Ana: 42"
    with database.read() as conn:
        names = conn.execute(select(events.c.name).where(events.c.name.like("message.%"))).all()
    assert ("message.suppressed",) in names


def test_a_hostile_template_fails_one_message_not_the_worker(client, database, clock) -> None:
    hostile = {
        "key": "hostile",
        "channels": {"sms": {"text": "{% for i in (1..1000000) %}{{ contact.x }}{% endfor %}"}},
    }
    # Saving checks the empty render too: the loop limit is reported at once.
    refused = client.post("/v1/templates", json=hostile)
    assert refused.status_code == 422
    assert "loop iteration limit" in refused.json()["error"]["errors"][0]["message"]
    big = {"key": "big", "channels": {"sms": {"text": "{{ contact.bio }}"}}}
    assert client.post("/v1/templates", json=big).status_code == 201
    identify(client, "huge", phone="+33612345678", bio="z" * 2_000)
    identify(client, "fine", phone="+33612345679", bio="short")
    ids = [
        client.post(
            "/v1/messages", json={"to": {"userId": u}, "channel": "sms", "template": "big"}
        ).json()["id"]
        for u in ("huge", "fine")
    ]
    assert drain(database, clock) == 2
    huge, fine = (client.get(f"/v1/messages/{i}").json() for i in ids)
    assert huge["status"] == "suppressed" and "1600" in huge["lastError"]
    assert fine["status"] == "sent"


def test_constants_are_checked(client) -> None:
    assert (
        client.put("/v1/constants", json={"brand": "B", "support_email": "s@x"}).status_code == 200
    )
    assert client.get("/v1/constants").json() == {"brand": "B", "support_email": "s@x"}
    bad = client.put("/v1/constants", json={"not a name": 1})
    assert bad.status_code == 422 and bad.json()["error"]["errors"][0]["field"] == "not a name"


def test_the_schema_is_published(client) -> None:
    schema = client.get("/v1/templates/schema").json()
    assert schema["title"] == "TemplateDefinition"
    assert "locales" in schema["properties"]


EVERY_CHANNEL = {
    "key": "every",
    "channels": {
        "email": {"subject": "Hi {{ contact.first_name }}", "text": "Email for {{ data.x }}"},
        "sms": {"text": "SMS for {{ contact.first_name }}"},
        "voice": {"text": "Hello {{ contact.first_name }}, this is a call."},
        "push": {
            "title": "{{ workspace.brand }}",
            "body": "Push {{ data.x }}",
            "data": {"x": "{{ data.x }}"},
        },
        "web_push": {"body": "Web push {{ data.x }}", "url": "https://shop.example/{{ data.x }}"},
        "whatsapp": {
            "template": {
                "name": "order",
                "language": "en_US",
                "parameters": ["{{ contact.first_name }}"],
            }
        },
        "telegram": {"text": "Telegram {{ data.x }}"},
        "messenger": {"text": "Messenger {{ data.x }}", "tag": "ACCOUNT_UPDATE"},
        "in_app": {
            "title": "In-app",
            "body": "Hello {{ contact.first_name }}",
            "buttons": [{"label": "Open {{ data.x }}", "url": "app://x"}],
        },
        "content_card": {"body": "Card {{ data.x }}", "pinned": True},
    },
}
EXPECTED = {
    "email": {"subject": "Hi Ada", "text": "Email for 7"},
    "sms": {"text": "SMS for Ada"},
    "voice": {"text": "Hello Ada, this is a call."},
    "push": {"title": "Shop", "body": "Push 7", "data": {"x": "7"}},
    "web_push": {"body": "Web push 7", "url": "https://shop.example/7"},
    "whatsapp": {"template": {"name": "order", "language": "en_US", "parameters": ["Ada"]}},
    "telegram": {"text": "Telegram 7"},
    "messenger": {"text": "Messenger 7", "tag": "ACCOUNT_UPDATE"},
    "in_app": {
        "title": "In-app",
        "body": "Hello Ada",
        "buttons": [{"label": "Open 7", "url": "app://x"}],
    },
    "content_card": {"body": "Card 7", "pinned": True},
}


def test_one_template_sends_on_every_channel(client, database, clock) -> None:
    from tests.api.test_contacts_api import AUTH, P256DH

    identify(client, "ada", first_name="Ada", email="ada@x.io", phone="+33612345678")
    client.put("/v1/constants", json={"brand": "Shop"})
    client.post("/v1/contacts/ada/devices", json={"type": "ios", "token": "phone-token"})
    subscription = {
        "endpoint": "https://push.example/s/1",
        "keys": {"p256dh": P256DH, "auth": AUTH},
    }
    client.post("/v1/contacts/ada/devices", json={"type": "web_push", "subscription": subscription})
    assert client.post("/v1/templates", json=EVERY_CHANNEL).status_code == 201
    recipients = {"telegram": {"chatId": "42"}, "messenger": {"psid": "99"}}
    ids = {}
    for channel in EXPECTED:
        answer = client.post(
            "/v1/messages",
            json={
                "to": recipients.get(channel, {"userId": "ada"}),
                "channel": channel,
                "template": "every",
                "data": {"x": 7},
            },
        )
        assert answer.status_code == 202, (channel, answer.text)
        ids[channel] = answer.json()["id"]
    assert drain(database, clock) == len(EXPECTED)
    for channel, message_id in ids.items():
        message = client.get(f"/v1/messages/{message_id}").json()
        assert message["status"] == "sent", (channel, message["lastError"])
        if message["provider"] == "capture":
            rendered = {
                k: v for k, v in message["details"]["rendered"].items() if k != "subscription_keys"
            }
            assert rendered == EXPECTED[channel], channel
    # In-app messages and cards went to the contact's inbox, rendered.
    inbox = client.get("/v1/contacts/ada/inbox").json()
    assert sorted(item["content"]["body"] for item in inbox["items"]) == ["Card 7", "Hello Ada"]
