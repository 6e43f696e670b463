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
- a batch's template sends on email, SMS and voice are queued together (addresses, templates
  and providers looked up once); other sends take the single-send path of the API;
- a send a step cannot make (no address on that channel, no such template) is counted as
  ``failed`` on its step and the run goes on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Connection, and_, bindparam, select

from junction.domain.journeys import (
    EVENT_FOR_ENGAGEMENT,
    Entered,
    EventReceived,
    Finished,
    JourneyDefinition,
    ProfileUpdate,
    RunState,
    SendIntent,
    SetTimer,
    TimerFired,
    Trigger,
    WebhookCall,
    advance,
)
from junction.domain.sending import check_category
from junction.errors import Conflict, InvalidInput, NotFound
from junction.store import journeys as definitions
from junction.store import outbox, sends, templates
from junction.store.providers import provider_for
from junction.store.sql import insert_ignoring_conflicts
from junction.store.tables import (
    addresses,
    contacts,
    events,
    journey_cursor,
    journey_runs,
    journeys,
    messages,
)

log = structlog.get_logger(__name__)
FINAL = ("completed", "exited", "converted")
ENGAGEMENT_OF_EVENT = {name: kind for kind, name in EVENT_FOR_ENGAGEMENT.items()}
# Lifecycle events of a journey's own messages that no run reacts to (a webhook call's
# ``message.sent`` excepted: it carries the answer).
_NOTHING_FOR_RUNS = frozenset({"message.queued", "message.sent"})


@dataclass(frozen=True, slots=True)
class Run:
    id: int
    workspace_id: int
    journey_id: int
    version: int
    contact_id: int
    state: RunState


class _Work:
    """One batch's transaction: what it has read (definitions, contacts, runs' latest
    states) and what it will write (run states, counts), written once at the end."""

    def __init__(self, conn: Connection, now: datetime) -> None:
        self.conn = conn
        self.now = now
        self._definitions: dict[tuple[int, int], JourneyDefinition] = {}
        self._contacts: dict[int, tuple[str | None, dict[str, Any]]] = {}
        self.runs: dict[int, Run] = {}  # latest state of each run advanced in this batch
        self._writes: dict[int, dict[str, Any]] = {}
        self._counts: dict[tuple[int, str, str], int] = {}
        self._triggered: dict[tuple[int, str], list[Any]] = {}
        self.sends: list[_PendingSend] = []  # the simple ones, queued together at the end

    def definition(self, journey_id: int, version: int) -> JourneyDefinition:
        key = (journey_id, version)
        found = self._definitions.get(key)
        if found is None:
            found = self._definitions[key] = definitions.load(self.conn, journey_id, version)
        return found

    def prefetch(self, contact_ids: Iterable[int]) -> None:
        wanted = [c for c in set(contact_ids) if c not in self._contacts]
        for chunk in range(0, len(wanted), 900):  # SQLite's bound-parameter limit
            rows = self.conn.execute(
                select(
                    contacts.c.id, contacts.c.user_id, contacts.c.traits, contacts.c.timezone
                ).where(contacts.c.id.in_(wanted[chunk : chunk + 900]))
            )
            for row in rows:
                self._contacts[row.id] = (
                    row.user_id,
                    {**(row.traits or {}), "timezone": row.timezone},
                )

    def contact(self, contact_id: int) -> tuple[str | None, dict[str, Any]]:
        if contact_id not in self._contacts:
            self.prefetch([contact_id])
        return self._contacts.get(contact_id, (None, {}))

    def traits_changed(self, contact_id: int, values: dict[str, Any]) -> None:
        user_id, contact = self.contact(contact_id)
        self._contacts[contact_id] = (user_id, {**contact, **values})

    def triggered_by(self, workspace_id: int, name: str) -> list[Any]:
        """The active journeys an event enters people into (looked up once per batch)."""
        key = (workspace_id, name)
        found = self._triggered.get(key)
        if found is None:
            found = self._triggered[key] = list(
                self.conn.execute(
                    select(journeys).where(
                        journeys.c.workspace_id == workspace_id,
                        journeys.c.trigger_event == name,
                        journeys.c.status == definitions.ACTIVE,
                    )
                )
            )
        return found

    def count(self, journey_id: int, step: str, metric: str) -> None:
        key = (journey_id, step, metric)
        self._counts[key] = self._counts.get(key, 0) + 1

    def write(self, run: Run, state: RunState, wake_at: datetime | None) -> None:
        """The run's new state (and timer), written when the batch ends."""
        self.runs[run.id] = replace(run, state=state)
        self._writes[run.id] = {
            "new_status": state.status,
            "new_step": state.step,
            "new_state": state.to_dict(),
            "new_wake": wake_at,
        }

    def flush(self) -> None:
        if self.sends:
            for pending, outcome in zip(self.sends, _queue_together(self), strict=True):
                self.count(pending.run.journey_id, pending.intent.step, outcome)
            self.sends.clear()
        if self._writes:
            self.conn.execute(
                journey_runs.update()
                .where(journey_runs.c.id == bindparam("rid"))
                .values(
                    status=bindparam("new_status"),
                    step=bindparam("new_step"),
                    state=bindparam("new_state"),
                    wake_at=bindparam("new_wake"),
                    updated_at=self.now,
                ),
                [{"rid": rid, **values} for rid, values in self._writes.items()],
            )
            self._writes.clear()
        by_journey: dict[int, list[tuple[str, str]]] = {}
        for (journey_id, step, metric), amount in self._counts.items():
            by_journey.setdefault(journey_id, []).extend([(step, metric)] * amount)
        for journey_id, increments in by_journey.items():
            definitions.count(self.conn, journey_id, increments)
        self._counts.clear()


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
    work = _Work(conn, now)
    run_id = _enter(work, journey, contact_id, context, event)
    work.flush()
    return run_id


