"""POST /v1/messages and the message lifecycle, over HTTP."""

from __future__ import annotations

import asyncio

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from junction.engine.dispatcher import Dispatcher
from junction.store.database import Database
from junction.store.tables import api_requests, messages

EMAIL = {"subject": "Your receipt", "text": "Thanks for your order."}


def count(database: Database, table) -> int:  # type: ignore[no-untyped-def]
    with database.read() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_a_message_is_queued_sent_and_its_lifecycle_shown(client, database, clock) -> None:
    client.post("/v1/identify", json={"userId": "ada", "traits": {"email": "ada@x.io"}})
    answer = client.post(
        "/v1/messages", json={"to": {"userId": "ada"}, "channel": "email", "content": EMAIL}
    )
    assert answer.status_code == 202, answer.text
    message_id = answer.json()["id"]
    assert client.get(f"/v1/messages/{message_id}").json()["status"] == "queued"
    assert asyncio.run(Dispatcher(database, clock).drain()) == 1
    shown = client.get(f"/v1/messages/{message_id}").json()
    assert (shown["status"], shown["provider"], shown["to"]) == ("sent", "capture", "ada@x.io")
    assert [h["outcome"] for h in shown["history"]] == ["sent"]
    listed = client.get("/v1/messages", params={"user_id": "ada"}).json()["messages"]
    assert [m["id"] for m in listed] == [message_id]
    events = client.get("/v1/contacts/ada").json()["latestEvents"]
    assert "message.sent" in [e["name"] for e in events]


def test_a_raw_address_needs_no_contact(client, database) -> None:
    answer = client.post(
        "/v1/messages",
        json={"to": {"phone": "+33612345678"}, "channel": "sms", "content": {"text": "Code 1234"}},
    )
    assert answer.status_code == 202
    assert client.get(f"/v1/messages/{answer.json()['id']}").json()["to"] == "+33612345678"


def test_an_idempotency_key_replays_the_first_answer(client, database) -> None:
    body = {"to": {"email": "ada@x.io"}, "channel": "email", "content": EMAIL}
    first = client.post("/v1/messages", json=body, headers={"Idempotency-Key": "order-1001"})
    again = client.post("/v1/messages", json=body, headers={"Idempotency-Key": "order-1001"})
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert count(database, messages) == 1
    other = client.post(
        "/v1/messages",
        json={**body, "content": {**EMAIL, "text": "changed"}},
        headers={"Idempotency-Key": "order-1001"},
    )
    assert other.status_code == 422
    assert other.json()["error"]["errors"][0]["field"] == "Idempotency-Key"
    assert count(database, messages) == 1 and count(database, api_requests) == 1


def test_bad_requests_name_the_field_and_write_nothing(client, database) -> None:
    client.post("/v1/identify", json={"userId": "bob", "traits": {"plan": "free"}})
    cases = [
        ({"to": {"userId": "ada"}, "channel": "fax", "content": {}}, "channel"),
        ({"to": {"userId": "nobody"}, "channel": "email", "content": EMAIL}, "to.userId"),
        ({"to": {"userId": "bob"}, "channel": "email", "content": EMAIL}, "to.userId"),
        (
            {"to": {"phone": "+33612345678"}, "channel": "sms", "content": {"text": "x" * 2000}},
            "content.text",
        ),
        ({"to": {"email": "not-an-email"}, "channel": "email", "content": EMAIL}, "to.email"),
        ({"to": {"email": "a@x.io"}, "channel": "sms", "content": {"text": "hi"}}, "to"),
        ({"to": {"url": "ftp://x"}, "channel": "webhook", "content": {"data": {}}}, "to.url"),
    ]
    for body, field in cases:
        answer = client.post("/v1/messages", json=body, headers={"Idempotency-Key": f"k-{field}"})
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["error"]["errors"][0]["field"] == field, answer.text
    assert count(database, messages) == 0 and count(database, api_requests) == 0


def test_another_workspace_cannot_see_a_message(client: TestClient, database, clock) -> None:
    from tests.conftest import make_tenant

    answer = client.post(
        "/v1/messages", json={"to": {"email": "a@x.io"}, "channel": "email", "content": EMAIL}
    )
    other = make_tenant(database, clock, "globex")
    seen = client.get(
        f"/v1/messages/{answer.json()['id']}", headers={"Authorization": f"Bearer {other.key}"}
    )
    assert seen.status_code == 404


