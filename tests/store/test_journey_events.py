"""How the journey engine reads the events table (``journey_runs.on_events``): the database
passes over the events no run uses, the cursor stops where a batch ends and before an event
that may not be visible yet, and a run still gets the events about its own messages — on
SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import count
from typing import Any

from sqlalchemy import func, select

from junction.clock import VirtualClock
from junction.domain.tracking import Identify, Track
from junction.store import journey_runs, journeys
from junction.store.database import Database
from junction.store.ingest import Batch, ingest
from junction.store.lifecycle import Change, record_changes
from junction.store.tables import contacts, events, messages
from junction.store.tables import journey_runs as runs
from tests.conftest import SECRET, Tenant

HOUR = {"amount": 1, "unit": "hours"}
KEYS = count()  # each message event its own key: a repeated one would be ignored
# Send an email, wait an hour for it to be opened: opened, the run completes; not, it exits.
OPEN_OR_LEAVE = {
    "key": "open-or-leave",
    "name": "Open or leave",
    "trigger": {"api": True},
    "steps": [
        {
            "id": "email",
            "type": "send",
            "channel": "email",
            "content": {"subject": "Hello", "text": "Hi"},
            "next": "wait-open",
        },
        {
            "id": "wait-open",
            "type": "wait_for",
            "messageOf": "email",
            "engagement": "opened",
            "timeout": HOUR,
            "onEvent": None,
            "onTimeout": "leave",
        },
        {"id": "leave", "type": "exit"},
    ],
}


def person(database: Database, tenant: Tenant, user_id: str, now: datetime) -> int:
    with database.write() as conn:
        calls = [Identify(user_id=user_id, traits={"email": f"{user_id}@example.com"})]
        ingest(conn, tenant.id, Batch(messages=calls, received_at=now), SECRET)
        found = conn.execute(select(contacts.c.id).where(contacts.c.user_id == user_id))
        return int(found.scalar_one())


def started(database: Database, tenant: Tenant, contact: int, now: datetime) -> tuple[int, Any]:
    """A run of OPEN_OR_LEAVE for the contact, waiting for its email to be opened; with that
    email's message row."""
    with database.write() as conn:
        journeys.save(conn, tenant.id, OPEN_OR_LEAVE, now)
        journeys.move(conn, tenant.id, "open-or-leave", "activate", now)
        row = journeys.row_of(conn, tenant.id, "open-or-leave")
        run_id = journey_runs.enter(conn, row, contact, {}, None, now)
        assert run_id is not None
        message = conn.execute(select(messages).where(messages.c.contact_id == contact)).one()
    return run_id, message


def lifecycle(
    database: Database, tenant: Tenant, contact: int, statuses: list[tuple[int, str]], at: datetime
) -> None:
    """Message events (``message.<status>``) on the contact, received at ``at``."""
    with database.write() as conn:
        changes = [
            Change(tenant.id, contact, message, "email", status, at, key=f"{status}:{next(KEYS)}")
            for message, status in statuses
        ]
        record_changes(conn, changes, at)


def tracked(
    database: Database, tenant: Tenant, user_id: str, names: list[str], at: datetime
) -> None:
    with database.write() as conn:
        calls = [Track(user_id=user_id, event=name) for name in names]
        ingest(conn, tenant.id, Batch(messages=calls, received_at=at), SECRET)


def read(database: Database, now: datetime, grace: timedelta, limit: int) -> int:
    with database.write() as conn:
        return journey_runs.on_events(conn, now, grace, limit)


def cursor(database: Database) -> int:
    with database.read() as conn:
        return journey_runs.read_cursor(conn)


def last_event(database: Database) -> int:
    with database.read() as conn:
        return int(conn.execute(select(func.max(events.c.id))).scalar_one())


def status(database: Database, run_id: int) -> str:
    with database.read() as conn:
        found = conn.execute(select(runs.c.status).where(runs.c.id == run_id))
        return str(found.scalar_one())


def test_a_run_gets_its_open_among_many_events_no_run_uses(
    database: Database, clock: VirtualClock, tenant: Tenant
) -> None:
    # Given a run waiting for its email to be opened, and 1,200 events no run uses after it:
    # the journey's own message queued and handed over, again and again
    now = clock.now()
    contact = person(database, tenant, "ada", now)
    run_id, message = started(database, tenant, contact, now)
    noise = [(message.id + 1 + i, "queued" if i % 2 else "sent") for i in range(1200)]
    lifecycle(database, tenant, contact, noise, now)
    # and then the open of its email
    lifecycle(database, tenant, contact, [(message.id, "opened")], now)

    # When the engine reads, two events a batch
    batches = 0
    while read(database, now, timedelta(0), limit=2):
        batches += 1

    # Then the open reached the run, and the cursor passed everything in a few batches
    assert status(database, run_id) == "completed"
    assert cursor(database) == last_event(database)
    assert batches <= 3


def test_the_cursor_stops_at_the_end_of_a_full_batch(
    database: Database, clock: VirtualClock, tenant: Tenant
) -> None:
    # Given five events someone might wait for, with events no run uses between them
    now = clock.now()
    contact = person(database, tenant, "ada", now)
    _, message = started(database, tenant, contact, now)
    for name in ["A", "B", "C", "D", "E"]:
        tracked(database, tenant, "ada", [name], now)
        lifecycle(database, tenant, contact, [(message.id, "sent")], now)
    with database.read() as conn:
        named = select(events.c.name, events.c.id).where(events.c.name.in_(list("ABCDE")))
        ids = {name: event_id for name, event_id in conn.execute(named)}

    # When the engine reads two of them
    read(database, now, timedelta(0), limit=2)

    # Then the cursor is at the second, and the next batches go on from there
    assert cursor(database) == ids["B"]
    read(database, now, timedelta(0), limit=2)
    assert cursor(database) == ids["D"]
    read(database, now, timedelta(0), limit=2)
    assert cursor(database) == last_event(database)
    assert read(database, now, timedelta(0), limit=2) == 0


def test_the_cursor_stops_before_an_event_younger_than_the_grace(
    database: Database, clock: VirtualClock, tenant: Tenant
) -> None:
    # Given a run waiting for its open, events no run uses, then its open received just now
    start = clock.now()
    contact = person(database, tenant, "ada", start)
    run_id, message = started(database, tenant, contact, start)
    lifecycle(database, tenant, contact, [(message.id, "sent")] * 3, start)
    later = start + timedelta(minutes=10)
    lifecycle(database, tenant, contact, [(message.id, "opened")], later)
    with database.read() as conn:
        opened = conn.execute(select(events.c.id).where(events.c.name == "message.opened"))
        open_id = int(opened.scalar_one())
        before = conn.execute(select(func.max(events.c.id)).where(events.c.id < open_id))
        before_open = int(before.scalar_one())

    # When the engine reads with a grace the open is still within
    grace = timedelta(seconds=2)
    while read(database, later + timedelta(seconds=1), grace, limit=500):
        pass

    # Then it passed what came before the open, not the open: the run still waits
    assert cursor(database) == before_open
    assert status(database, run_id) == "waiting"

    # And once the grace is over, the open reaches the run
    while read(database, later + timedelta(seconds=3), grace, limit=500):
        pass
    assert cursor(database) == open_id
    assert status(database, run_id) == "completed"
