"""Campaigns over HTTP: validation that names the field (nothing written), state moves and
their 409s, freezing the audience, throttling, A/B tests with a winner, control groups,
local-time schedules, push paired with an in-app message — on SQLite and PostgreSQL, the
clock advanced virtually."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from junction.engine.dispatcher import Dispatcher
from junction.store.database import Database
from junction.store.lifecycle import Change, record_changes
from junction.store.tables import (
    campaign_recipients,
    campaigns,
    contacts,
    inbox_items,
    messages,
    segments,
)

TEMPLATE = {
    "key": "promo",
    "channels": {
        "email": {"subject": "Sale", "text": "Hello {{ contact.first_name }}"},
        "sms": {"text": "Sale today"},
        "push": {"title": "Sale", "body": "Today only"},
        "in_app": {"title": "Sale", "body": "In the app too"},
    },
}


def template(client: Any, key: str = "promo", **overrides: Any) -> None:
    answer = client.post("/v1/templates", json={**TEMPLATE, "key": key, **overrides})
    assert answer.status_code in (200, 201), answer.text


def identify(client: Any, user_id: str, **traits: Any) -> None:
    answer = client.post("/v1/identify", json={"userId": user_id, "traits": traits})
    assert answer.status_code == 200, answer.text


def people(client: Any, count: int, **traits: Any) -> list[str]:
    users = [f"u{index:03d}" for index in range(count)]
    for user in users:
        identify(client, user, email=f"{user}@example.com", **traits)
    return users


def campaign(key: str = "sale", **fields: Any) -> dict[str, Any]:
    message = {"template": "promo", "channel": "email", "category": "transactional"}
    return {"key": key, "name": key.title(), "audience": "everyone", "message": message, **fields}


def create(client: Any, definition: dict[str, Any], status: int = 201) -> dict[str, Any]:
    answer = client.post("/v1/campaigns", json=definition)
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    return body


def act(client: Any, key: str, action: str, status: int = 200, **body: Any) -> dict[str, Any]:
    answer = client.post(f"/v1/campaigns/{key}/{action}", json=body or None)
    assert answer.status_code == status, answer.text
    found: dict[str, Any] = answer.json()
    return found


def drain(database: Database, clock: Any) -> None:
    asyncio.run(Dispatcher(database, clock, journey_grace=timedelta(0)).drain())


def progress(client: Any, key: str = "sale") -> dict[str, Any]:
    answer = client.get(f"/v1/campaigns/{key}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def sent_to(database: Database) -> dict[str, list[str]]:
    """user id -> the channels of the campaign messages it has."""
    with database.read() as conn:
        rows = conn.execute(
            select(contacts.c.user_id, messages.c.channel)
            .join(contacts, contacts.c.id == messages.c.contact_id)
            .where(messages.c.idempotency_key.like("campaign:%"))
            .order_by(messages.c.id)
        ).all()
    found: dict[str, list[str]] = {}
    for user_id, channel in rows:
        found.setdefault(user_id, []).append(channel)
    return found


def errors_of(answer: Any) -> dict[str, str]:
    assert answer.status_code == 422, answer.text
    return {e["field"]: e["message"] for e in answer.json()["error"]["errors"]}


def nothing_written(database: Database) -> None:
    with database.read() as conn:
        assert conn.scalar(select(func.count()).select_from(campaigns)) == 0


def test_invalid_campaigns_name_the_field_and_write_nothing(
    client: Any, database: Database
) -> None:
    template(client)
    people(client, 2)
    cases = [
        (
            campaign(message={"template": "nope", "channel": "email", "category": "offers"}),
            "message.template",
            "no template 'nope'",
        ),
        (campaign(audience={"segment": "ghosts"}), "audience.segment", "no segment 'ghosts'"),
        (campaign(schedule={"at": "2026-11-19T09:00:00Z"}), "schedule.at", "has passed"),
        (
            campaign(message={"template": "promo", "channel": "fax", "category": "offers"}),
            "message.channel",
            "not a channel",
        ),
        (
            campaign(message={"template": "promo", "channel": "email", "category": "Bad Topic"}),
            "message.category",
            "topic key",
        ),
        (campaign(schedule={"at": "2026-12-01T09:00:00"}), "schedule", "offset"),
        (
            campaign(message={"template": "promo", "channel": "voice", "category": "offers"}),
            "message.template",
            "no voice content",
        ),
        (
            campaign(variants=[{"key": "a", "template": "gone"}, {"key": "b"}]),
            "variants.a.template",
            "no template 'gone'",
        ),
        (
            campaign(
                abTest={
                    "testPercent": 20,
                    "metric": "opened",
                    "after": {"amount": 1, "unit": "hours"},
                }
            ),
            "",
            "two variants",
        ),
        (campaign(unexpected=1), "unexpected", "Extra inputs"),
    ]
    for definition, field, message in cases:
        found = errors_of(client.post("/v1/campaigns", json=definition))
        key = field or next(iter(found))
        assert key in found and message in found[key], (field, found)
    nothing_written(database)
    assert client.get("/v1/campaigns").json() == {"campaigns": []}


def test_send_now_reaches_everyone_once_and_completes(
    client: Any, database: Database, clock: Any
) -> None:
    template(client)
    users = people(client, 5)
    assert create(client, campaign())["status"] == "draft"
    assert create(client, campaign(), status=200)["changed"] is False
    started = act(client, "sale", "send")
    assert started["status"] == "sending" and started["progress"]["pending"] == 5
    # Frozen: someone identified now is not in this campaign.
    identify(client, "late", email="late@example.com")
    drain(database, clock)
    body = progress(client)
    assert body["status"] == "completed"
    assert body["progress"] == {
        "audience": 5,
        "pending": 0,
        "heldForWinner": 0,
        "queued": 5,
        "control": 0,
        "skipped": 0,
    }
    assert body["variants"]["main"]["sent"] == 5
    assert sent_to(database) == {user: ["email"] for user in users}
    with database.read() as conn:
        campaign_id = conn.scalar(select(campaigns.c.id))
        keys = set(conn.scalars(select(messages.c.idempotency_key)))
        ids = set(conn.scalars(select(contacts.c.id).where(contacts.c.user_id.in_(users))))
    assert keys == {f"campaign:{campaign_id}:{contact}" for contact in ids}
    # Done is done: a completed campaign does not move, nor change.
    conflict = client.post("/v1/campaigns/sale/pause")
    assert conflict.status_code == 409 and "completed" in conflict.json()["error"]["message"]
    changed = campaign(name="Another name")
    assert client.post("/v1/campaigns", json=changed).status_code == 409


def test_state_moves_and_conflicts(client: Any, database: Database, clock: Any) -> None:
    template(client)
    people(client, 3)
    create(client, campaign())
    message = act(client, "sale", "pause", status=409)["error"]["message"]
    assert "draft: it cannot pause; it can: schedule, send, cancel" in message
    assert act(client, "sale", "resume", status=409)
    # Scheduling needs a time: the field is named.
    assert "schedule.at" in errors_of(client.post("/v1/campaigns/sale/schedule"))
    at = (clock.now() + timedelta(hours=2)).isoformat()
    scheduled = act(client, "sale", "schedule", at=at)
    assert scheduled["status"] == "scheduled" and scheduled["scheduledAt"] == at
    assert act(client, "sale", "pause")["status"] == "paused"
    clock.advance(timedelta(hours=3))
    drain(database, clock)
    assert progress(client)["status"] == "paused" and sent_to(database) == {}
    assert act(client, "sale", "resume")["status"] == "scheduled"
    drain(database, clock)
    assert progress(client)["status"] == "completed" and len(sent_to(database)) == 3
    assert "nothing more" in act(client, "sale", "cancel", status=409)["error"]["message"]


def test_pause_mid_send_then_cancel(client: Any, database: Database, clock: Any) -> None:
    template(client)
    people(client, 4)
    create(client, campaign(throttle={"perMinute": 2}))
    act(client, "sale", "send")
    drain(database, clock)
    assert len(sent_to(database)) == 2
    act(client, "sale", "pause")
    clock.advance(timedelta(minutes=5))
    drain(database, clock)
    assert len(sent_to(database)) == 2
    cancelled = act(client, "sale", "cancel")
    assert cancelled["status"] == "cancelled"
    assert cancelled["progress"]["skipped"] == 2 and cancelled["progress"]["pending"] == 0
    drain(database, clock)
    assert len(sent_to(database)) == 2


def test_empty_audience_cannot_be_sent_or_scheduled(
    client: Any, database: Database, clock: Any
) -> None:
    template(client)
    create(client, campaign())
    assert "nobody" in errors_of(client.post("/v1/campaigns/sale/send"))["audience"]
    at = (clock.now() + timedelta(hours=1)).isoformat()
    found = errors_of(client.post("/v1/campaigns/sale/schedule", json={"at": at}))
    assert "audience" in found
    assert progress(client)["status"] == "draft"
    with database.read() as conn:
        assert conn.scalar(select(func.count()).select_from(campaign_recipients)) == 0


def test_segment_audience(client: Any, database: Database, clock: Any) -> None:
    template(client)
    for user, plan in (("ann", "vip"), ("ben", "free"), ("cat", "vip")):
        identify(client, user, email=f"{user}@example.com", plan=plan)
    now = clock.now()
    definition = {"key": "vip", "where": {"trait": "plan", "op": "eq", "value": "vip"}}
    with database.write() as conn:
        workspace_id = conn.scalar(select(contacts.c.workspace_id).limit(1))
        conn.execute(
            segments.insert().values(
                workspace_id=workspace_id,
                key="vip",
                name="VIP",
                status="active",
                version=1,
                definition=definition,
                digest="test",
                members=0,
                created_at=now,
                updated_at=now,
            )
        )
    create(client, campaign(audience={"segment": "vip"}))
    act(client, "sale", "send")
    drain(database, clock)
    assert sorted(sent_to(database)) == ["ann", "cat"]


def test_throttle_holds_to_per_minute(client: Any, database: Database, clock: Any) -> None:
    template(client)
    people(client, 5)
    create(client, campaign(throttle={"perMinute": 2}))
    act(client, "sale", "send")
    drain(database, clock)
    assert len(sent_to(database)) == 2
    clock.advance(timedelta(seconds=59))
    drain(database, clock)
    assert len(sent_to(database)) == 2, "a sliding minute: not yet"
    clock.advance(timedelta(seconds=2))
    drain(database, clock)
    assert len(sent_to(database)) == 4
    clock.advance(timedelta(minutes=1, seconds=1))
    drain(database, clock)
    assert len(sent_to(database)) == 5
    assert progress(client)["status"] == "completed"


def test_ab_test_sends_the_winner_to_the_rest(client: Any, database: Database, clock: Any) -> None:
    template(client, "plain")
    template(client, "bold", channels={"email": {"subject": "SALE!!", "text": "Now"}})
    template(client)
    users = people(client, 60)
    variants = [{"key": "a", "template": "plain"}, {"key": "b", "template": "bold"}]
    test = {"testPercent": 40, "metric": "opened", "after": {"amount": 2, "unit": "hours"}}
    create(client, campaign(variants=variants, abTest=test))
    act(client, "sale", "send")
    drain(database, clock)
    body = progress(client)
    tested = body["progress"]["queued"]
    held = body["progress"]["heldForWinner"]
    assert tested + held == 60 and 10 <= tested <= 40 and body["winner"] is None
    assert body["variants"]["a"]["sent"] > 0 and body["variants"]["b"]["sent"] > 0
    # b's emails are opened, a's are not.
    with database.write() as conn:
        opened = conn.execute(
            select(messages.c.id, messages.c.workspace_id, messages.c.contact_id)
            .join(campaign_recipients, campaign_recipients.c.message_id == messages.c.id)
            .where(campaign_recipients.c.variant == "b")
        ).all()
        record_changes(
            conn,
            [
                Change(m.workspace_id, m.contact_id, m.id, "email", "opened", clock.now())
                for m in opened
            ],
            clock.now(),
        )
    assert progress(client)["variants"]["b"]["opened"] == len(opened)
    clock.advance(timedelta(hours=1))
    drain(database, clock)
    assert progress(client)["progress"]["heldForWinner"] == held, "the test is still on"
    clock.advance(timedelta(hours=1, seconds=1))
    drain(database, clock)
    body = progress(client)
    assert body["winner"] == "b" and body["status"] == "completed"
    assert body["variants"]["b"]["recipients"] == len(opened) + held
    assert body["variants"]["a"]["opened"] == 0
    assert sorted(sent_to(database)) == users


def test_control_group_receives_nothing_and_converts(
    client: Any, database: Database, clock: Any
) -> None:
    template(client)
    users = people(client, 40)
    goal = {"event": "Order Completed", "within": {"amount": 1, "unit": "days"}}
    create(client, campaign(control={"percent": 25}, goal=goal))
    act(client, "sale", "send")
    drain(database, clock)
    with database.read() as conn:
        held_out = set(
            conn.scalars(
                select(contacts.c.user_id)
                .join(campaign_recipients, campaign_recipients.c.contact_id == contacts.c.id)
                .where(campaign_recipients.c.status == "control")
            )
        )
    reached = set(sent_to(database))
    assert 3 <= len(held_out) <= 20 and held_out | reached == set(users)
    assert not held_out & reached
    buyers = [sorted(held_out)[0], sorted(reached)[0], sorted(reached)[1]]
    clock.advance(timedelta(hours=2))
    for user in buyers:
        answer = client.post(
            "/v1/track",
            json={"userId": user, "event": "Order Completed", "timestamp": clock.now().isoformat()},
        )
        assert answer.status_code == 200
    body = progress(client)
    assert body["controlGroup"] == {"recipients": len(held_out), "converted": 1}
    assert body["variants"]["main"]["converted"] == 2
    assert body["progress"]["control"] == len(held_out)


def test_local_time_schedule_follows_each_timezone(
    client: Any, database: Database, clock: Any
) -> None:
    # The clock starts 2026-11-20 09:00 UTC; the campaign is for 10:00 on the 21st, locally.
    template(client)
    zones = {"tokyo": "Asia/Tokyo", "paris": "Europe/Paris", "ny": "America/New_York"}
    for user, zone in zones.items():
        identify(client, user, email=f"{user}@example.com", timezone=zone)
    identify(client, "nozone", email="nozone@example.com")
    schedule = {"at": "2026-11-21T10:00:00", "localTime": True}
    create(client, campaign(schedule=schedule))
    assert act(client, "sale", "schedule")["scheduledAt"].startswith("2026-11-20T20:00")
    expected = [  # UTC instants of 10:00 local, in order
        ("2026-11-21T01:00", "tokyo"),
        ("2026-11-21T09:00", "paris"),
        ("2026-11-21T10:00", "nozone"),
        ("2026-11-21T15:00", "ny"),
    ]
    from datetime import datetime

    reached: list[str] = []
    for instant, user in expected:
        at = datetime.fromisoformat(instant + ":00+00:00")
        clock.set(at - timedelta(seconds=1))
        drain(database, clock)
        assert sorted(sent_to(database)) == sorted(reached), f"too early for {user}"
        clock.set(at)
        drain(database, clock)
        reached.append(user)
        assert sorted(sent_to(database)) == sorted(reached)
    assert progress(client)["status"] == "completed"


def test_local_time_already_passed_sends_at_once(
    client: Any, database: Database, clock: Any
) -> None:
    # 09:30 UTC now: 10:00 local has passed in Tokyo and Paris, not in New York.
    template(client)
    for user, zone in {"tokyo": "Asia/Tokyo", "ny": "America/New_York"}.items():
        identify(client, user, email=f"{user}@example.com", timezone=zone)
    create(client, campaign(schedule={"at": "2026-11-20T10:00:00", "localTime": True}))
    act(client, "sale", "schedule")
    clock.advance(timedelta(minutes=30))
    drain(database, clock)
    assert sorted(sent_to(database)) == ["tokyo"]


def test_best_of_channels_and_push_with_pull(client: Any, database: Database, clock: Any) -> None:
    template(client)
    # Each can be reached on one of the candidates only: the best of them is that one.
    identify(client, "ada", plan="pro")
    identify(client, "bob", phone="+33611111111")
    identify(client, "cat", email="cat@example.com")
    answer = client.post("/v1/contacts/ada/devices", json={"type": "ios", "token": "ada-phone"})
    assert answer.status_code in (200, 201), answer.text
    message = {
        "template": "promo",
        "channels": ["push", "sms", "email"],
        "category": "transactional",
    }
    create(client, campaign(message=message, pull={"channel": "in_app", "template": "promo"}))
    act(client, "sale", "send")
    drain(database, clock)
    found = sent_to(database)
    assert found == {
        "ada": ["push", "in_app"],
        "bob": ["sms", "in_app"],
        "cat": ["email", "in_app"],
    }
    with database.read() as conn:
        items = conn.execute(
            select(contacts.c.user_id, inbox_items.c.kind, inbox_items.c.content)
            .join(contacts, contacts.c.id == inbox_items.c.contact_id)
            .order_by(contacts.c.user_id)
        ).all()
        statuses = set(conn.scalars(select(messages.c.status)))
    assert [(i.user_id, i.kind) for i in items] == [
        ("ada", "in_app"),
        ("bob", "in_app"),
        ("cat", "in_app"),
    ]
    assert items[0].content["title"] == "Sale"
    assert statuses == {"sent"}


def test_schema_is_published(client: Any) -> None:
    schema = client.get("/v1/campaigns/schema").json()
    assert {"key", "audience", "message", "schedule", "abTest", "control"} <= set(
        schema["properties"]
    )


def test_list_and_unknown_keys(client: Any, database: Database, clock: Any) -> None:
    template(client)
    people(client, 2)
    create(client, campaign("b-side"))
    create(client, campaign("a-side"))
    act(client, "a-side", "send")
    listed = client.get("/v1/campaigns").json()["campaigns"]
    assert [(c["key"], c["status"], c["audience"]) for c in listed] == [
        ("a-side", "sending", 2),
        ("b-side", "draft", None),
    ]
    missing = client.get("/v1/campaigns/nope")
    assert missing.status_code == 404 and "no campaign 'nope'" in missing.json()["error"]["message"]
    assert client.post("/v1/campaigns/nope/send").status_code == 404
    assert client.post("/v1/campaigns/a-side/explode").status_code == 422