def test_a_dead_message_can_be_replayed_once_the_provider_works(
    client, database, clock, tenant
) -> None:  # type: ignore[no-untyped-def]
    from junction.channels.base import RetryLater
    from junction.channels.fake import FakeAdapter
    from junction.domain.retry import RetryPolicy
    from junction.engine.dispatcher import DispatcherSettings
    from tests.engine.test_dispatcher import use_fake

    use_fake(database, tenant, clock)
    client.post("/v1/identify", json={"userId": "ada", "traits": {"email": "ada@x.io"}})
    message_id = client.post(
        "/v1/messages", json={"to": {"userId": "ada"}, "channel": "email", "content": EMAIL}
    ).json()["id"]
    assert client.post(f"/v1/messages/{message_id}/replay").status_code == 409  # still queued
    settings = DispatcherSettings(policy=RetryPolicy(max_attempts=1))
    asyncio.run(
        Dispatcher(
            database, clock, settings, adapters={"fake": FakeAdapter([RetryLater("503")])}
        ).drain()
    )
    assert client.get(f"/v1/messages/{message_id}").json()["status"] == "dead"

    replayed = client.post(f"/v1/messages/{message_id}/replay")
    assert replayed.status_code == 202 and replayed.json()["status"] == "queued"
    fake = FakeAdapter()
    asyncio.run(Dispatcher(database, clock, adapters={"fake": fake}).drain())
    shown = client.get(f"/v1/messages/{message_id}").json()
    assert shown["status"] == "sent" and len(fake.sent) == 1
    assert [h["outcome"] for h in shown["history"]] == ["dead", "sent"]
    assert client.post("/v1/messages/999999/replay").status_code == 404


def test_a_push_goes_to_every_active_device(client, database, clock) -> None:  # type: ignore[no-untyped-def]
    from tests.api.test_contacts_api import AUTH, P256DH

    client.post("/v1/contacts/ada/devices", json={"type": "ios", "token": "phone-token"})
    client.post("/v1/contacts/ada/devices", json={"type": "android", "token": "tablet-token"})
    client.post(
        "/v1/contacts/ada/devices",
        json={
            "type": "web_push",
            "subscription": {
                "endpoint": "https://push.example/sub/1",
                "keys": {"p256dh": P256DH, "auth": AUTH},
            },
        },
    )
    push = client.post(
        "/v1/messages",
        json={
            "to": {"userId": "ada"},
            "channel": "push",
            "content": {"title": "Hi", "body": "New reply"},
        },
    )
    assert push.status_code == 202, push.text
    ids = push.json()["ids"]
    assert len(ids) == 2 and push.json()["id"] == ids[0]
    targets = {client.get(f"/v1/messages/{i}").json()["to"] for i in ids}
    assert targets == {"phone-token", "tablet-token"}
    web = client.post(
        "/v1/messages",
        json={"to": {"userId": "ada"}, "channel": "web_push", "content": {"body": "New reply"}},
    ).json()
    shown = client.get(f"/v1/messages/{web['id']}").json()
    assert shown["to"] == "https://push.example/sub/1"
    assert shown["content"]["subscription_keys"] == {"p256dh": P256DH, "auth": AUTH}


def test_push_content_and_telegram_recipients_are_checked(client, database) -> None:  # type: ignore[no-untyped-def]
    client.post("/v1/contacts/ada/devices", json={"type": "ios", "token": "phone-token"})
    bad = client.post(
        "/v1/messages",
        json={
            "to": {"userId": "ada"},
            "channel": "push",
            "content": {"title": "Hi", "data": {"n": 1}},
        },
    )
    assert {e["field"] for e in bad.json()["error"]["errors"]} == {"content.body", "content.data"}
    chat = client.post(
        "/v1/messages",
        json={"to": {"chatId": "123456"}, "channel": "telegram", "content": {"text": "Hello"}},
    )
    assert chat.status_code == 202
    missing = client.post(
        "/v1/messages",
        json={"to": {"email": "a@x.io"}, "channel": "telegram", "content": {"text": "Hello"}},
    )
    assert missing.json()["error"]["errors"][0] == {
        "field": "to",
        "message": "a telegram message needs userId or chatId",
    }


def test_whatsapp_free_text_only_inside_the_24_hour_window(client, database, clock, tenant) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from junction.channels.base import InboundMessage
    from junction.store.inbound import record_inbound

    client.post("/v1/identify", json={"userId": "ada", "traits": {"phone": "+33612345678"}})
    text = {"to": {"userId": "ada"}, "channel": "whatsapp", "content": {"text": "Your order?"}}
    template = {
        "to": {"userId": "ada"},
        "channel": "whatsapp",
        "content": {"template": {"name": "order_update", "language": "fr", "parameters": ["1001"]}},
    }

    refused = client.post("/v1/messages", json=text)
    assert refused.status_code == 422
    assert "never written" in refused.json()["error"]["errors"][0]["message"]
    assert client.post("/v1/messages", json=template).status_code == 202

    with database.write() as conn:  # Ada writes to us on WhatsApp
        record_inbound(
            conn,
            tenant.id,
            [
                InboundMessage(
                    channel="whatsapp",
                    sender_id="+33612345678",
                    external_id="whatsapp:wamid.1",
                    text="Where is my order?",
                    sent_at=clock.now(),
                )
            ],
            clock.now(),
        )
    assert client.post("/v1/messages", json=text).status_code == 202
    by_phone = {**text, "to": {"phone": "+33612345678"}}
    assert client.post("/v1/messages", json=by_phone).status_code == 202

    clock.advance(timedelta(hours=24, minutes=1))
    late = client.post("/v1/messages", json=text)
    assert late.status_code == 422 and "last message was at" in late.text
    assert client.post("/v1/messages", json=template).status_code == 202
