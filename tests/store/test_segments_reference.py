"""Segment membership over 50,000 contacts with synthetic behaviour, checked against a
reference written here: plain Python over the very events and rows the test generated,
following the rules as documented (junction/domain/segments.py, docs/journeys.md for
filters), for every kind of condition and a few combinations — on SQLite and PostgreSQL.

The reference shares no code with junction's evaluation: it knows each date trait's instant
because it made it, resolves message origins from its own records, and re-derives the
bucket hash (sha256 of ``"{salt}:{contact id}"``, first 8 bytes big-endian, modulo 100).
"""

from __future__ import annotations

import hashlib
import random
import zlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from typing import Any

from sqlalchemy import Connection, Table, func, select

from junction.store import segments as store
from junction.store.database import Database
from junction.store.ingest import EVENT_COLUMNS
from junction.store.sql import driver_json, driver_time, insert_rows_fast
from junction.store.tables import (
    addresses,
    campaigns,
    contacts,
    events,
    journey_runs,
    journeys,
    messages,
    segment_members,
    segments,
)
from tests.conftest import SECRET

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
T = int(NOW.timestamp())
MINUTE, HOUR, DAY = 60, 3600, 86400
PEOPLE = 50_000
ENGAGED_PEOPLE = 5_000  # the first ones also get messages from a campaign and a journey
MISSING = object()


# --- the world: generated once, in memory ----------------------------------------------------


@dataclass
class Person:
    index: int
    traits: dict[str, Any]
    moments: dict[str, int | None]  # date trait → the instant it denotes (None: not a date)
    addresses: list[tuple[str, str, str]]  # (kind, value, status)
    events: list[tuple[str, dict[str, Any], int]] = field(default_factory=list)  # name, props, t


@dataclass
class Message:
    index: int  # its position: the row's id is looked up after insertion
    person: int
    origin: tuple[str, str, str | None]  # ("campaign", key, None) / ("journey", key, step)
    run: str | None  # the journey run's label


def idempotency_key(message: Message, ids: Mapping[str, int]) -> str:
    """As the sender writes it, from the ids the rows were given."""
    kind, key, step = message.origin
    if kind == "campaign":
        return f"campaign:{ids['campaign:' + key]}:{ids[f'contact:{message.person}']}"
    if kind == "journey":
        return f"journey:{ids[f'run:{message.run}']}:{step}:1"
    return f"api:request-{message.index}"


@dataclass
class World:
    people: list[Person]
    messages: list[Message]
    # message events: (person, name, message index, t, messageId as a string?)
    message_events: list[tuple[int, str, int, int, bool]]
    runs: list[tuple[int, str, str]]  # (person, journey key, run label)


def _iso(instant: int, style: str) -> tuple[Any, int | None]:
    """A date trait in one of the shapes people send, and the instant it means."""
    moment = datetime.fromtimestamp(instant, UTC)
    if style == "z":
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ"), instant
    if style == "offset":  # the same instant written in UTC+02:00
        local = moment.astimezone(timezone(timedelta(hours=2)))
        return local.strftime("%Y-%m-%dT%H:%M:%S+02:00"), instant
    if style == "naive":  # no offset: UTC
        return moment.strftime("%Y-%m-%dT%H:%M:%S"), instant
    if style == "date":  # a date: its midnight UTC
        midnight = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
        return moment.strftime("%Y-%m-%d"), int(midnight.timestamp())
    if style == "slashes":
        return moment.strftime("%d/%m/%Y"), None
    if style == "words":
        return "last tuesday", None
    assert style == "epoch"  # a number is not an ISO 8601 date
    return instant, None