def _enter(
    work: _Work,
    journey: Any,
    contact_id: int,
    context: dict[str, Any],
    event: dict[str, Any] | None,
) -> int | None:
    conn, now = work.conn, work.now
    definition = work.definition(journey.id, journey.current_version)
    entry = definition.entry
    earlier = conn.execute(
        select(journey_runs.c.id, journey_runs.c.entered_at, journey_runs.c.status).where(
            journey_runs.c.journey_id == journey.id, journey_runs.c.contact_id == contact_id
        )
    ).all()
    statuses = [
        work.runs[row.id].state.status if row.id in work.runs else row.status for row in earlier
    ]
    if entry.mode == "once" and earlier:
        return None
    if entry.mode == "cooldown" and entry.cooldown is not None:
        since = now - entry.cooldown.delta()
        if any(row.entered_at > since for row in earlier):
            return None
    if sum(status not in FINAL for status in statuses) >= entry.max_concurrent:
        return None
    run_id = conn.execute(
        journey_runs.insert().values(
            workspace_id=journey.workspace_id,
            journey_id=journey.id,
            version=journey.current_version,
            contact_id=contact_id,
            status="active",
            step=None,
            state={},
            entered_at=now,
            updated_at=now,
        )
    ).inserted_primary_key[0]  # type: ignore[index]
    run = Run(run_id, journey.workspace_id, journey.id, journey.current_version, contact_id, None)  # type: ignore[arg-type]
    work.count(journey.id, "", "entered")
    _advance(work, run, definition, Entered(context=context, event=event))
    return int(run_id)


