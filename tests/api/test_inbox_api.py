"""In-app messages and content cards: delivered into the contact's inbox, fetched by the
app, read / clicked / dismissed reported back, expiry and pinning."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from fastapi.testclient import TestClient

from junction.engine.dispatcher import Dispatcher


def deliver(client: TestClient, database, clock, channel: str, **content) -> int:  # type: ignore[no-untyped-def]
    answer = client.post(
        "/v1/messages",
        json={"to": {"userId": "ada"}, "channel": channel, "content": {"body": "Hello", **content}},
    )
    assert answer.status_code == 202, answer.text
    asyncio.run(Dispatcher(database, clock).drain())
    return int(answer.json()["id"])


def test_an_in_app_message_lands_in_the_inbox_and_is_read(client, database, clock) -> None:
    client.post("/v1/identify", json={"userId": "ada", "traits": {}})
    message_id = deliver(
        client,
        database,
        clock,
        "in_app",
        title="Welcome",
        buttons=[{"label": "Start", "url": "app://start"}],
    )
    box = client.get("/v1/contacts/ada/inbox").json()
    assert box["unread"] == 1
    (item,) = box["items"]
    assert (item["messageId"], item["kind"], item["content"]["title"]) == (
        message_id,
        "in_app",
        "Welcome",
    )
    assert client.get(f"/v1/messages/{message_id}").json()["status"] == "sent"

    read = client.post(f"/v1/contacts/ada/inbox/{item['id']}/read")
    assert read.json() == {"recorded": True}
    assert client.post(f"/v1/contacts/ada/inbox/{item['id']}/read").json() == {"recorded": False}
    assert client.get("/v1/contacts/ada/inbox").json()["unread"] == 0
    assert client.get(f"/v1/messages/{message_id}").json()["status"] == "read"
    client.post(f"/v1/contacts/ada/inbox/{item['id']}/clicked")
    names = [e["name"] for e in client.get("/v1/contacts/ada").json()["latestEvents"]]
    assert {"message.sent", "message.read", "message.clicked"} <= set(names)


def test_cards_pin_expire_and_dismiss(client, database, clock) -> None:
    client.post("/v1/identify", json={"userId": "ada", "traits": {}})
    deliver(client, database, clock, "content_card", title="Old news")
    deliver(client, database, clock, "content_card", title="Pinned", pinned=True)
    deliver(client, database, clock, "content_card", title="Flash sale", expiresInHours=1)
    titles = [i["content"]["title"] for i in client.get("/v1/contacts/ada/inbox").json()["items"]]
    assert titles == ["Pinned", "Flash sale", "Old news"]
    clock.advance(timedelta(hours=2))
    box = client.get("/v1/contacts/ada/inbox", params={"kind": "content_card"}).json()
    assert [i["content"]["title"] for i in box["items"]] == ["Pinned", "Old news"]
    client.post(f"/v1/contacts/ada/inbox/{box['items'][0]['id']}/dismissed")
    titles = [i["content"]["title"] for i in client.get("/v1/contacts/ada/inbox").json()["items"]]
    assert titles == ["Old news"]


def test_bad_inbox_content_is_refused(client, database) -> None:
    client.post("/v1/identify", json={"userId": "ada", "traits": {}})
    answer = client.post(
        "/v1/messages",
        json={
            "to": {"userId": "ada"},
            "channel": "in_app",
            "content": {"body": "x", "pinned": True, "buttons": [{"label": ""}]},
        },
    )
    assert answer.status_code == 422
    fields = {e["field"] for e in answer.json()["error"]["errors"]}
    assert fields == {"content.pinned", "content.buttons"}
    assert client.get("/v1/contacts/ada/inbox").json()["items"] == []