def _person(i: int, rng: random.Random) -> Person:
    traits: dict[str, Any] = {}
    moments: dict[str, int | None] = {}
    roll = rng.random()
    if roll < 0.9:
        traits["plan"] = rng.choice(["free", "free", "pro", "team", "enterprise"])
    value = rng.random()
    if value < 0.8:
        traits["lifetimeValue"] = rng.choice([rng.randint(0, 1000), round(rng.uniform(0, 1000), 2)])
    elif value < 0.85:
        traits["lifetimeValue"] = "unknown"  # does not compare with a number
    elif value < 0.9:
        traits["lifetimeValue"] = rng.choice([100, 500, 100.0, 500.0])  # the bounds themselves
    if rng.random() < 0.95:
        traits["country"] = rng.choice(["FR", "DE", "US", "GB", "BE", "ES", "fr"])
    if rng.random() < 0.5:
        traits["tags"] = rng.sample(["vip", "beta", "churn-risk", "newsletter"], rng.randint(0, 3))
    elif rng.random() < 0.2:
        traits["tags"] = rng.choice(["vip-ish", "beta", ""])  # a string: contains is substring
    if rng.random() < 0.6:
        traits["company"] = {"size": rng.randint(1, 500), "name": f"Co {i % 97}"}
    if rng.random() < 0.3:
        traits["phoneVerified"] = rng.random() < 0.5
    # signupAt: an instant up to 120 days back (a few in the future, a few right on a window's
    # edge), written in several ISO 8601 shapes, some not dates at all.
    edge = rng.random()
    if edge < 0.02:
        instant = T - 30 * DAY
    elif edge < 0.04:
        instant = T - 45 * DAY
    elif edge < 0.06:
        instant = T + rng.randint(1, 5 * DAY)
    else:
        instant = T - rng.randint(0, 120 * DAY)
    if rng.random() < 0.93:
        style = rng.choice(
            ["z", "z", "z", "offset", "naive", "date", "date", "slashes", "words", "epoch"]
        )
        traits["signupAt"], moments["signupAt"] = _iso(instant, style)
    # birthday: a plain date.
    if rng.random() < 0.7:
        day = datetime(1960, 1, 1, tzinfo=UTC) + timedelta(days=rng.randint(0, 365 * 50))
        traits["birthday"], moments["birthday"] = _iso(int(day.timestamp()), "date")
    found: list[tuple[str, str, str]] = []
    if rng.random() < 0.75:
        status = "active" if rng.random() < 0.85 else rng.choice(["bounced", "unsubscribed"])
        found.append(("email", f"p{i}@example.com", status))
        if status != "active" and rng.random() < 0.3:
            found.append(("email", f"p{i}.other@example.com", "active"))
    if rng.random() < 0.4:
        status = "active" if rng.random() < 0.8 else rng.choice(["invalid", "unverified"])
        found.append(("phone", f"+3361{i:07d}", status))
    person = Person(i, traits, moments, found)
    _behaviour(person, rng)
    return person


def _behaviour(person: Person, rng: random.Random) -> None:
    add = person.events.append

    def when() -> int:
        return T - rng.randint(0, 60 * DAY)

    for _ in range(rng.choice([0, 0, 1, 1, 2, 3, 4])):
        at = T - 30 * DAY if rng.random() < 0.02 else when()
        add(("Session Started", {"platform": rng.choice(["ios", "android", "web"])}, at))
    for _ in range(rng.choice([0, 0, 1, 2])):
        add(("Viewed Product", {"sku": f"sku-{rng.randint(1, 40)}"}, when()))
    carts: list[int] = []
    for _ in range(rng.choice([0, 0, 0, 1, 1, 2, 3])):
        at = T - 7 * DAY if rng.random() < 0.03 else when()
        carts.append(at)
        add(
            ("Added to Cart", {"sku": f"sku-{rng.randint(1, 40)}", "price": rng.randint(5, 90)}, at)
        )
    if carts and rng.random() < 0.6:
        # An order after the latest cart: at once, within the hour, right on the hour, just
        # after it, hours or days later.
        delay = rng.choice(
            [0, 30 * MINUTE, HOUR, HOUR + 1, 3 * HOUR, 2 * DAY, 2 * DAY + 1, 5 * DAY]
        )
        at = max(carts) + delay
        if at <= T:
            add(("Order Completed", _order(rng), at))
    for _ in range(rng.choice([0, 0, 0, 1, 2])):
        add(("Order Completed", _order(rng), when()))


def _order(rng: random.Random) -> dict[str, Any]:
    order: dict[str, Any] = {"currency": rng.choice(["USD", "EUR", "EUR"])}
    roll = rng.random()
    if roll < 0.85:
        order["total"] = rng.choice([rng.randint(5, 400), round(rng.uniform(5, 400), 2), 100])
    elif roll < 0.92:
        order["total"] = "12.50"  # a string: not a number
    if rng.random() < 0.1:
        del order["currency"]
    order["shipping"] = {"method": rng.choice(["express", "standard", "standard"])}
    return order


