"""Segments in the database: definitions, the aggregates they are decided from, memberships.

- Saving a segment registers the signals it watches; a signal that is new (or must now keep
  its times further back) has its aggregates rebuilt from the stored events once. Then the
  whole segment is evaluated (batch): memberships are written, no membership events.
- As events arrive (``on_events``, a cursor over the events table like the journey engine's)
  each event adds to the aggregates of the signals it matches, and the segments that watch
  those signals (all of them, for a change of traits) are decided again for that person.
- Time alone moves people in and out (windows pass): a membership row keeps the earliest time
  its answer may change (``recheck_at``); ``fire_rechecks`` decides those again when due.
- Every change of membership after the first evaluation is an event on the person,
  ``segment.entered`` / ``segment.exited`` with ``{"segment": key}``: journeys can start on it.
- A person with no row is not a member.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, Select, bindparam, delete, func, select, tuple_, update

from junction.domain.segments import (
    CONDITION_TAGS,
    Aggregate,
    Compiled,
    Facts,
    SegmentDefinition,
    Signal,
    Verdict,
    fold,
)
from junction.domain.segments import parse as parse_definition
from junction.domain.sending import CHANNEL_ADDRESS
from junction.errors import Conflict, NotFound
from junction.store.definitions import validated
from junction.store.ingest import EVENT_COLUMNS
from junction.store.raw import Raw
from junction.store.segment_sql import members_query
from junction.store.sql import driver_json, driver_time, insert_ignoring_conflicts, insert_rows_fast
from junction.store.tables import (
    addresses,
    campaigns,
    contacts,
    events,
    journey_runs,
    journeys,
    messages,
    segment_cursor,
    segment_members,
    segment_signals,
    segments,
    signals,
)

ACTIVE = "active"
ARCHIVED = "archived"
ENTERED = "segment.entered"
EXITED = "segment.exited"
_CHUNK = 900  # ids per IN (...): under SQLite's default variable limit
# Address kinds back to the channels they reach.
_CHANNELS_OF_KIND: dict[str, list[str]] = defaultdict(list)
for _channel, _kind in CHANNEL_ADDRESS.items():
    if _kind is not None:
        _CHANNELS_OF_KIND[str(_kind)].append(_channel)


# --- definitions ---------------------------------------------------------------------------


def parse(raw: Any) -> SegmentDefinition:
    return validated(SegmentDefinition, raw, "segment", _field)


def _field(location: Sequence[Any]) -> str:
    """The field's path without pydantic's union tags: ``where.all.0.within``."""
    kept: list[str] = []
    previous: Any = None
    for part in location:
        tag = part in CONDITION_TAGS and (previous in ("where", "not") or isinstance(previous, int))
        if not tag:
            kept.append(str(part))
        previous = part
    return ".".join(kept)


_compiled: dict[bytes, Compiled] = {}


def compiled(definition: Any) -> Compiled:
    """The segment's rule, compiled once per definition (keyed by content: several
    databases may live in one process)."""
    key = orjson.dumps(definition, option=orjson.OPT_SORT_KEYS)
    if key not in _compiled:
        if len(_compiled) > 1000:
            _compiled.clear()
        _compiled[key] = parse_definition(definition).compile()
    return _compiled[key]


def save(conn: Connection, workspace_id: int, raw: Any, now: datetime) -> dict[str, Any]:
    """Create or change a segment, and evaluate it: 201-style ``created`` when a new version
    was made; an unchanged definition writes nothing."""
    definition = parse(raw)
    stored = definition.model_dump(mode="json", by_alias=True, exclude_none=True)
    digest = hashlib.sha256(orjson.dumps(stored, option=orjson.OPT_SORT_KEYS)).hexdigest()
    row = conn.execute(
        select(segments).where(
            segments.c.workspace_id == workspace_id, segments.c.key == definition.key
        )
    ).first()
    if row is not None and row.digest == digest and row.status == ACTIVE:
        return _summary(row.key, row.name, row.version, row.members, created=False)
    if row is None:
        segment_id = conn.execute(
            segments.insert().values(
                workspace_id=workspace_id,
                key=definition.key,
                name=definition.name,
                status=ACTIVE,
                version=1,
                definition=stored,
                digest=digest,
                members=0,
                created_at=now,
                updated_at=now,
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        version = 1
    else:
        segment_id, version = row.id, row.version + 1
        conn.execute(
            segments.update()
            .where(segments.c.id == row.id)
            .values(
                name=definition.name,
                status=ACTIVE,
                version=version,
                definition=stored,
                digest=digest,
                updated_at=now,
            )
        )
    rule = compiled(stored)
    watch(conn, workspace_id, rule.signals.values(), now)
    members = evaluate(conn, workspace_id, segment_id, rule, now)
    return _summary(definition.key, definition.name, version, members, created=True)


def _summary(
    key: str, name: str | None, version: int, members: int, *, created: bool
) -> dict[str, Any]:
    return {"key": key, "name": name, "version": version, "members": members, "created": created}


def watch(conn: Connection, workspace_id: int, wanted: Iterable[Signal], now: datetime) -> None:
    """Register signals; rebuild the aggregates of those new or needing more history."""
    wanted = list(wanted)
    # Events past the cursor are folded by ``on_events``: a rebuild stops at it, so no event
    # is counted twice.
    upto = read_cursor(conn)
    known = {
        row.key: row.keep_seconds
        for row in conn.execute(
            select(signals.c.key, signals.c.keep_seconds).where(
                signals.c.workspace_id == workspace_id,
                signals.c.key.in_([s.key for s in wanted]),
            )
        )
    }
    rebuilt = False
    for signal in wanted:
        if signal.key in known and known[signal.key] >= signal.keep_seconds:
            continue
        rebuilt = True
        if signal.key in known:
            conn.execute(
                signals.update()
                .where(signals.c.workspace_id == workspace_id, signals.c.key == signal.key)
                .values(keep_seconds=int(signal.keep_seconds))
            )
        else:
            conn.execute(
                signals.insert().values(
                    workspace_id=workspace_id,
                    key=signal.key,
                    event=signal.event,
                    filter=dict(signal.where),
                    keep_seconds=int(signal.keep_seconds),
                    created_at=now,
                )
            )
        rebuild_signal(conn, workspace_id, signal, now, upto)
    if rebuilt and conn.dialect.name == "sqlite":
        # Statistics after a bulk change: without them SQLite probes a person's other
        # signals through the primary key and reads each table row besides, not through the
        # covering index (the audience query, measured at 1,000,000 people: a third faster).
        # PostgreSQL analyses on its own.
        conn.exec_driver_sql("ANALYZE segment_signals")


def rebuild_signal(
    conn: Connection, workspace_id: int, signal: Signal, now: datetime, upto: int
) -> int:
    """Recompute every person's aggregate of one signal from the stored events up to id
    ``upto``; returns how many people have one."""
    conn.execute(
        delete(segment_signals).where(
            segment_signals.c.workspace_id == workspace_id, segment_signals.c.signal == signal.key
        )
    )
    rows = conn.execute(
        select(events.c.contact_id, events.c.timestamp, events.c.properties)
        .where(
            events.c.workspace_id == workspace_id,
            events.c.name == signal.event,
            events.c.contact_id.is_not(None),
            events.c.id <= upto,
        )
        .execution_options(yield_per=10_000)
    )
    times: dict[int, list[float]] = defaultdict(list)
    batch: list[Any] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= 10_000:
            _collect(conn, workspace_id, signal, batch, times)
            batch = []
    _collect(conn, workspace_id, signal, batch, times)
    clock = now.timestamp()
    folded = {
        contact_id: fold(None, found, signal.keep_seconds, clock)
        for contact_id, found in times.items()
    }
    _write_aggregates(conn, workspace_id, signal.key, folded, existing=set())
    return len(folded)


def _collect(
    conn: Connection,
    workspace_id: int,
    signal: Signal,
    rows: Sequence[Any],
    times: dict[int, list[float]],
) -> None:
    origins = _origins(conn, [row.properties for row in rows]) if _about_messages(signal) else {}
    for row in rows:
        properties = _with_origin(row.properties or {}, origins, workspace_id)
        if signal.accepts(signal.event, properties):
            times[row.contact_id].append(row.timestamp.timestamp())


def _about_messages(signal: Signal) -> bool:
    return signal.event.startswith("message.")


# --- where messages came from --------------------------------------------------------------


def _origins(conn: Connection, properties: Iterable[Any]) -> dict[int, tuple[int, dict[str, Any]]]:
    """For message events: the workspace of each message, and the campaign, or the journey
    and step, that sent it (from its idempotency key: ``campaign:{id}:{contact}``,
    ``journey:{run}:{step}:{visit}``)."""
    ids = sorted(
        {
            int(p["messageId"])
            for p in properties
            if p and isinstance(p.get("messageId"), int | str) and str(p["messageId"]).isdigit()
        }
    )
    keys: dict[int, str] = {}
    workspace_of: dict[int, int] = {}
    for chunk in _chunks(ids):
        for message in conn.execute(
            select(messages.c.id, messages.c.workspace_id, messages.c.idempotency_key).where(
                messages.c.id.in_(chunk)
            )
        ):
            keys[message.id] = message.idempotency_key
            workspace_of[message.id] = message.workspace_id
    campaigns_by_id: dict[int, str] = {}
    runs: dict[int, str] = {}
    parsed: dict[int, tuple[str, int, str | None]] = {}
    for message_id, key in keys.items():
        parts = key.split(":")
        if len(parts) >= 3 and parts[0] == "campaign" and parts[1].isdigit():
            parsed[message_id] = ("campaign", int(parts[1]), None)
        elif len(parts) >= 3 and parts[0] == "journey" and parts[1].isdigit():
            parsed[message_id] = ("journey", int(parts[1]), parts[2])
    campaign_ids = sorted({ref for kind, ref, _ in parsed.values() if kind == "campaign"})
    run_ids = sorted({ref for kind, ref, _ in parsed.values() if kind == "journey"})
    for chunk in _chunks(campaign_ids):
        for row in conn.execute(
            select(campaigns.c.id, campaigns.c.key).where(campaigns.c.id.in_(chunk))
        ):
            campaigns_by_id[row.id] = row.key
    for chunk in _chunks(run_ids):
        for row in conn.execute(
            select(journey_runs.c.id, journeys.c.key)
            .join(journeys, journeys.c.id == journey_runs.c.journey_id)
            .where(journey_runs.c.id.in_(chunk))
        ):
            runs[row.id] = row.key
    origins: dict[int, tuple[int, dict[str, Any]]] = {}
    for message_id, (kind, ref, step) in parsed.items():
        workspace_id = workspace_of[message_id]
        if kind == "campaign" and ref in campaigns_by_id:
            origins[message_id] = (workspace_id, {"campaign": campaigns_by_id[ref]})
        elif kind == "journey" and ref in runs:
            origins[message_id] = (workspace_id, {"journey": runs[ref], "step": step})
    return origins


def _with_origin(
    properties: Mapping[str, Any],
    origins: Mapping[int, tuple[int, dict[str, Any]]],
    workspace_id: int,
) -> Mapping[str, Any]:
    """The event's properties with where its message came from — only for a message of
    the event's own workspace (a tracked event may name any id)."""
    message_id = properties.get("messageId")
    if not origins or message_id is None or not str(message_id).isdigit():
        return properties
    found = origins.get(int(message_id))
    if found is None or found[0] != workspace_id:
        return properties
    return {**properties, **found[1]}


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


