"""Journey runs, durable: entering people, matching events to runs, firing timers, and
carrying out what each advance of the pure step function asks — in one transaction.

Rules kept here:
- an advance's new state, its timer (``wake_at``), the messages it sends, its profile updates
  and its counts commit together or not at all: a crash loses nothing and repeats nothing;
- a send's message key is ``journey:{run}:{step}:{visit}``, so a step repeated after a crash
  queues nothing twice (the outbox keeps one message per key);
- events reach runs in the order they were stored, through a cursor that commits with the
  advances it caused; an event finds its runs through the contact (an index), never a scan.
  On PostgreSQL, events younger than ``grace`` wait a moment: transactions commit out of id
  order, and the cursor must not pass an event that is not visible yet;
- a message event (``message.opened``…) goes to the run that sent the message, with the
  message's key, so "wait until the email is opened" knows which email; ``message.queued``
  and ``message.sent`` are not passed on (no step waits on them), but for a webhook call's
  ``message.sent``, which carries its answer;
- an entry obeys the journey's rules: once ever, once per cooldown, or every time, and at
  most ``maxConcurrent`` unfinished runs per person; a paused or draft journey enters nobody;
- a scheduled journey (cron, UTC) enters every contact with a user id when it fires, then
  waits for its next firing; firings missed while no worker ran are not made up for;
- due timers are claimed in batches, ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, like the
  outbox: two workers never advance one run for the same timer;
- a webhook step's JSON answer joins the run's context once the call is made, under the
  step's id; steps that run after that see it as ``{{ data.<step id> }}``;
- a batch is read and written as a batch (``junction.store.journey_batch``): its runs,
  message owners, contacts and earlier runs with one statement each; run states, counts and
  sends (``junction.store.journey_sends``) once, when it ends;
- a send a step cannot make (no address on that channel, no such template) is counted as
  ``failed`` on its step and the run goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from junction.domain.journeys import (
    EVENT_FOR_ENGAGEMENT,
    FINAL,
    Entered,
    EventReceived,
    Finished,
    JourneyDefinition,
    ProfileUpdate,
    SendIntent,
    SetTimer,
    TimerFired,
    Trigger,
    WebhookCall,
    advance,
)
from junction.errors import Conflict
from junction.store import journeys as definitions
from junction.store import outbox
from junction.store.journey_batch import RUN_COLUMNS, UNFINISHED, Batch, JourneyRef, Run
from junction.store.providers import provider_for
from junction.store.raw import Raw
from junction.store.tables import contacts, messages

ENGAGEMENT_OF_EVENT = {name: kind for kind, name in EVENT_FOR_ENGAGEMENT.items()}
# Lifecycle events of a journey's own messages that no run reacts to (a webhook call's
# ``message.sent`` excepted: it carries the answer).
_NOTHING_FOR_RUNS = frozenset({"message.queued", "message.sent"})


def enter(
    conn: Connection,
    journey: Any,
    contact_id: int,
    context: dict[str, Any],
    event: dict[str, Any] | None,
    now: datetime,
) -> int | None:
    """Enter one person into an active journey; the run's id, or None when its entry rules
    keep them out."""
    work = Batch(conn, now)
    run_id = _enter(
        work,
        JourneyRef(journey.id, journey.workspace_id, journey.current_version),
        contact_id,
        context,
        event,
    )
    work.flush()
    return run_id


def _enter(
    work: Batch,
    journey: JourneyRef,
    contact_id: int,
    context: dict[str, Any],
    event: dict[str, Any] | None,
) -> int | None:
    definition = work.definition(journey.id, journey.current_version)
    entry = definition.entry
    earlier = work.earlier(journey.id, contact_id)
    if entry.mode == "once" and earlier:
        return None
    if entry.mode == "cooldown" and entry.cooldown is not None:
        since = work.now - entry.cooldown.delta()
        if any(run.entered_at > since for run in earlier):
            return None
    if sum(work.status(run) not in FINAL for run in earlier) >= entry.max_concurrent:
        return None
    run = work.insert_run(journey, contact_id)
    work.count(journey.id, "", "entered")
    _advance(work, run, definition, Entered(context=context, event=event))
    return run.id


def _advance(work: Batch, run: Run, definition: JourneyDefinition, trigger: Trigger) -> bool:
    """Advance one run and carry out its effects; False when the trigger changed nothing."""
    old = run.state
    user_id, contact = work.contact(run.contact_id)
    state, effects = advance(definition, run.id, old, trigger, work.now, contact)
    if old is not None and not effects and (state is old or state == old):
        return False
    journey = run.journey_id
    counts = work.counts
    before = old.visits if old is not None else {}
    for step, visits in state.visits.items():
        gained = visits - before.get(step, 0)
        if gained > 0:
            key = (journey, step, "entered")
            counts[key] = counts.get(key, 0) + gained
    wake_at = None
    for effect in effects:
        if isinstance(effect, SendIntent):
            work.send(run, user_id, effect, state.event)
        elif isinstance(effect, SetTimer):
            wake_at = effect.at
        elif isinstance(effect, Finished):
            work.count(journey, "", effect.status)
            work.count(journey, state.step or "", effect.status)
            if effect.status == "converted":
                for step in state.touched:
                    work.count(journey, step, "converted")
        elif isinstance(effect, WebhookCall):
            work.count(journey, effect.step, _call(work.conn, run, effect, work.now))
        elif isinstance(effect, ProfileUpdate):
            _update_profile(work.conn, run.contact_id, effect.set, work.now)
            work.traits_changed(run.contact_id, effect.set)
    if state.status in FINAL or state.waiting is None:
        wake_at = None
    elif wake_at is None:
        wake_at = state.waiting.until
    work.write(run, state, wake_at)
    return True


def _call(conn: Connection, run: Run, call: WebhookCall, now: datetime) -> str:
    """Queue the signed call, on the contact: its lifecycle events (``message.sent``) come
    back to this run, with the answer."""
    outbox.enqueue(
        conn,
        [
            outbox.Intent(
                workspace_id=run.workspace_id,
                idempotency_key=call.key,
                channel="webhook",
                provider=provider_for(conn, run.workspace_id, "webhook"),
                to_address=call.url,
                content={"data": call.body or {}},
                contact_id=run.contact_id,
            )
        ],
        now,
    )
    return "called"


def _update_profile(
    conn: Connection, contact_id: int, values: dict[str, Any], now: datetime
) -> None:
    traits = conn.execute(
        select(contacts.c.traits).where(contacts.c.id == contact_id)
    ).scalar_one_or_none()
    conn.execute(
        contacts.update()
        .where(contacts.c.id == contact_id)
        .values(traits={**(traits or {}), **values}, updated_at=now)
    )


def fire_timers(conn: Connection, now: datetime, limit: int = 500) -> int:
    """Advance runs whose timer is due; returns how many were claimed."""
    work = Batch(conn, now)
    lock = " FOR UPDATE SKIP LOCKED" if work.raw.postgres else ""
    # In wake-up order, through the index: in id order SQLite walks the table from its
    # first row each batch, past every run already moved (quadratic with a crowd due).
    rows = work.raw.rows(
        f"SELECT {RUN_COLUMNS} FROM journey_runs WHERE wake_at <= ? AND {UNFINISHED} "
        f"ORDER BY wake_at, id LIMIT ?{lock}",
        (work.raw.time(now), limit),
    )
    due = work.known(rows)
    work.prefetch(run.contact_id for run in due)
    trigger = TimerFired(at=now)
    stale = [
        run.id
        for run in due
        if not _advance(work, run, work.definition(run.journey_id, run.version), trigger)
    ]
    # Clear their timers, so they are not claimed again and again.
    work.raw.many("UPDATE journey_runs SET wake_at = NULL WHERE id = ?", [(i,) for i in stale])
    work.flush()
    return len(due)


def due_schedules(conn: Connection, now: datetime) -> bool:
    raw = Raw(conn)
    found = raw.one("SELECT id FROM journeys WHERE next_fire_at <= ? LIMIT 1", (raw.time(now),))
    return found is not None


def fire_schedules(conn: Connection, now: datetime) -> int:
    """Enter the audience of every scheduled journey that is due; returns runs entered.

    A firing missed while nothing ran is not made up for: the next one is the next after now.
    """
    work = Batch(conn, now)
    raw = work.raw
    lock = " FOR UPDATE SKIP LOCKED" if raw.postgres else ""
    due = raw.rows(
        "SELECT id, workspace_id, current_version, next_fire_at FROM journeys "
        f"WHERE next_fire_at <= ? AND status = ?{lock}",
        (raw.time(now), definitions.ACTIVE),
    )
    entered = 0
    for journey_id, workspace_id, version, next_fire_at in due:
        journey = JourneyRef(journey_id, workspace_id, version)
        definition = work.definition(journey_id, version)
        fired = raw.read_time(next_fire_at)
        assert fired is not None
        context = {"scheduledAt": fired.isoformat()}
        audience = [
            row[0]
            for row in raw.rows(
                "SELECT id FROM contacts WHERE workspace_id = ? AND user_id IS NOT NULL "
                "ORDER BY id",
                (workspace_id,),
            )
        ]
        work.prefetch(audience)
        work.load_earlier(journey_id, audience)
        for contact_id in audience:
            entered += _enter(work, journey, contact_id, context, None) is not None
        raw.run(
            "UPDATE journeys SET next_fire_at = ? WHERE id = ?",
            (raw.time(definitions.next_fire(definition, now)), journey_id),
        )
    work.flush()
    return entered


def read_cursor(conn: Connection) -> int:
    return _read_cursor(Raw(conn))


def _read_cursor(raw: Raw) -> int:
    found = raw.one("SELECT last_event_id FROM journey_cursor")
    return int(found[0] or 0) if found is not None else 0


def pending_events(conn: Connection, now: datetime, grace: timedelta) -> bool:
    raw = Raw(conn)
    found = raw.one(
        "SELECT id FROM events WHERE id > ? AND received_at <= ? LIMIT 1",
        (_read_cursor(raw), raw.time(now - grace)),
    )
    return found is not None


def due_timers(conn: Connection, now: datetime) -> bool:
    raw = Raw(conn)
    found = raw.one(
        f"SELECT id FROM journey_runs WHERE wake_at <= ? AND {UNFINISHED} LIMIT 1",
        (raw.time(now),),
    )
    return found is not None


@dataclass(frozen=True, slots=True)
class _Event:
    id: int
    workspace_id: int
    contact_id: int
    name: str
    properties: dict[str, Any]


def on_events(conn: Connection, now: datetime, grace: timedelta, limit: int = 500) -> int:
    """Match the next stored events to journeys and runs; returns how many it matched, or 1
    when it only moved past events no run uses (0: nothing to read yet).

    The database skips the events no run uses (``_FOR_RUNS``): most are a journey's own
    ``message.queued`` and ``message.sent``, and reading them one by one cost more than
    the advances of the events around them."""
    work = Batch(conn, now)
    raw = work.raw
    cursor = _read_cursor(raw)
    # The last event stored, read first: on PostgreSQL the cursor must not pass an event
    # that commits while this batch reads.
    top = raw.one("SELECT max(id) FROM events")[0]
    if top is None or top <= cursor:
        return 0
    # Text in one fixed format on SQLite, aware datetimes on PostgreSQL: either compares.
    horizon = raw.time(now - grace)
    rows = raw.rows(
        "SELECT id, workspace_id, contact_id, name, properties, received_at FROM events "
        f"WHERE id > ? AND id <= ? AND (received_at > ? OR {_for_runs(raw)}) "
        "ORDER BY id LIMIT ?",
        (cursor, top, horizon, limit),
    )
    upto = rows[-1][0] if len(rows) == limit else top
    batch: list[_Event] = []
    for event_id, workspace_id, contact_id, name, properties, received_at in rows:
        if received_at > horizon:  # maybe not every earlier event is visible yet: stop there
            upto = raw.one(
                "SELECT max(id) FROM events WHERE id > ? AND id < ?", (cursor, event_id)
            )[0]
            break
        props = dict(raw.read_json(properties) or {})
        if name in _NOTHING_FOR_RUNS and props.get("channel") != "webhook":
            continue  # SQLite's test is looser (the text holds "webhook"): the exact one
        batch.append(_Event(event_id, workspace_id, contact_id, name, props))
    _route_events(work, batch)
    work.flush()
    if upto is None:
        return 0
    _move_cursor(raw, upto)
    return len(batch) or 1


def _for_runs(raw: Raw) -> str:
    """The events a run may use: a named event on a contact, but a journey's own message
    queued or handed over (no step waits on that), unless a webhook call's (it carries the
    answer). On SQLite, a message's whose text holds "webhook" (the channel is checked
    once read)."""
    names = ", ".join(f"'{name}'" for name in sorted(_NOTHING_FOR_RUNS))
    webhook = (
        "instr(properties, 'webhook') > 0" if raw.sqlite else "properties ->> 'channel' = 'webhook'"
    )
    return (
        "contact_id IS NOT NULL AND name IS NOT NULL AND name <> '' "
        f"AND (name NOT IN ({names}) OR {webhook})"
    )


def _route_events(work: Batch, batch: list[_Event]) -> None:
    """Read what the batch's events need — their runs, the runs that sent their messages,
    the journeys they start and their people — then route each, in order."""
    raw = work.raw
    about_messages = [e for e in batch if e.name.startswith("message.")]
    others = [e for e in batch if not e.name.startswith("message.")]
    owners = _message_owners(raw, [e.properties.get("messageId") for e in about_messages])
    work.load_runs(run_id for run_id, _ in owners.values())
    work.load_open_runs(e.contact_id for e in others)
    starting = _journeys_started_by(raw, {(e.workspace_id, e.name) for e in others})
    for journey in {j for journeys in starting.values() for j in journeys}:
        work.load_earlier(
            journey.id,
            (e.contact_id for e in others if journey in starting.get((e.workspace_id, e.name), [])),
        )
    work.prefetch(
        [e.contact_id for e in others]
        + [work.runs[run_id].contact_id for run_id, _ in owners.values() if run_id in work.runs]
    )
    for event in batch:
        if event.name.startswith("message."):
            owner = owners.get(event.properties.get("messageId"))  # type: ignore[arg-type]
            if owner is not None:
                _route_message_event(work, event, *owner)
            continue
        received = EventReceived(
            name=event.name, properties=event.properties, message_key=None, engagement=None
        )
        for run in work.open_runs(event.contact_id):
            if run.state.final:
                continue  # finished earlier in this batch
            _advance(work, run, work.definition(run.journey_id, run.version), received)
        for journey in starting.get((event.workspace_id, event.name), []):
            definition = work.definition(journey.id, journey.current_version)
            if definition.trigger.accepts(event.name, event.properties):
                _enter(
                    work,
                    journey,
                    event.contact_id,
                    {},
                    {"name": event.name, "properties": event.properties},
                )


def _route_message_event(work: Batch, event: _Event, run_id: int, message_key: str) -> None:
    """An event about a message: only the run that sent it cares."""
    run = work.runs.get(run_id)
    if run is None or run.state is None or run.state.final:
        return
    if event.name == "message.sent":
        _keep_webhook_answer(work, run, event.properties.get("messageId"), message_key)
        return
    trigger = EventReceived(
        name=event.name,
        properties=event.properties,
        message_key=message_key,
        engagement=ENGAGEMENT_OF_EVENT.get(event.name),
    )
    _advance(work, run, work.definition(run.journey_id, run.version), trigger)


def _journeys_started_by(
    raw: Raw, names: set[tuple[int, str]]
) -> dict[tuple[int, str], list[JourneyRef]]:
    """The active journeys each (workspace, event name) enters people into."""
    found: dict[tuple[int, str], list[JourneyRef]] = {}
    if not names:
        return found
    rows = raw.rows_in(
        "SELECT id, workspace_id, current_version, trigger_event FROM journeys "
        "WHERE status = ? AND trigger_event IN ({}) ORDER BY id",
        sorted({name for _, name in names}),
        before=(definitions.ACTIVE,),
    )
    for journey_id, workspace_id, version, name in rows:
        if (workspace_id, name) in names:
            found.setdefault((workspace_id, name), []).append(
                JourneyRef(journey_id, workspace_id, version)
            )
    return found


def _keep_webhook_answer(work: Batch, run: Run, message_id: Any, message_key: str) -> None:
    """A webhook step's JSON answer joins the run's context, as ``{{ data.<step id> }}``
    for the sends after it."""
    found = work.conn.execute(
        select(messages.c.channel, messages.c.details).where(messages.c.id == message_id)
    ).first()
    if found is None or found.channel != "webhook" or not found.details:
        return
    answer = found.details.get("response")
    if answer is None:
        return
    step = message_key.split(":")[2]
    state = replace(run.state, context={**run.state.context, step: answer})
    work.write(run, state, state.waiting.until if state.waiting is not None else None)


def _message_owners(raw: Raw, message_ids: list[Any]) -> dict[int, tuple[int, str]]:
    """(run id, message key) of each message a journey run sent, by message id."""
    wanted = sorted({i for i in message_ids if isinstance(i, int)})
    owners: dict[int, tuple[int, str]] = {}
    for message_id, key in raw.rows_in(
        "SELECT id, idempotency_key FROM messages WHERE id IN ({})", wanted
    ):
        if key is None or not key.startswith("journey:"):
            continue
        parts = key.split(":")
        if len(parts) < 4 or not parts[1].isdigit():
            continue
        owners[message_id] = (int(parts[1]), ":".join(parts[:4]))
    return owners


def _move_cursor(raw: Raw, to: int) -> None:
    if raw.run("UPDATE journey_cursor SET last_event_id = ?", (to,)) == 0:
        raw.run(
            "INSERT INTO journey_cursor (id, last_event_id) VALUES (1, ?) "
            "ON CONFLICT (id) DO NOTHING",
            (to,),
        )


def enter_by_api(
    conn: Connection,
    workspace_id: int,
    key: str,
    contact_id: int,
    context: dict[str, Any],
    now: datetime,
) -> int | None:
    journey = definitions.row_of(conn, workspace_id, key)
    if journey.status != definitions.ACTIVE:
        raise Conflict(f"journey {key!r} is {journey.status}; activate it to enter people")
    return enter(conn, journey, contact_id, context, None, now)