@cache
def world() -> World:
    rng = random.Random(20261120)
    people = [_person(i, rng) for i in range(PEOPLE)]
    found: list[Message] = []
    message_events: list[tuple[int, str, int, int, bool]] = []
    runs: list[tuple[int, str, str]] = []
    steps = {"onboarding": ["welcome", "tips", "nudge"], "winback": ["welcome", "offer"]}
    for person in range(ENGAGED_PEOPLE):
        origins: list[tuple[str, str, str | None]] = []
        if rng.random() < 0.5:
            origins.append(("campaign", rng.choice(["black-friday", "newsletter-11"]), None))
        if rng.random() < 0.6:
            journey = rng.choice(["onboarding", "winback"])
            label = f"run-{len(runs)}"
            runs.append((person, journey, label))
            for visited in rng.sample(steps[journey], rng.randint(1, len(steps[journey]))):
                origins.append(("journey", journey, f"{label}|{visited}"))
        if rng.random() < 0.1:
            origins.append(("api", "transactional", None))  # no campaign, no journey
        for kind, key, detail in origins:
            index = len(found)
            run: str | None = None
            step: str | None = None
            if detail is not None:
                run, step = detail.split("|")
            found.append(Message(index, person, (kind, key, step), run))
            sent = T - rng.randint(0, 20 * DAY)
            as_text = rng.random() < 0.2
            message_events.append((person, "message.sent", index, sent, as_text))
            if rng.random() < 0.5:
                opened = min(T, sent + rng.randint(0, 3 * DAY))
                message_events.append((person, "message.opened", index, opened, as_text))
                if rng.random() < 0.5:
                    clicked = min(T, opened + rng.randint(0, HOUR))
                    message_events.append((person, "message.clicked", index, clicked, as_text))
    return World(people, found, message_events, runs)


# --- into the real tables --------------------------------------------------------------------