def _advance(work: _Work, run: Run, definition: JourneyDefinition, trigger: Trigger) -> bool:
    """Advance one run and carry out its effects; False when the trigger changed nothing."""
    conn, now = work.conn, work.now
    user_id, contact = work.contact(run.contact_id)
    state, effects = advance(definition, run.id, run.state, trigger, now, contact)
    if run.state is not None and state == run.state and not effects:
        return False
    journey = run.journey_id
    before = run.state.visits if run.state is not None else {}
    for step, visits in state.visits.items():
        for _ in range(visits - before.get(step, 0)):
            work.count(journey, step, "entered")
    for effect in effects:
        if isinstance(effect, SendIntent):
            if _simple(effect) and user_id is not None:
                work.sends.append(_PendingSend(run, effect, state.event))
            else:
                outcome = _send(conn, run, user_id, effect, state.event, now)
                work.count(journey, effect.step, outcome)
        elif isinstance(effect, WebhookCall):
            work.count(journey, effect.step, _call(conn, run, effect, now))
        elif isinstance(effect, ProfileUpdate):
            _update_profile(conn, run.contact_id, effect.set, now)
            work.traits_changed(run.contact_id, effect.set)
        elif isinstance(effect, Finished):
            work.count(journey, "", effect.status)
            work.count(journey, state.step or "", effect.status)
            if effect.status == "converted":
                for step in state.touched:
                    work.count(journey, step, "converted")
    wake_at = next((e.at for e in reversed(effects) if isinstance(e, SetTimer)), None)
    if state.status in FINAL or state.waiting is None:
        wake_at = None
    elif wake_at is None:
        wake_at = state.waiting.until
    work.write(run, state, wake_at)
    return True


# Channels with one address per person and no session window: their template sends from
# journeys are queued for a whole batch at once. Others (push to every device, chat windows,
# "best of") take the single-send path.
_BATCHED_CHANNELS = {"email": "email", "sms": "phone", "voice": "phone"}


@dataclass(frozen=True, slots=True)
class _PendingSend:
    run: Run
    intent: SendIntent
    event: dict[str, Any] | None


def _simple(intent: SendIntent) -> bool:
    return (
        intent.channel in _BATCHED_CHANNELS
        and intent.template is not None
        and not intent.channels
        and check_category(intent.category) == []
    )


def _queue_together(work: _Work) -> list[str]:
    """Queue the batch's simple sends in one go: addresses, templates and providers looked up
    once; ``sent`` or ``failed`` for each, in order."""
    conn, now = work.conn, work.now
    pending = work.sends
    ids = sorted({p.run.contact_id for p in pending})
    best: dict[tuple[int, str], str] = {}
    for chunk in range(0, len(ids), 900):
        rows = conn.execute(
            select(addresses.c.contact_id, addresses.c.kind, addresses.c.value)
            .where(
                addresses.c.contact_id.in_(ids[chunk : chunk + 900]),
                addresses.c.status == "active",
                addresses.c.kind.in_(["email", "phone"]),
            )
            .order_by(addresses.c.updated_at.desc(), addresses.c.id.desc())
        )
        for row in rows:
            best.setdefault((row.contact_id, row.kind), row.value)
    versions: dict[tuple[int, str], Any] = {}
    providers: dict[tuple[int, str], str] = {}
    intents: list[outbox.Intent] = []
    outcomes: list[str] = []
    for item in pending:
        run, intent = item.run, item.intent
        channel = str(intent.channel)
        address = best.get((run.contact_id, _BATCHED_CHANNELS[channel]))
        template_key = (run.workspace_id, str(intent.template))
        if template_key not in versions:
            try:
                version = templates.current_version(conn, *template_key)
                versions[template_key] = templates.load(conn, *template_key, version)
            except NotFound:
                versions[template_key] = None
        compiled = versions[template_key]
        if address is None or compiled is None:
            outcomes.append("failed")
            continue
        if compiled.block(channel, None) is None:  # only some locales have it: check fully
            user_id = work.contact(run.contact_id)[0]
            outcomes.append(_send(conn, run, user_id, intent, item.event, now))
            continue
        if (run.workspace_id, channel) not in providers:
            providers[(run.workspace_id, channel)] = provider_for(conn, run.workspace_id, channel)
        content: dict[str, Any] = {
            "templateKey": intent.template,
            "templateVersion": compiled.version,
        }
        if intent.data:
            content["data"] = intent.data
        if item.event:
            content["event"] = item.event
        intents.append(
            outbox.Intent(
                workspace_id=run.workspace_id,
                idempotency_key=intent.key,
                channel=channel,
                provider=providers[(run.workspace_id, channel)],
                to_address=address,
                content=content,
                contact_id=run.contact_id,
                category=intent.category,
            )
        )
        outcomes.append("sent")
    outbox.enqueue(conn, intents, now)
    return outcomes


