"""Segments over HTTP: saving and validation, members kept current as events arrive and as
time passes, membership events, journeys that start on entry — on SQLite and PostgreSQL,
the clock advanced virtually."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from junction.engine.dispatcher import Dispatcher
from junction.store.database import Database
from junction.store.tables import events, journey_runs, segments

HOUR = {"amount": 1, "unit": "hours"}
WEEK = {"amount": 7, "unit": "days"}

CART = {
    "key": "cart-abandoners",
    "name": "Added to cart, no purchase within an hour",
    "where": {
        "performed": "Added to Cart",
        "notFollowedBy": {"event": "Order Completed", "within": HOUR},
        "within": WEEK,
    },
}


def identify(client: Any, user_id: str, **traits: Any) -> None:
    answer = client.post("/v1/identify", json={"userId": user_id, "traits": traits})
    assert answer.status_code == 200, answer.text


def track(client: Any, user_id: str, event: str, **properties: Any) -> None:
    body = {"userId": user_id, "event": event, "properties": properties}
    answer = client.post("/v1/track", json=body)
    assert answer.status_code == 200, answer.text


def save(client: Any, definition: dict[str, Any], status: int = 201) -> dict[str, Any]:
    answer = client.post("/v1/segments", json=definition)
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    return body


def drain(database: Database, clock: Any) -> None:
    asyncio.run(Dispatcher(database, clock, journey_grace=timedelta(0)).drain())


def member_ids(client: Any, key: str) -> list[str]:
    found: list[str] = []
    after = 0
    while True:
        page = client.get(f"/v1/segments/{key}/members", params={"after": after, "limit": 2})
        assert page.status_code == 200, page.text
        found += [m["userId"] for m in page.json()["members"]]
        if page.json()["next"] is None:
            return sorted(found)
        after = page.json()["next"]


def membership_events(database: Database) -> list[tuple[str, str]]:
    from junction.store.tables import contacts

    with database.read() as conn:
        rows = conn.execute(
            select(events.c.name, contacts.c.user_id, events.c.properties)
            .join(contacts, contacts.c.id == events.c.contact_id)
            .where(events.c.name.like("segment.%"))
            .order_by(events.c.id)
        )
        return [(row.name, row.user_id) for row in rows]


def test_a_saved_segment_is_evaluated_over_the_events_already_stored(client, clock) -> None:
    identify(client, "ann", plan="pro")
    identify(client, "bob", plan="free")
    identify(client, "cat", plan="pro")
    track(client, "ann", "Added to Cart")
    track(client, "bob", "Added to Cart")
    clock.advance(timedelta(hours=2))
    saved = save(
        client,
        {
            "key": "pro-carts",
            "where": {"all": [{"trait": "plan", "value": "pro"}, CART["where"]]},
        },
    )
    assert (saved["version"], saved["members"], saved["created"]) == (1, 1, True)
    assert member_ids(client, "pro-carts") == ["ann"]
    again = save(
        client,
        {
            "key": "pro-carts",
            "where": {"all": [{"trait": "plan", "value": "pro"}, CART["where"]]},
        },
        status=200,
    )
    assert (again["version"], again["created"]) == (1, False)
    listed = client.get("/v1/segments").json()["segments"]
    assert [(s["key"], s["members"]) for s in listed] == [("pro-carts", 1)]


def test_bad_segments_name_the_field_and_save_nothing(client, database) -> None:
    cases = [
        ({"key": "x", "where": {"trait": "plan", "op": "like", "value": 1}}, "where.op"),
        ({"key": "x", "where": {"colour": "red"}}, "where"),
        ({"key": "x", "where": {"performed": "A", "atLeast": 3, "atMost": 1}}, "where"),
        ({"key": "x", "where": {"all": [{"reachable": "pigeon"}]}}, "where.all.0"),
        ({"key": "Bad Key", "where": {"reachable": "email"}}, "key"),
        ({"key": "x", "where": {"trait": "born", "op": "before", "value": "soon"}}, "where"),
        ({"key": "x", "where": {"engaged": "opened"}}, "where"),
    ]
    for definition, field in cases:
        answer = client.post("/v1/segments", json=definition)
        assert answer.status_code == 422, definition
        fields = [error["field"] for error in answer.json()["error"]["errors"]]
        assert field in fields, (definition, answer.json())
    with database.read() as conn:
        assert conn.execute(select(func.count()).select_from(segments)).scalar_one() == 0
    assert client.get("/v1/segments/nope").status_code == 404


def test_cart_abandoners_enter_when_the_hour_passes_and_leave_when_they_buy(
    client, database, clock
) -> None:
    identify(client, "ann")
    identify(client, "bob")
    save(client, CART)
    track(client, "ann", "Added to Cart")
    track(client, "bob", "Added to Cart")
    clock.advance(timedelta(minutes=30))
    track(client, "bob", "Order Completed")
    drain(database, clock)
    assert member_ids(client, "cart-abandoners") == []  # nobody's hour has passed yet
    clock.advance(timedelta(minutes=31))
    drain(database, clock)
    assert member_ids(client, "cart-abandoners") == ["ann"]  # bob bought within the hour
    track(client, "ann", "Order Completed")
    drain(database, clock)
    # A purchase after the hour does not change "not followed within an hour"...
    assert member_ids(client, "cart-abandoners") == ["ann"]
    # ...but the cart add leaves the seven-day window.
    clock.advance(timedelta(days=7))
    drain(database, clock)
    assert member_ids(client, "cart-abandoners") == []
    assert membership_events(database) == [
        ("segment.entered", "ann"),
        ("segment.exited", "ann"),
    ]
    assert client.get("/v1/segments/cart-abandoners").json()["members"] == 0


def test_inactive_people_enter_as_time_passes_and_leave_when_they_return(
    client, database, clock
) -> None:
    save(
        client,
        {
            "key": "inactive",
            "where": {
                "lastPerformed": "Session Started",
                "moreThan": {"amount": 30, "unit": "days"},
            },
        },
    )
    identify(client, "ann")
    track(client, "ann", "Session Started")
    clock.advance(timedelta(days=29))
    drain(database, clock)
    assert member_ids(client, "inactive") == []
    clock.advance(timedelta(days=1, minutes=1))
    drain(database, clock)
    assert member_ids(client, "inactive") == ["ann"]
    track(client, "ann", "Session Started")
    drain(database, clock)
    assert member_ids(client, "inactive") == []


def test_trait_changes_move_people_in_and_out(client, database, clock) -> None:
    save(
        client,
        {
            "key": "big-spenders",
            "where": {
                "all": [
                    {"trait": "lifetimeValue", "op": "gte", "value": 1000},
                    {"not": {"trait": "country", "op": "in", "value": ["FR"]}},
                ]
            },
        },
    )
    identify(client, "ann", lifetimeValue=500)
    drain(database, clock)
    assert member_ids(client, "big-spenders") == []
    identify(client, "ann", lifetimeValue=1500)
    drain(database, clock)
    assert member_ids(client, "big-spenders") == ["ann"]
    identify(client, "ann", country="FR")
    drain(database, clock)
    assert member_ids(client, "big-spenders") == []


def test_counts_within_a_window_follow_the_window(client, database, clock) -> None:
    save(
        client,
        {
            "key": "frequent-buyers",
            "where": {
                "performed": "Order Completed",
                "where": {"total": {"op": "gte", "value": 20}},
                "atLeast": 3,
                "within": {"amount": 30, "unit": "days"},
            },
        },
    )
    identify(client, "ann")
    for day, total in enumerate([25, 10, 30, 40]):
        track(client, "ann", "Order Completed", total=total)
        clock.advance(timedelta(days=10 if day < 3 else 1))
        drain(database, clock)
    # Orders of 20 or more on days 0, 20 and 30; on day 31 the first has left the window.
    assert member_ids(client, "frequent-buyers") == []
    track(client, "ann", "Order Completed", total=99)
    drain(database, clock)
    assert member_ids(client, "frequent-buyers") == ["ann"]
    clock.advance(timedelta(days=20))
    drain(database, clock)  # the day-20 order leaves the window
    assert member_ids(client, "frequent-buyers") == []


def test_a_journey_starts_when_a_person_enters_a_segment(client, database, clock) -> None:
    save(client, CART)
    journey = {
        "key": "win-back-cart",
        "name": "Win back carts",
        "trigger": {"segment": "cart-abandoners"},
        "steps": [
            {
                "id": "remind",
                "type": "send",
                "channel": "email",
                "content": {"subject": "Your cart", "text": "Still thinking?"},
                "next": None,
            }
        ],
    }
    assert client.post("/v1/journeys", json=journey).status_code == 201
    assert client.post("/v1/journeys/win-back-cart/activate").status_code == 200
    identify(client, "ann", email="ann@example.com")
    track(client, "ann", "Added to Cart")
    clock.advance(timedelta(hours=1, minutes=1))
    drain(database, clock)
    with database.read() as conn:
        runs = conn.execute(select(journey_runs.c.status)).all()
    assert [run.status for run in runs] == ["completed"]
    sent = client.get("/v1/messages", params={"user_id": "ann"}).json()["messages"]
    assert [(m["channel"], m["status"]) for m in sent] == [("email", "sent")]


def test_archiving_a_segment_empties_it(client, database, clock) -> None:
    identify(client, "ann", email="ann@example.com")
    save(client, {"key": "emailable", "where": {"reachable": "email"}})
    assert member_ids(client, "emailable") == ["ann"]
    assert client.post("/v1/segments/emailable/archive").json()["status"] == "archived"
    assert client.post("/v1/segments/emailable/archive").status_code == 409
    assert client.get("/v1/segments/emailable").json()["members"] == 0


def test_people_sent_a_journey_step_are_in_its_engagement_segment(client, database, clock) -> None:
    for key, step in (("got-hello", "hello"), ("got-other", "other")):
        where = {"engaged": "received", "journey": "hi", "step": step}
        save(client, {"key": key, "where": where})
    hello = {
        "id": "hello",
        "type": "send",
        "channel": "email",
        "content": {"subject": "Hello", "text": "Welcome"},
        "next": None,
    }
    journey = {"key": "hi", "name": "Hi", "trigger": {"event": "Signed Up"}, "steps": [hello]}
    assert client.post("/v1/journeys", json=journey).status_code == 201
    assert client.post("/v1/journeys/hi/activate").status_code == 200
    identify(client, "ann", email="ann@example.com")
    identify(client, "bob", email="bob@example.com")
    track(client, "ann", "Signed Up")
    drain(database, clock)
    assert member_ids(client, "got-hello") == ["ann"]
    assert member_ids(client, "got-other") == []


def test_a_segment_saved_again_after_archiving_finds_the_history_it_needs(
    client, database, clock
) -> None:
    twice = {"performed": "X", "atLeast": 2, "within": {"amount": 7, "unit": "days"}}
    save(client, {"key": "lately", "where": {"lastPerformed": "X", "moreThan": HOUR}})
    identify(client, "ann")
    track(client, "ann", "X")
    clock.advance(timedelta(days=1))
    track(client, "ann", "X")
    drain(database, clock)
    assert save(client, {"key": "twice", "where": twice})["members"] == 1
    assert client.post("/v1/segments/twice/archive").status_code == 200
    clock.advance(timedelta(hours=1))
    track(client, "ann", "X")  # folded while only "lately" (which needs no times) is active
    drain(database, clock)
    assert save(client, {"key": "twice", "where": twice})["members"] == 1
    assert member_ids(client, "twice") == ["ann"]