def bulk(
    conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Rows in driver form into ``table``: COPY on PostgreSQL, ``executemany`` on SQLite."""
    if conn.dialect.name != "postgresql":
        insert_rows_fast(conn, table, columns, rows, on=[c.name for c in table.primary_key])
        return
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


@dataclass
class Stored:
    workspace: int
    ids: dict[int, int]  # contact id by person
    message_ids: dict[int, int]  # message id by index


def insert_world(conn: Connection, data: World, until: int = T, held: int = 0) -> Stored:
    """Every row in bulk, the events up to ``until`` (but one in ``held``)."""
    time = driver_time(conn)
    now = time(NOW)
    workspace = _workspace(conn)
    rows = [
        (workspace, f"u{p.index}", driver_json(p.traits), None, None, None, now, now)
        for p in data.people
    ]
    columns = ("workspace_id", "user_id", "traits", "timezone", "locale", "country")
    bulk(conn, contacts, (*columns, "created_at", "updated_at"), rows)
    ids = {
        int(row.user_id[1:]): row.id
        for row in conn.execute(select(contacts.c.id, contacts.c.user_id))
    }
    bulk(
        conn,
        addresses,
        (
            "workspace_id",
            "contact_id",
            "kind",
            "value",
            "status",
            "details",
            "created_at",
            "updated_at",
        ),
        [
            (workspace, ids[p.index], kind, value, status, "{}", now, now)
            for p in data.people
            for kind, value, status in p.addresses
        ],
    )
    stored = Stored(workspace, ids, _messages(conn, workspace, data, ids))
    insert_events(conn, data, stored, 0, until, held)
    return stored


def insert_events(
    conn: Connection, data: World, stored: Stored, after: int, until: int, held: int = 0
) -> None:
    """The events after ``after`` up to ``until``, in no particular order. With ``held``,
    one in ``held`` of them is kept back from the first insertion (``after`` 0) and sent
    with the next, late: its time is before the events stored already."""

    def chosen(message_id: str, at: int) -> bool:
        if not held:
            return after < at <= until
        late = zlib.crc32(message_id.encode()) % held == 0
        if after == 0:
            return at <= until and not late
        return after < at <= until or (late and at <= after)

    time = driver_time(conn)
    workspace, ids = stored.workspace, stored.ids
    rows: list[tuple[Any, ...]] = []
    for p in data.people:
        for number, (name, properties, at) in enumerate(p.events):
            if not chosen(f"e{p.index}-{number}", at):
                continue
            moment = time(datetime.fromtimestamp(at, UTC))
            rows.append(
                (workspace, ids[p.index], f"e{p.index}-{number}", "track", name, f"u{p.index}",
                 None, driver_json(properties), None, None, moment, moment, None)
            )  # fmt: skip
    for number, (person, name, index, at, as_text) in enumerate(data.message_events):
        if not chosen(f"m{number}", at):
            continue
        moment = time(datetime.fromtimestamp(at, UTC))
        reference: Any = stored.message_ids[index]
        reference = str(reference) if as_text else reference
        properties = {"messageId": reference, "channel": "email"}
        rows.append(
            (workspace, ids[person], f"m{number}", "track", name, None, None,
             driver_json(properties), None, None, moment, moment, None)
        )  # fmt: skip
    random.Random(7).shuffle(rows)  # stored in no particular order
    bulk(conn, events, EVENT_COLUMNS, rows)


def _workspace(conn: Connection) -> int:
    from junction.store.workspaces import create_workspace

    return create_workspace(conn, "reference", NOW, SECRET).workspace.id


def _messages(conn: Connection, workspace: int, data: World, ids: dict[int, int]) -> dict[int, int]:
    """Campaigns, journeys and their runs, and the messages they sent; message ids by index."""
    keys: dict[str, int] = {f"contact:{person}": contact for person, contact in ids.items()}
    for key in ("black-friday", "newsletter-11"):
        keys["campaign:" + key] = conn.execute(
            campaigns.insert().values(
                workspace_id=workspace, key=key, status="completed", definition={},
                created_at=NOW, updated_at=NOW,
            )
        ).inserted_primary_key[0]  # type: ignore[index]  # fmt: skip
    journey_ids: dict[str, int] = {}
    for key in ("onboarding", "winback"):
        journey_ids[key] = conn.execute(
            journeys.insert().values(
                workspace_id=workspace, key=key, status="active", current_version=1,
                created_at=NOW, updated_at=NOW,
            )
        ).inserted_primary_key[0]  # type: ignore[index]  # fmt: skip
    time = driver_time(conn)
    now = time(NOW)
    bulk(
        conn,
        journey_runs,
        ("workspace_id", "journey_id", "version", "contact_id", "status", "state", "entered_at",
         "updated_at"),
        [(workspace, journey_ids[journey], 1, ids[person], "completed", "{}", now, now)
         for person, journey, _ in data.runs],
    )  # fmt: skip
    inserted = conn.scalars(select(journey_runs.c.id).order_by(journey_runs.c.id)).all()
    assert len(inserted) == len(data.runs)
    keys.update(("run:" + run, id_) for (_, _, run), id_ in zip(data.runs, inserted, strict=True))
    rows = [
        (workspace, ids[m.person], idempotency_key(m, keys), "email", "capture",
         f"p{m.person}@example.com", "marketing", "{}", "sent", 1, now, now, now)
        for m in data.messages
        if m.person in ids
    ]  # fmt: skip
    bulk(
        conn,
        messages,
        ("workspace_id", "contact_id", "idempotency_key", "channel", "provider", "to_address",
         "category", "content", "status", "attempts", "due_at", "created_at", "updated_at"),
        rows,
    )  # fmt: skip
    by_key = {
        row.idempotency_key: row.id
        for row in conn.execute(select(messages.c.id, messages.c.idempotency_key))
    }
    return {m.index: by_key[idempotency_key(m, keys)] for m in data.messages if m.person in ids}


# --- the reference ---------------------------------------------------------------------------


def look(values: Mapping[str, Any], name: str) -> Any:
    """docs/journeys.md: a dotted name is read as it is first, as a path only when there is
    no such top-level key."""
    if name in values:
        return values[name]
    current: Any = values
    for part in name.split("."):
        if not isinstance(current, dict) or part not in current:
            return MISSING
        current = current[part]
    return current


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def holds(op: str, actual: Any, expected: Any) -> bool:
    """One filter operator as docs/journeys.md has it: a missing value matches only ``ne``
    and ``exists: false``; values that do not compare do not match."""
    if op == "exists":
        return (actual is not MISSING) is (True if expected is None else bool(expected))
    if actual is MISSING:
        return op == "ne"
    if op == "eq":
        return bool(actual == expected)
    if op == "ne":
        return bool(actual != expected)
    if op == "in":
        return actual in expected
    if op == "contains":
        if isinstance(actual, str):
            return isinstance(expected, str) and expected in actual
        if isinstance(actual, list):
            return expected in actual
        if isinstance(actual, dict):
            return expected in actual
        return False
    comparable = (_number(actual) and _number(expected)) or (
        isinstance(actual, str) and isinstance(expected, str)
    )
    if not comparable:
        return False
    return bool(
        {
            "gt": actual > expected,
            "gte": actual >= expected,
            "lt": actual < expected,
            "lte": actual <= expected,
        }[op]
    )


def accepted(where: Mapping[str, Any], properties: Mapping[str, Any]) -> bool:
    for name, expected in where.items():
        actual = look(properties, name)
        if isinstance(expected, dict) and "op" in expected:
            if not holds(expected["op"], actual, expected.get("value")):
                return False
        elif not holds("eq", actual, expected):
            return False
    return True


UNITS = {"minutes": MINUTE, "hours": HOUR, "days": DAY, "weeks": 7 * DAY}


def seconds(period: Mapping[str, Any] | None) -> int | None:
    return None if period is None else period["amount"] * UNITS[period["unit"]]


def instant(text: str) -> int:
    """A bound written in a definition, in the two shapes the cases use."""
    if "T" in text:
        return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())
    return int(datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC).timestamp())


@dataclass
class Subject:
    """One person as the reference sees them: their traits, the instants their date traits
    denote, the channels of their active addresses, and every event with its origin."""

    contact_id: int
    person: Person
    channels: set[str]
    behaviour: list[tuple[str, Mapping[str, Any], int]]
    now: int = T  # what has happened by then counts

    def times(self, event: str, where: Mapping[str, Any]) -> list[int]:
        return sorted(
            t
            for name, p, t in self.behaviour
            if t <= self.now and name == event and accepted(where, p)
        )


def subjects(data: World, ids: Mapping[int, int]) -> list[Subject]:
    channels_of = {"email": {"email"}, "phone": {"sms", "voice", "whatsapp"}}
    found = []
    origin_events: dict[int, list[tuple[str, Mapping[str, Any], int]]] = defaultdict(list)
    for person, name, index, at, _ in data.message_events:
        kind, key, step = data.messages[index].origin
        properties: dict[str, Any] = {}
        if kind == "campaign":
            properties = {"campaign": key}
        elif kind == "journey":
            properties = {"journey": key, "step": step}
        origin_events[person].append((name, properties, at))
    for p in data.people:
        reach: set[str] = set()
        for kind, _, status in p.addresses:
            if status == "active":
                reach |= channels_of[kind]
        found.append(Subject(ids[p.index], p, reach, [*p.events, *origin_events[p.index]]))
    return found


def reference(node: Mapping[str, Any], s: Subject) -> bool:
    """Whether ``s`` is in the segment ``node``, from the documented rules."""
    if "all" in node:
        return all(reference(child, s) for child in node["all"])
    if "any" in node:
        return any(reference(child, s) for child in node["any"])
    if "not" in node:
        return not reference(node["not"], s)
    if "trait" in node:
        return _trait(node, s)
    if "performed" in node and "notFollowedBy" in node:
        firsts = s.times(node["performed"], node.get("where", {}))
        lookback = seconds(node.get("within"))
        if not firsts:
            return False
        latest = firsts[-1]
        if lookback is not None and latest < s.now - lookback:
            return False  # the latest one is not within the period
        then = node["notFollowedBy"]
        seconds_after = s.times(then["event"], then.get("where", {}))
        wait = seconds(then.get("within"))
        if wait is None:
            return not any(t >= latest for t in seconds_after)
        if any(latest <= t <= latest + wait for t in seconds_after):
            return False
        return latest + wait <= s.now  # counts once the wait has passed
    if "performed" in node:
        found = s.times(node["performed"], node.get("where", {}))
        window = seconds(node.get("within"))
        if window is not None:
            found = [t for t in found if s.now - window <= t]
        least: int = node.get("atLeast", 0 if "atMost" in node else 1)
        most: int = node.get("atMost", len(found))
        return least <= len(found) <= most
    if "lastPerformed" in node:
        found = s.times(node["lastPerformed"], node.get("where", {}))
        if not found:
            return bool(node.get("orNever", False))
        return s.now - found[-1] >= seconds(node["moreThan"])  # type: ignore[operator]
    if "engaged" in node:
        name = {"received": "message.sent", "opened": "message.opened"}.get(
            node["engaged"], "message.clicked"
        )
        if "campaign" in node:
            where: dict[str, Any] = {"campaign": node["campaign"]}
        else:
            where = {
                "journey": node["journey"],
                **({"step": node["step"]} if "step" in node else {}),
            }
        found = s.times(name, where)
        window = seconds(node.get("within"))
        return any(window is None or t >= s.now - window for t in found)
    if "reachable" in node:
        return node["reachable"] in s.channels
    if "bucket" in node:
        bucket = node["bucket"]
        digest = hashlib.sha256(f"{bucket.get('salt', '')}:{s.contact_id}".encode()).digest()
        low, high = int(bucket["from"]), int(bucket["to"])
        return low <= int.from_bytes(digest[:8], "big") % 100 < high
    raise AssertionError(f"no reference for {node}")


def _trait(node: Mapping[str, Any], s: Subject) -> bool:
    name, op = node["trait"], node.get("op", "eq")
    value: Any = node.get("value")
    if op == "between":
        actual = look(s.person.traits, name)
        return holds("gte", actual, value[0]) and holds("lte", actual, value[1])
    if op in ("before", "after", "withinLast", "moreThanAgo"):
        moment = s.person.moments.get(name)  # what the test wrote, not a parse of it
        if moment is None:
            return False
        if op == "before":
            return moment < instant(value)
        if op == "after":
            return moment > instant(value)
        span = seconds(value)
        assert span is not None
        if op == "withinLast":
            return 0 <= s.now - moment <= span
        return s.now - moment >= span
    return holds(op, look(s.person.traits, name), value)


# --- the cases -------------------------------------------------------------------------------

WEEK = {"amount": 7, "unit": "days"}
CASES: dict[str, dict[str, Any]] = {
    # traits
    "plan-eq": {"trait": "plan", "value": "pro"},
    "plan-ne": {"trait": "plan", "op": "ne", "value": "free"},
    "ltv-gt": {"trait": "lifetimeValue", "op": "gt", "value": 500},
    "ltv-gte": {"trait": "lifetimeValue", "op": "gte", "value": 500},
    "ltv-lt": {"trait": "lifetimeValue", "op": "lt", "value": 100},
    "ltv-lte": {"trait": "lifetimeValue", "op": "lte", "value": 100.0},
    "ltv-between": {"trait": "lifetimeValue", "op": "between", "value": [100, 500]},
    "country-in": {"trait": "country", "op": "in", "value": ["FR", "BE"]},
    "tags-contains": {"trait": "tags", "op": "contains", "value": "vip"},
    "verified-exists": {"trait": "phoneVerified", "op": "exists"},
    "verified-absent": {"trait": "phoneVerified", "op": "exists", "value": False},
    "company-size": {"trait": "company.size", "op": "gte", "value": 250},
    "signup-before": {"trait": "signupAt", "op": "before", "value": "2026-10-01"},
    "signup-after": {"trait": "signupAt", "op": "after", "value": "2026-11-01T12:00:00Z"},
    "signup-within": {
        "trait": "signupAt",
        "op": "withinLast",
        "value": {"amount": 30, "unit": "days"},
    },
    "signup-ago": {
        "trait": "signupAt",
        "op": "moreThanAgo",
        "value": {"amount": 45, "unit": "days"},
    },
    "birthday-before": {"trait": "birthday", "op": "before", "value": "1980-01-01"},
    "birthday-between": {
        "trait": "birthday",
        "op": "between",
        "value": ["1970-01-01", "1979-12-31"],
    },
    # performed
    "ordered": {"performed": "Order Completed"},
    "big-orders": {
        "performed": "Order Completed",
        "where": {"total": {"op": "gte", "value": 100}},
        "atLeast": 2,
    },
    "express-eur": {
        "performed": "Order Completed",
        "where": {"shipping.method": "express", "currency": {"op": "ne", "value": "USD"}},
        "within": {"amount": 30, "unit": "days"},
    },
    "few-sessions": {"performed": "Session Started", "atMost": 1},
    "carts-2-to-3-fortnight": {
        "performed": "Added to Cart",
        "atLeast": 2,
        "atMost": 3,
        "within": {"amount": 2, "unit": "weeks"},
    },
    "mobile-week": {
        "performed": "Session Started",
        "where": {"platform": {"op": "in", "value": ["ios", "android"]}},
        "within": WEEK,
    },
    "no-cart-week": {"performed": "Added to Cart", "atMost": 0, "within": WEEK},
    # performed, not followed by
    "cart-no-order": {"performed": "Added to Cart", "notFollowedBy": {"event": "Order Completed"}},
    "cart-week-no-order": {
        "performed": "Added to Cart",
        "notFollowedBy": {"event": "Order Completed"},
        "within": WEEK,
    },
    "cart-no-order-hour": {
        "performed": "Added to Cart",
        "notFollowedBy": {"event": "Order Completed", "within": {"amount": 1, "unit": "hours"}},
        "within": WEEK,
    },
    "cart-no-big-order-2d": {
        "performed": "Added to Cart",
        "notFollowedBy": {
            "event": "Order Completed",
            "where": {"total": {"op": "gte", "value": 50}},
            "within": {"amount": 2, "unit": "days"},
        },
    },
    "pricey-cart-no-eur-order": {
        "performed": "Added to Cart",
        "where": {"price": {"op": "gte", "value": 50}},
        "notFollowedBy": {"event": "Order Completed", "where": {"currency": "EUR"}},
        "within": {"amount": 14, "unit": "days"},
    },
    # last performed
    "lapsed": {"lastPerformed": "Session Started", "moreThan": {"amount": 30, "unit": "days"}},
    "lapsed-or-never": {
        "lastPerformed": "Session Started",
        "moreThan": {"amount": 30, "unit": "days"},
        "orNever": True,
    },
    "ios-lapsed": {
        "lastPerformed": "Session Started",
        "where": {"platform": "ios"},
        "moreThan": {"amount": 20, "unit": "days"},
    },
    # engaged (the first 5,000 people have messages)
    "bf-received": {"engaged": "received", "campaign": "black-friday"},
    "bf-opened-3d": {
        "engaged": "opened",
        "campaign": "black-friday",
        "within": {"amount": 3, "unit": "days"},
    },
    "onboarding-welcome-opened": {"engaged": "opened", "journey": "onboarding", "step": "welcome"},
    "winback-clicked-week": {"engaged": "clicked", "journey": "winback", "within": WEEK},
    # reachable, bucket
    "email": {"reachable": "email"},
    "sms": {"reachable": "sms"},
    "holdout": {"bucket": {"from": 0, "to": 10}},
    "salted": {"bucket": {"from": 25, "to": 60, "salt": "spring-test"}},
    # combinations
    "pro-buyers": {
        "all": [
            {"trait": "plan", "op": "in", "value": ["pro", "team"]},
            {"performed": "Order Completed", "within": {"amount": 30, "unit": "days"}},
        ]
    },
    "textable-or-lapsed": {
        "any": [
            {"reachable": "sms"},
            {"lastPerformed": "Session Started", "moreThan": {"amount": 45, "unit": "days"}},
        ]
    },
    "no-recent-cart": {
        "not": {"performed": "Added to Cart", "within": {"amount": 30, "unit": "days"}}
    },
    "abandoners-to-email": {
        "all": [
            {
                "performed": "Added to Cart",
                "notFollowedBy": {
                    "event": "Order Completed",
                    "within": {"amount": 1, "unit": "hours"},
                },
                "within": WEEK,
            },
            {"reachable": "email"},
            {"not": {"bucket": {"from": 0, "to": 10}}},
            {
                "any": [
                    {"trait": "lifetimeValue", "op": "gte", "value": 300},
                    {"performed": "Order Completed", "atLeast": 2},
                    {
                        "trait": "signupAt",
                        "op": "withinLast",
                        "value": {"amount": 14, "unit": "days"},
                    },
                ]
            },
        ]
    },
    "sessions-not-lately": {
        "all": [
            {"performed": "Session Started"},
            {"not": {"performed": "Session Started", "within": WEEK}},
        ]
    },
    "not-abandoned": {
        "not": {"performed": "Added to Cart", "notFollowedBy": {"event": "Order Completed"}}
    },
    # The order signal read within the week by one condition and over all time by the other.
    "not-abandoned-week": {
        "not": {
            "performed": "Added to Cart",
            "notFollowedBy": {"event": "Order Completed"},
            "within": WEEK,
        }
    },
    "abandoned-week-or-loyal": {
        "any": [
            {
                "performed": "Added to Cart",
                "notFollowedBy": {"event": "Order Completed"},
                "within": WEEK,
            },
            {"performed": "Order Completed", "atLeast": 3},
        ]
    },
    "behaviour-only": {
        "all": [
            {"performed": "Added to Cart", "within": {"amount": 30, "unit": "days"}},
            {"not": {"performed": "Order Completed", "within": {"amount": 10, "unit": "days"}}},
            {
                "any": [
                    {
                        "lastPerformed": "Session Started",
                        "moreThan": {"amount": 14, "unit": "days"},
                        "orNever": True,
                    },
                    {"engaged": "opened", "campaign": "black-friday"},
                    {"performed": "Viewed Product", "atLeast": 2},
                ]
            },
        ]
    },
    "carts-either": {
        "any": [
            {"performed": "Added to Cart", "within": {"amount": 3, "unit": "days"}},
            {"performed": "Order Completed", "where": {"total": {"op": "lt", "value": 20}}},
        ]
    },
}


# One segment per kind of condition, over all 50,000 people. Batch evaluation reads every
# candidate's facts (about 0.1 ms a person), so the rest of the cases run on fewer people.
KINDS = {
    "trait": "signup-within",
    "performed": "express-eur",
    "notFollowedBy": "cart-no-order-hour",
    "lastPerformed": "lapsed-or-never",
    "engaged": "onboarding-welcome-opened",
    "reachable": "sms",
    "bucket": "salted",
    "all/any/not": "abandoners-to-email",
}
FEWER = 4_000


def part(data: World, size: int) -> World:
    """The first ``size`` people of the world, with their messages."""
    return World(
        data.people[:size],
        data.messages,  # by index; only those to the people kept are inserted
        [e for e in data.message_events if e[0] < size],
        [r for r in data.runs if r[0] < size],
    )


def test_every_kind_of_condition_over_50000_people(database: Database) -> None:
    check(database, world(), {kind: CASES[key] for kind, key in KINDS.items()})


def test_every_operator_and_variant(database: Database) -> None:
    check(database, part(world(), FEWER), CASES)


def check(database: Database, data: World, cases: Mapping[str, Mapping[str, Any]]) -> None:
    """Save each case as a segment; its members (the rows ``save`` wrote, and ``audience``)
    are the people the reference puts in it."""
    with database.write() as conn:
        stored = insert_world(conn, data)
    workspace, ids = stored.workspace, stored.ids
    assert len(ids) == len(data.people)
    people = subjects(data, ids)
    problems: list[str] = []
    for label, where in cases.items():
        key = label.lower().replace("/", "-")
        expected = {s.contact_id for s in people if reference(where, s)}
        # Every case has members and non-members: it tells people apart.
        assert 0 < len(expected) < len(people), (label, len(expected))
        with database.write() as conn:
            saved = store.save(conn, workspace, {"key": key, "where": where}, NOW)
        with database.read() as conn:
            audience = set(store.audience(conn, workspace, key, NOW))
            kept = members_of(conn, key)
        for source, got in (("audience", audience), ("segment_members", kept)):
            if got != expected:
                extra, missing = _sample(got - expected, people), _sample(expected - got, people)
                problems.append(
                    f"{label} ({source}): {len(got)} members, {len(expected)} expected; "
                    f"not expected: {extra}; missing: {missing}"
                )
        if saved["members"] != len(expected):
            problems.append(f"{label}: save() counted {saved['members']}, not {len(expected)}")
    assert not problems, "\n".join(problems)


def members_of(conn: Connection, key: str) -> set[int]:
    """The segment's members as its rows say."""
    segment_id = conn.scalar(select(segments.c.id).where(segments.c.key == key))
    query = select(segment_members.c.contact_id).where(
        segment_members.c.segment_id == segment_id, segment_members.c.member
    )
    return set(conn.scalars(query))


LIVE = 2_000
LATE = 20  # one event in 20 arrives late


def on_time(data: World, held: int) -> World:
    """The world without the events ``insert_events`` holds back."""

    def late(message_id: str) -> bool:
        return zlib.crc32(message_id.encode()) % held == 0

    return World(
        [
            replace(p, events=[e for n, e in enumerate(p.events) if not late(f"e{p.index}-{n}")])
            for p in data.people
        ],
        data.messages,
        [e for n, e in enumerate(data.message_events) if not late(f"m{n}")],
        data.runs,
    )


def test_members_kept_current_as_events_arrive_and_time_passes(database: Database) -> None:
    """Saved eight days earlier over the events until then; the rest of the events arrive
    (in no particular order) and the clock reaches now: the members kept in real time are
    the reference's at each moment."""
    data = part(world(), LIVE)
    earlier = T - 8 * DAY
    then = datetime.fromtimestamp(earlier, UTC)
    with database.write() as conn:
        stored = insert_world(conn, data, until=earlier, held=LATE)
    people = subjects(data, stored.ids)
    # What had arrived by the save: not the events held back to come late.
    arrived = subjects(on_time(data, LATE), stored.ids)
    problems: list[str] = []
    for label, where in CASES.items():
        expected = {s.contact_id for s in arrived if reference(where, replace(s, now=earlier))}
        with database.write() as conn:
            store.save(conn, stored.workspace, {"key": label, "where": where}, then)
            got = members_of(conn, label)
        if got != expected:
            problems.append(
                f"{label} at save, 8 days earlier: {_difference(got, expected, people)}"
            )
    with database.write() as conn:
        insert_events(conn, data, stored, earlier, T, held=LATE)
    read = 0
    while True:
        with database.write() as conn:
            batch = store.on_events(conn, NOW, timedelta(0))
        if not batch:
            break
        read += batch
    assert read >= sum(1 for p in data.people for *_, at in p.events if at > earlier)
    while True:
        with database.write() as conn:
            if not store.fire_rechecks(conn, NOW):
                break
    with database.read() as conn:
        changes: dict[str, int] = dict(
            conn.execute(
                select(events.c.name, func.count())
                .where(events.c.name.in_(["segment.entered", "segment.exited"]))
                .group_by(events.c.name)
            ).all()
        )
        # People moved both ways while events arrived and time passed.
        assert changes.get("segment.entered", 0) > 100, changes
        assert changes.get("segment.exited", 0) > 100, changes
        for label, where in CASES.items():
            expected = {s.contact_id for s in people if reference(where, s)}
            got = members_of(conn, label)
            if got != expected:
                problems.append(f"{label} now: {_difference(got, expected, people)}")
            counted = conn.scalar(select(segments.c.members).where(segments.c.key == label))
            if counted != len(got):
                problems.append(
                    f"{label}: the segment counts {counted} members, its rows {len(got)}"
                )
    assert not problems, "\n".join(problems)


def _difference(got: set[int], expected: set[int], people: list[Subject]) -> str:
    extra, missing = _sample(got - expected, people), _sample(expected - got, people)
    return (
        f"{len(got)} members, {len(expected)} expected; not expected: {extra}; missing: {missing}"
    )


def _sample(ids: set[int], people: list[Subject]) -> str:
    by_id = {s.contact_id: s for s in people}
    shown = []
    for contact_id in sorted(ids)[:2]:
        s = by_id[contact_id]
        behaviour = sorted(s.behaviour, key=lambda e: e[2])
        shown.append(f"#{contact_id} traits={s.person.traits} events={behaviour}")
    return f"{len(ids)} {shown}"