def _send(
    conn: Connection,
    run: Run,
    user_id: str | None,
    intent: SendIntent,
    event: dict[str, Any] | None,
    now: datetime,
) -> str:
    if user_id is None:
        return "failed"  # an anonymous contact has no one to send to yet
    request = sends.SendRequest(
        channel=intent.channel or (intent.channels or ("email",))[0],
        to={"userId": user_id},
        content=intent.content,
        template=intent.template,
        data=intent.data or None,
        event=event,
        category=intent.category,
        channels=tuple(intent.channels or ()),
    )
    try:
        with conn.begin_nested():  # a refused send writes nothing, and the run goes on
            sends.queue(conn, run.workspace_id, request, intent.key, now)
    except InvalidInput as error:
        log.info("journey send not made", run=run.id, step=intent.step, reason=error.message)
        return "failed"
    return "sent"


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


def _locked_runs(work: _Work, condition: Any, limit: int | None = None) -> list[Run]:
    """Runs, locked on PostgreSQL; those this batch has already moved, at their new state
    (their rows are written when the batch ends)."""
    query = select(journey_runs).where(condition).order_by(journey_runs.c.id)
    if limit is not None:
        query = query.limit(limit)
    if work.conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=limit is not None)
    return [
        work.runs.get(row.id)
        or Run(
            row.id,
            row.workspace_id,
            row.journey_id,
            row.version,
            row.contact_id,
            RunState.from_dict(row.state),
        )
        for row in work.conn.execute(query)
    ]


def fire_timers(conn: Connection, now: datetime, limit: int = 500) -> int:
    """Advance runs whose timer is due; returns how many were claimed."""
    work = _Work(conn, now)
    due = _locked_runs(
        work,
        and_(journey_runs.c.wake_at <= now, journey_runs.c.status.not_in(FINAL)),
        limit,
    )
    work.prefetch(run.contact_id for run in due)
    stale = []
    for run in due:
        definition = work.definition(run.journey_id, run.version)
        if not _advance(work, run, definition, TimerFired(at=now)):
            stale.append(run.id)
    if stale:  # clear their timers, so they are not claimed again and again
        conn.execute(journey_runs.update().where(journey_runs.c.id.in_(stale)).values(wake_at=None))
    work.flush()
    return len(due)


def due_schedules(conn: Connection, now: datetime) -> bool:
    return (
        conn.execute(select(journeys.c.id).where(journeys.c.next_fire_at <= now).limit(1)).first()
        is not None
    )