# --- aggregates and facts ------------------------------------------------------------------


def _aggregate_of(row: Any) -> Aggregate:
    return Aggregate(
        row.count, row.first_at.timestamp(), row.last_at.timestamp(), tuple(row.recent or ())
    )


def _moment(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _write_aggregates(
    conn: Connection,
    workspace_id: int,
    signal_key: str,
    folded: Mapping[int, Aggregate | None],
    existing: set[int],
) -> None:
    time = driver_time(conn)
    inserts = []
    updates = []
    for contact_id, aggregate in folded.items():
        if aggregate is None:
            continue
        if contact_id in existing:
            updates.append(
                {
                    "c": contact_id,
                    "n": aggregate.count,
                    "first": _moment(aggregate.first_at),
                    "last": _moment(aggregate.last_at),
                    "kept": list(aggregate.recent),
                }
            )
        else:
            inserts.append(
                (
                    contact_id,
                    signal_key,
                    workspace_id,
                    aggregate.count,
                    time(_moment(aggregate.first_at)),
                    time(_moment(aggregate.last_at)),
                    driver_json(list(aggregate.recent)),
                )
            )
    insert_rows_fast(
        conn,
        segment_signals,
        ("contact_id", "signal", "workspace_id", "count", "first_at", "last_at", "recent"),
        inserts,
        on=("contact_id", "signal"),
    )
    if updates:
        conn.execute(
            update(segment_signals)
            .where(
                segment_signals.c.contact_id == bindparam("c"),
                segment_signals.c.signal == signal_key,
            )
            .values(
                count=bindparam("n"),
                first_at=bindparam("first"),
                last_at=bindparam("last"),
                recent=bindparam("kept"),
            ),
            updates,
        )


def facts_of(
    conn: Connection,
    workspace_id: int,
    contact_ids: Sequence[int],
    signal_keys: Iterable[str],
    *,
    traits: bool = True,
    reachable: bool = True,
) -> dict[int, Facts]:
    """What segments see of these people (those that exist); traits and reachable channels
    only when asked for (a rule that reads none needs none loaded)."""
    keys = sorted(set(signal_keys))
    found: dict[int, Any] = {}
    aggregates: dict[int, dict[str, Aggregate]] = defaultdict(dict)
    channels: dict[int, set[str]] = defaultdict(set)
    columns = (contacts.c.id, contacts.c.traits) if traits else (contacts.c.id,)
    for chunk in _chunks(sorted(set(contact_ids))):
        for row in conn.execute(
            select(*columns).where(
                contacts.c.workspace_id == workspace_id, contacts.c.id.in_(chunk)
            )
        ):
            found[row.id] = (row.traits or {}) if traits else {}
        if keys:
            for row in conn.execute(
                select(segment_signals).where(
                    segment_signals.c.contact_id.in_(chunk), segment_signals.c.signal.in_(keys)
                )
            ):
                aggregates[row.contact_id][row.signal] = _aggregate_of(row)
        if reachable:
            for row in conn.execute(
                select(addresses.c.contact_id, addresses.c.kind).where(
                    addresses.c.contact_id.in_(chunk), addresses.c.status == "active"
                )
            ):
                channels[row.contact_id].update(_CHANNELS_OF_KIND.get(row.kind, ()))
    return {
        contact_id: Facts(
            contact_id, person, aggregates.get(contact_id, {}), frozenset(channels[contact_id])
        )
        for contact_id, person in found.items()
    }


# --- evaluation ----------------------------------------------------------------------------


def candidates(conn: Connection, workspace_id: int, rule: Compiled, now: datetime) -> list[int]:
    """Everyone who could be a member: all contacts, or only those with a required signal."""
    if rule.requirement is None:
        query = select(contacts.c.id).where(contacts.c.workspace_id == workspace_id)
        return list(conn.scalars(query))
    found: set[int] = set()
    for key, window in rule.requirement.alternatives:
        query = select(segment_signals.c.contact_id).where(
            segment_signals.c.workspace_id == workspace_id, segment_signals.c.signal == key
        )
        if window is not None:
            query = query.where(segment_signals.c.last_at >= now - timedelta(seconds=window))
        found.update(conn.scalars(query))
    return sorted(found)


def _facts_for(
    conn: Connection, workspace_id: int, contact_ids: Sequence[int], rule: Compiled
) -> dict[int, Facts]:
    return facts_of(
        conn,
        workspace_id,
        contact_ids,
        rule.signals,
        traits=rule.needs_traits,
        reachable=rule.needs_reachable,
    )


def verdicts(
    conn: Connection,
    workspace_id: int,
    rule: Compiled,
    now: datetime,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[tuple[int, Verdict]]:
    """Batch evaluation: every possible member's verdict now."""
    people = candidates(conn, workspace_id, rule, now)
    done = 0
    for start in range(0, len(people), 5000):
        chunk = people[start : start + 5000]
        for contact_id, facts in _facts_for(conn, workspace_id, chunk, rule).items():
            yield contact_id, rule.evaluate(facts, now)
        done += len(chunk)
        if progress is not None:
            progress(done, len(people))


def evaluate(
    conn: Connection,
    workspace_id: int,
    segment_id: int,
    rule: Compiled,
    now: datetime,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Evaluate the whole segment now and replace its memberships (no membership events:
    this is a new or changed definition, not a change in the person); returns the count."""
    conn.execute(delete(segment_members).where(segment_members.c.segment_id == segment_id))
    time = driver_time(conn)
    rows: list[tuple[Any, ...]] = []
    members = 0
    for contact_id, verdict in verdicts(conn, workspace_id, rule, now, progress):
        members += verdict.member
        if verdict.member or verdict.recheck_at is not None:
            rows.append((segment_id, contact_id, verdict.member, time(now), _at(conn, verdict)))
        if len(rows) >= 10_000:
            _insert_members(conn, rows)
            rows = []
    _insert_members(conn, rows)
    conn.execute(
        segments.update()
        .where(segments.c.id == segment_id)
        .values(members=members, evaluated_at=now)
    )
    return members


def _at(conn: Connection, verdict: Verdict) -> Any:
    if verdict.recheck_at is None:
        return None
    return driver_time(conn)(_moment(verdict.recheck_at))


def _insert_members(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    insert_rows_fast(
        conn,
        segment_members,
        ("segment_id", "contact_id", "member", "since", "recheck_at"),
        rows,
        on=("segment_id", "contact_id"),
    )


@dataclass(frozen=True, slots=True)
class _Segment:
    id: int
    workspace_id: int
    key: str
    rule: Compiled


_SEGMENT_COLUMNS = (
    segments.c.id,
    segments.c.workspace_id,
    segments.c.key,
    segments.c.definition,
    segments.c.status,
)


def _active(conn: Connection, workspace_ids: Iterable[int]) -> dict[int, list[_Segment]]:
    found: dict[int, list[_Segment]] = defaultdict(list)
    ids = sorted(set(workspace_ids))
    if not ids:
        return found
    for row in conn.execute(
        select(*_SEGMENT_COLUMNS).where(
            segments.c.workspace_id.in_(ids), segments.c.status == ACTIVE
        )
    ):
        found[row.workspace_id].append(_segment_of(row))
    return found


def _segment_of(row: Any) -> _Segment:
    return _Segment(row.id, row.workspace_id, row.key, compiled(row.definition))


def decide(
    conn: Connection,
    segment: _Segment,
    contact_ids: Iterable[int],
    now: datetime,
    facts: Mapping[int, Facts] | None = None,
) -> tuple[int, int]:
    """Decide these people again (from ``facts`` when the caller loaded them), write what
    changed, and record a membership event for each change; returns (entered, exited)."""
    people = sorted(set(contact_ids))
    if not people:
        return 0, 0
    if facts is None:
        facts = _facts_for(conn, segment.workspace_id, people, segment.rule)
    current: dict[int, Any] = {}
    for chunk in _chunks(people):
        for row in conn.execute(
            select(segment_members).where(
                segment_members.c.segment_id == segment.id,
                segment_members.c.contact_id.in_(chunk),
            )
        ):
            current[row.contact_id] = row
    time = driver_time(conn)
    inserts: list[tuple[Any, ...]] = []
    changes: list[dict[str, Any]] = []
    gone: list[int] = []
    happened: list[tuple[int, str]] = []
    for contact_id in people:
        found = facts.get(contact_id)
        verdict = segment.rule.evaluate(found, now) if found is not None else Verdict(False, None)
        stored = current.get(contact_id)
        was = bool(stored is not None and stored.member)
        if verdict.member != was:
            happened.append((contact_id, ENTERED if verdict.member else EXITED))
        recheck = _moment(verdict.recheck_at) if verdict.recheck_at is not None else None
        if not verdict.member and recheck is None:
            if stored is not None:
                gone.append(contact_id)
        elif stored is None:
            inserts.append((segment.id, contact_id, verdict.member, time(now), time(recheck)))
        elif verdict.member != was or stored.recheck_at != recheck:
            changes.append(
                {
                    "c": contact_id,
                    "m": verdict.member,
                    "s": now if verdict.member != was else stored.since,
                    "r": recheck,
                }
            )
    _insert_members(conn, inserts)
    if changes:
        conn.execute(
            update(segment_members)
            .where(
                segment_members.c.segment_id == segment.id,
                segment_members.c.contact_id == bindparam("c"),
            )
            .values(member=bindparam("m"), since=bindparam("s"), recheck_at=bindparam("r")),
            changes,
        )
    for chunk in _chunks(gone):
        conn.execute(
            delete(segment_members).where(
                segment_members.c.segment_id == segment.id,
                segment_members.c.contact_id.in_(chunk),
            )
        )
    entered = sum(1 for _, name in happened if name == ENTERED)
    exited = len(happened) - entered
    if happened:
        conn.execute(
            segments.update()
            .where(segments.c.id == segment.id)
            .values(members=segments.c.members + entered - exited)
        )
        _record(conn, segment, happened, now)
    return entered, exited


def _record(
    conn: Connection, segment: _Segment, happened: Sequence[tuple[int, str]], now: datetime
) -> None:
    time = driver_time(conn)
    properties = driver_json({"segment": segment.key})
    rows = [
        (
            segment.workspace_id,
            contact_id,
            f"junction:segment:{uuid.uuid4().hex}",
            "track",
            name,
            None,
            None,
            properties,
            None,
            None,
            time(now),
            time(now),
            None,
        )
        for contact_id, name in happened
    ]
    insert_rows_fast(conn, events, EVENT_COLUMNS, rows, on=("workspace_id", "message_id"))


def preview(
    conn: Connection, workspace_id: int, raw: Any, now: datetime, sample: int = 20
) -> dict[str, Any]:
    """Who a definition would hold now, decided from the stored events directly (nothing
    saved, no aggregates used): the count and the first userIds. It reads every event of
    the signals it watches, so it is for sizing an audience, not for a hot path."""
    rule = parse(raw).compile()
    found: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    by_event: dict[str, list[Signal]] = defaultdict(list)
    for signal in rule.signals.values():
        by_event[signal.event].append(signal)
    if by_event:
        rows = conn.execute(
            select(events.c.contact_id, events.c.name, events.c.timestamp, events.c.properties)
            .where(
                events.c.workspace_id == workspace_id,
                events.c.name.in_(list(by_event)),
                events.c.contact_id.is_not(None),
            )
            .execution_options(yield_per=10_000)
        ).all()
        messages_about = [r.properties for r in rows if r.name.startswith("message.")]
        origins = _origins(conn, messages_about) if messages_about else {}
        for row in rows:
            properties = _with_origin(row.properties or {}, origins, workspace_id)
            for signal in by_event[row.name]:
                if signal.accepts(row.name, properties):
                    found[signal.key][row.contact_id].append(row.timestamp.timestamp())
    clock = now.timestamp()
    people = sorted(
        {contact for per_person in found.values() for contact in per_person}
        if rule.requirement is not None
        else conn.scalars(select(contacts.c.id).where(contacts.c.workspace_id == workspace_id))
    )
    members: list[int] = []
    for chunk in _chunks(people):
        for contact_id, facts in facts_of(
            conn, workspace_id, chunk, (), traits=rule.needs_traits, reachable=rule.needs_reachable
        ).items():
            signals_now = {
                key: folded
                for key, per_person in found.items()
                if contact_id in per_person
                and (
                    folded := fold(
                        None, per_person[contact_id], rule.signals[key].keep_seconds, clock
                    )
                )
                is not None
            }
            person = Facts(contact_id, facts.traits, signals_now, facts.reachable)
            if rule.evaluate(person, now).member:
                members.append(contact_id)
    shown = conn.execute(
        select(contacts.c.user_id)
        .where(contacts.c.id.in_(members[:sample]))
        .order_by(contacts.c.id)
    ).scalars()
    return {"members": len(members), "sample": list(shown), "ids": members}


# --- real time -----------------------------------------------------------------------------


def read_cursor(conn: Connection) -> int:
    value = conn.scalar(select(segment_cursor.c.last_event_id).where(segment_cursor.c.id == 1))
    if value is None:
        # Segments start from the events there are when the first one is saved; saving
        # evaluates from the stored events already.
        value = conn.scalar(select(func.max(events.c.id))) or 0
        insert_ignoring_conflicts(
            conn, segment_cursor, [{"id": 1, "last_event_id": value}], on=("id",)
        )
    return int(value)


def pending_events(conn: Connection, now: datetime, grace: timedelta) -> bool:
    if conn.scalar(select(segments.c.id).where(segments.c.status == ACTIVE).limit(1)) is None:
        return False
    cursor = conn.scalar(select(segment_cursor.c.last_event_id).where(segment_cursor.c.id == 1))
    query = select(events.c.id).where(events.c.received_at <= now - grace)
    if cursor is not None:
        query = query.where(events.c.id > cursor)
    return conn.execute(query.limit(1)).first() is not None


def on_events(conn: Connection, now: datetime, grace: timedelta, limit: int = 2000) -> int:
    """Fold the next stored events into aggregates and decide the people they are about
    again; returns how many events were read."""
    cursor = read_cursor(conn)
    batch = conn.execute(
        select(
            events.c.id,
            events.c.workspace_id,
            events.c.contact_id,
            events.c.type,
            events.c.name,
            events.c.properties,
            events.c.timestamp,
            events.c.received_at,
        )
        .where(events.c.id > cursor)
        .order_by(events.c.id)
        .limit(limit)
    ).all()
    read = []
    for event in batch:
        if event.received_at > now - grace:
            break  # an earlier event may not be visible yet: try again shortly
        read.append(event)
    if not read:
        return 0
    active = _active(conn, {e.workspace_id for e in read})
    watched: dict[int, dict[str, Signal]] = {}
    for workspace_id, found in active.items():
        watched[workspace_id] = {}
        for segment in found:
            for key, signal in segment.rule.signals.items():
                # Segments share a signal: keep its times as far back as any needs.
                known = watched[workspace_id].get(key)
                if known is None or known.keep_seconds < signal.keep_seconds:
                    watched[workspace_id][key] = signal
    # A signal keeps at least the history it was last rebuilt with, so that saving again a
    # segment that needs it (archived or edited away meanwhile) finds it whole.
    for row in conn.execute(
        select(signals.c.workspace_id, signals.c.key, signals.c.keep_seconds).where(
            signals.c.workspace_id.in_(list(watched))
        )
    ):
        known = watched[row.workspace_id].get(row.key)
        if known is not None and known.keep_seconds < row.keep_seconds:
            watched[row.workspace_id][row.key] = dataclasses.replace(
                known, keep_seconds=float(row.keep_seconds)
            )
    about_messages = [e.properties for e in read if (e.name or "").startswith("message.")]
    origins = _origins(conn, about_messages) if about_messages else {}
    times: dict[tuple[int, str], list[float]] = defaultdict(list)
    retraited: dict[int, set[int]] = defaultdict(set)  # workspace → people whose traits changed
    for event in read:
        if event.contact_id is None or event.workspace_id not in watched:
            continue
        if event.type in ("identify", "alias", "group"):
            retraited[event.workspace_id].add(event.contact_id)
        if not event.name:
            continue
        properties = _with_origin(event.properties or {}, origins, event.workspace_id)
        for signal in watched[event.workspace_id].values():
            if signal.accepts(event.name, properties):
                times[(event.contact_id, signal.key)].append(event.timestamp.timestamp())
    touched = _fold_all(conn, read, watched, times, now)
    for workspace_id, found in active.items():
        people_of = {
            segment.id: set(retraited.get(workspace_id, ())).union(
                *(touched.get((workspace_id, key), ()) for key in segment.rule.signals)
            )
            for segment in found
        }
        # One read of the facts for all the workspace's segments.
        everyone = sorted(set().union(*people_of.values()))
        facts = facts_of(
            conn,
            workspace_id,
            everyone,
            watched[workspace_id],
            traits=any(segment.rule.needs_traits for segment in found),
            reachable=any(segment.rule.needs_reachable for segment in found),
        )
        for segment in found:
            decide(conn, segment, people_of[segment.id], now, facts)
    conn.execute(
        segment_cursor.update().where(segment_cursor.c.id == 1).values(last_event_id=read[-1].id)
    )
    return len(read)


def _fold_all(
    conn: Connection,
    read: Sequence[Any],
    watched: Mapping[int, Mapping[str, Signal]],
    times: Mapping[tuple[int, str], list[float]],
    now: datetime,
) -> dict[tuple[int, str], set[int]]:
    """Add the batch's times to the stored aggregates; the people touched per signal."""
    workspace_of = {e.contact_id: e.workspace_id for e in read if e.contact_id is not None}
    by_signal: dict[str, dict[int, list[float]]] = defaultdict(dict)
    for (contact_id, key), found in times.items():
        by_signal[key][contact_id] = found
    touched: dict[tuple[int, str], set[int]] = defaultdict(set)
    clock = now.timestamp()
    for key, per_person in by_signal.items():
        people = sorted(per_person)
        stored: dict[int, Aggregate] = {}
        for chunk in _chunks(people):
            for row in conn.execute(
                select(segment_signals).where(
                    segment_signals.c.signal == key, segment_signals.c.contact_id.in_(chunk)
                )
            ):
                stored[row.contact_id] = _aggregate_of(row)
        by_workspace: dict[int, dict[int, Aggregate | None]] = defaultdict(dict)
        for contact_id in people:
            workspace_id = workspace_of[contact_id]
            signal = watched[workspace_id][key]
            by_workspace[workspace_id][contact_id] = fold(
                stored.get(contact_id), per_person[contact_id], signal.keep_seconds, clock
            )
            touched[(workspace_id, key)].add(contact_id)
        for workspace_id, folded in by_workspace.items():
            _write_aggregates(conn, workspace_id, key, folded, existing=set(stored))
    return touched


def due_rechecks(conn: Connection, now: datetime) -> bool:
    query = select(segment_members.c.segment_id).where(segment_members.c.recheck_at <= now)
    return conn.execute(query.limit(1)).first() is not None


def fire_rechecks(conn: Connection, now: datetime, limit: int = 2000) -> int:
    """Decide again the people whose answer time may have changed; returns how many."""
    query = (
        select(segment_members.c.segment_id, segment_members.c.contact_id)
        .where(segment_members.c.recheck_at <= now)
        .order_by(segment_members.c.recheck_at)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    due = conn.execute(query).all()
    if not due:
        return 0
    by_segment: dict[int, list[int]] = defaultdict(list)
    for pair in due:
        by_segment[pair.segment_id].append(pair.contact_id)
    rows = conn.execute(select(*_SEGMENT_COLUMNS).where(segments.c.id.in_(list(by_segment)))).all()
    for row in rows:
        if row.status != ACTIVE:
            conn.execute(
                update(segment_members)
                .where(segment_members.c.segment_id == row.id)
                .values(recheck_at=None)
            )
            continue
        decide(conn, _segment_of(row), by_segment[row.id], now)
    # A verdict whose recheck time is not later (a clock at the very instant) must not
    # loop: anything still due now is pushed a second on.
    conn.execute(
        update(segment_members)
        .where(
            tuple_(segment_members.c.segment_id, segment_members.c.contact_id).in_(
                [(r.segment_id, r.contact_id) for r in due]
            ),
            segment_members.c.recheck_at <= now,
        )
        .values(recheck_at=now + timedelta(seconds=1))
    )
    return len(due)


# --- reading -------------------------------------------------------------------------------


def row_of(conn: Connection, workspace_id: int, key: str) -> Any:
    row = conn.execute(
        select(segments).where(segments.c.workspace_id == workspace_id, segments.c.key == key)
    ).first()
    if row is None:
        raise NotFound(f"no segment {key!r} in this workspace")
    return row


def get(conn: Connection, workspace_id: int, key: str) -> dict[str, Any]:
    row = row_of(conn, workspace_id, key)
    return {
        **_view(row),
        "definition": row.definition,
    }


def _view(row: Any) -> dict[str, Any]:
    return {
        "key": row.key,
        "name": row.name,
        "status": row.status,
        "version": row.version,
        "members": row.members,
        "evaluatedAt": row.evaluated_at.isoformat() if row.evaluated_at else None,
        "updatedAt": row.updated_at.isoformat(),
    }


def list_segments(conn: Connection, workspace_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(segments).where(segments.c.workspace_id == workspace_id).order_by(segments.c.key)
    )
    return [_view(row) for row in rows]


def members(
    conn: Connection, workspace_id: int, key: str, limit: int = 100, after: int = 0
) -> dict[str, Any]:
    """A page of members: their ids and userIds, in id order; ``next`` continues."""
    row = row_of(conn, workspace_id, key)
    page = conn.execute(
        select(contacts.c.id, contacts.c.user_id)
        .join(segment_members, segment_members.c.contact_id == contacts.c.id)
        .where(
            segment_members.c.segment_id == row.id,
            segment_members.c.member,
            contacts.c.id > after,
        )
        .order_by(contacts.c.id)
        .limit(limit)
    ).all()
    return {
        "members": [{"id": r.id, "userId": r.user_id} for r in page],
        "next": page[-1].id if len(page) == limit else None,
    }


def archive(conn: Connection, workspace_id: int, key: str, now: datetime) -> dict[str, Any]:
    row = row_of(conn, workspace_id, key)
    if row.status == ARCHIVED:
        raise Conflict(f"segment {key!r} is already archived")
    conn.execute(delete(segment_members).where(segment_members.c.segment_id == row.id))
    conn.execute(
        segments.update()
        .where(segments.c.id == row.id)
        .values(status=ARCHIVED, members=0, updated_at=now)
    )
    return {"key": key, "status": ARCHIVED}


def reevaluate(
    conn: Connection,
    workspace_id: int,
    key: str,
    now: datetime,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Evaluate the whole segment again now (batch)."""
    row = row_of(conn, workspace_id, key)
    if row.status != ACTIVE:
        raise Conflict(f"segment {key!r} is archived")
    rule = compiled(row.definition)
    count = evaluate(conn, workspace_id, row.id, rule, now, progress)
    return {"key": key, "members": count}


def _ids(conn: Connection, query: Select[Any]) -> list[int]:
    """The first column of ``query``'s rows. On SQLite straight from the driver: an audience
    is hundreds of thousands of rows, and SQLAlchemy's result rows cost a tenth of the query
    (its values are Junction's own — ids, signal digests, times — so they are written in)."""
    if conn.dialect.name != "sqlite":
        return list(conn.scalars(query))
    sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    return [row[0] for row in Raw(conn).rows(sql)]


def audience(conn: Connection, workspace_id: int, key: str | None, now: datetime) -> list[int]:
    """The contact ids in segment ``key`` now, ascending (everyone in the workspace when
    ``key`` is None), by a fresh batch evaluation; ``NotFound`` names an unknown segment."""
    if key is None:
        query = select(contacts.c.id).where(contacts.c.workspace_id == workspace_id)
        return list(conn.scalars(query.order_by(contacts.c.id)))
    row = conn.execute(
        select(segments.c.id, segments.c.version, segments.c.definition).where(
            segments.c.workspace_id == workspace_id,
            segments.c.key == key,
            segments.c.status == ACTIVE,
        )
    ).first()
    if row is None:
        raise NotFound(f"no segment {key!r} in this workspace")
    pushed = members_query(parse_definition(row.definition), workspace_id, now)
    if pushed is not None:  # the common behavioural rules: one query over the aggregates
        return sorted(_ids(conn, pushed))
    rule = compiled(row.definition)
    return sorted(c for c, verdict in verdicts(conn, workspace_id, rule, now) if verdict.member)