def fire_schedules(conn: Connection, now: datetime) -> int:
    """Enter the audience of every scheduled journey that is due; returns runs entered.

    A firing missed while nothing ran is not made up for: the next one is the next after now.
    """
    query = select(journeys).where(
        journeys.c.next_fire_at <= now, journeys.c.status == definitions.ACTIVE
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    entered = 0
    work = _Work(conn, now)
    for journey in conn.execute(query).all():
        definition = work.definition(journey.id, journey.current_version)
        context = {"scheduledAt": journey.next_fire_at.isoformat()}
        audience = conn.execute(
            select(contacts.c.id)
            .where(contacts.c.workspace_id == journey.workspace_id, contacts.c.user_id.isnot(None))
            .order_by(contacts.c.id)
        ).scalars()
        audience_ids = list(audience)
        work.prefetch(audience_ids)
        for contact_id in audience_ids:
            entered += _enter(work, journey, contact_id, context, None) is not None
        conn.execute(
            journeys.update()
            .where(journeys.c.id == journey.id)
            .values(next_fire_at=definitions.next_fire(definition, now))
        )
    work.flush()
    return entered


def read_cursor(conn: Connection) -> int:
    found = conn.execute(select(journey_cursor.c.last_event_id)).scalar_one_or_none()
    return int(found or 0)


def pending_events(conn: Connection, now: datetime, grace: timedelta) -> bool:
    return (
        conn.execute(
            select(events.c.id)
            .where(events.c.id > read_cursor(conn), events.c.received_at <= now - grace)
            .limit(1)
        ).first()
        is not None
    )


def due_timers(conn: Connection, now: datetime) -> bool:
    return (
        conn.execute(
            select(journey_runs.c.id)
            .where(journey_runs.c.wake_at <= now, journey_runs.c.status.not_in(FINAL))
            .limit(1)
        ).first()
        is not None
    )


def on_events(conn: Connection, now: datetime, grace: timedelta, limit: int = 500) -> int:
    """Match the next stored events to journeys and runs; returns how many were read."""
    cursor = read_cursor(conn)
    batch = conn.execute(
        select(
            events.c.id,
            events.c.workspace_id,
            events.c.contact_id,
            events.c.name,
            events.c.properties,
            events.c.received_at,
        )
        .where(events.c.id > cursor)
        .order_by(events.c.id)
        .limit(limit)
    ).all()
    read = 0
    work = _Work(conn, now)
    work.prefetch(event.contact_id for event in batch if event.contact_id is not None)
    for event in batch:
        if event.received_at > now - grace:
            break  # maybe not every earlier event is visible yet: try again shortly
        read += 1
        cursor = event.id
        if event.contact_id is None or not event.name:
            continue
        _route_event(work, event)
    work.flush()
    if read:
        _move_cursor(conn, cursor)
    return read


def _route_event(work: _Work, event: Any) -> None:
    conn = work.conn
    properties = dict(event.properties or {})
    engagement = ENGAGEMENT_OF_EVENT.get(event.name)
    if event.name.startswith("message."):
        if event.name in _NOTHING_FOR_RUNS and properties.get("channel") != "webhook":
            return  # a message queued or handed over: no journey waits on that
        # About a message: only the run that sent it cares.
        owner = _message_owner(conn, properties.get("messageId"))
        if owner is None:
            return
        run_id, message_key = owner
        runs = _locked_runs(
            work, and_(journey_runs.c.id == run_id, journey_runs.c.status.not_in(FINAL))
        )
        if event.name == "message.sent":
            for run in runs:
                _keep_webhook_answer(work, run, properties.get("messageId"), message_key)
            return
        trigger = EventReceived(
            name=event.name, properties=properties, message_key=message_key, engagement=engagement
        )
        for run in runs:
            _advance(work, run, work.definition(run.journey_id, run.version), trigger)
        return
    received = EventReceived(
        name=event.name, properties=properties, message_key=None, engagement=None
    )
    for run in _locked_runs(
        work,
        and_(
            journey_runs.c.contact_id == event.contact_id,
            journey_runs.c.status.not_in(FINAL),
        ),
    ):
        if run.state.final:
            continue  # finished earlier in this batch
        _advance(work, run, work.definition(run.journey_id, run.version), received)
    for journey in work.triggered_by(event.workspace_id, event.name):
        definition = work.definition(journey.id, journey.current_version)
        if definition.trigger.accepts(event.name, properties):
            _enter(
                work,
                journey,
                event.contact_id,
                {},
                {"name": event.name, "properties": properties},
            )


def _keep_webhook_answer(work: _Work, run: Run, message_id: Any, message_key: str) -> None:
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


def _message_owner(conn: Connection, message_id: Any) -> tuple[int, str] | None:
    if not isinstance(message_id, int):
        return None
    key = conn.execute(
        select(messages.c.idempotency_key).where(messages.c.id == message_id)
    ).scalar_one_or_none()
    if key is None or not key.startswith("journey:"):
        return None
    parts = key.split(":")
    if len(parts) < 4 or not parts[1].isdigit():
        return None
    return int(parts[1]), ":".join(parts[:4])


def _move_cursor(conn: Connection, to: int) -> None:
    updated = conn.execute(journey_cursor.update().values(last_event_id=to))
    if updated.rowcount == 0:
        insert_ignoring_conflicts(
            conn, journey_cursor, [{"id": 1, "last_event_id": to}], on=("id",)
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
