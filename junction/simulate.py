"""The journey simulator: a journey run on a virtual clock against synthetic people, to see
what it would send, when, and to how many, before it goes live.

Everything real runs: the definition is saved and activated as ``junction apply`` would, the
people are identified and tracked through ``ingest``, the journey engine and the dispatcher
move runs and send through the capture provider (which sends nothing). Only the database is
a throwaway SQLite file, and the clock is virtual.

Rules kept here:
- the same inputs and seed give the same forecast, number for number: the people are drawn
  from ``random.Random(seed)``, and each message's open and click from a generator seeded
  with the seed and the message's id, so a scenario's draws do not shift when another
  assumption changes;
- the clock moves in steps of ``step_hours`` from hour 0 to the end of the horizon (both
  included); at each step the events that have happened by then are stored (with their own
  time), then the dispatcher drains (journeys advance, messages go out). Time is therefore
  as fine as the step: an open 2.5 hours after a send is seen at the third hourly step;
- entry: an event trigger is performed by everyone at hour 0 (with properties that satisfy
  its ``where`` where possible); an API trigger enters everyone at hour 0; a schedule fires
  on its cron (UTC) as the engine fires it, from a Monday 09:00 UTC start; a segment trigger
  is simulated as everyone entering at hour 0. The forecast's notes say which;
- assumptions are probabilities in [0, 1]: ``opens`` (each email sent is opened, 0-6 hours
  after it went out), ``clicks`` (each email, SMS or push sent is clicked, likewise), and any
  other name is an event each person performs once, at a uniformly random step before the
  end of the horizon (the name is the event's name unless ``event_names`` maps it);
- replayed events (``--events``, JSON lines) name a simulated person (``sim-000001``…) and
  the hour they happen at; a message event is not replayed (it names no message): use the
  ``opens`` and ``clicks`` assumptions.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import math
import random
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from junction.clock import VirtualClock
from junction.domain.addresses import AddressKind
from junction.domain.journeys import JourneyDefinition, SendStep
from junction.domain.tracking import Identify, Track
from junction.errors import InvalidInput
from junction.render.personalise import Links
from junction.store import journey_runs, journeys, migrate, templates
from junction.store.contacts import register_device
from junction.store.database import Database
from junction.store.ingest import Batch, ingest
from junction.store.lifecycle import Change, record_changes
from junction.store.tables import contacts, events, messages
from junction.store.workspaces import create_workspace

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # a Monday morning
SECRET = "junction-simulation"
ENGAGEMENT_DELAY_HOURS = 6.0
CLICKABLE = ("email", "sms", "push")
BATCH = 500
FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia")
SENT = ("sent", "delivered")
NOT_SENT = ("failed", "dead", "suppressed")
# Content for a template the journey names but nobody gave, per channel.
PLACEHOLDERS: dict[str, dict[str, Any]] = {
    "email": {"subject": "{key}", "text": "Placeholder for {key}."},
    "sms": {"text": "Placeholder for {key}."},
    "voice": {"text": "Placeholder for {key}."},
    "push": {"title": "{key}", "body": "Placeholder for {key}."},
    "web_push": {"title": "{key}", "body": "Placeholder for {key}."},
    "whatsapp": {"text": "Placeholder for {key}."},
    "telegram": {"text": "Placeholder for {key}."},
    "messenger": {"text": "Placeholder for {key}."},
    "in_app": {"title": "{key}", "body": "Placeholder for {key}."},
    "content_card": {"title": "{key}", "body": "Placeholder for {key}."},
}


class Refused(Exception):
    """The simulation cannot start: its inputs are wrong (each problem is one line)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class StepForecast:
    id: str
    type: str
    entered: int = 0
    sent: dict[str, int] = field(default_factory=dict)  # per channel
    failed: int = 0  # not queued (no address, no template) or not sent (suppressed, failed)
    pending: int = 0  # queued and not yet sent at the end (held by quiet hours, a cap…)
    waiting: int = 0  # runs waiting at this step at the end
    converted: int = 0  # runs that reached the goal after passing this step
    exited: int = 0
    completed: int = 0


@dataclass(frozen=True)
class Bucket:
    label: str
    from_hour: float
    to_hour: float
    sent: dict[str, int]


@dataclass(frozen=True)
class Forecast:
    journey: str
    contacts: int
    days: int
    seed: int
    step_hours: float
    notes: list[str]
    entered: int
    steps: list[StepForecast]
    channels: dict[str, int]  # messages sent per channel
    timeline: list[Bucket]  # messages sent per channel, per day (or hour within 2 days)
    runs: dict[str, int]  # runs by status at the end
    events: dict[str, int]  # events performed, by name (entry, assumed, replayed)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_assumptions(text: str) -> dict[str, float]:
    """``opens=0.3,clicks=0.05,purchase=0.02`` as a mapping; ValueError naming a bad part."""
    found: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sign, value = part.partition("=")
        name = name.strip()
        if not sign or not name:
            raise ValueError(f"{part!r}: write name=probability, e.g. opens=0.3")
        try:
            probability = float(value)
        except ValueError:
            raise ValueError(f"{name}: {value.strip()!r} is not a number") from None
        if not 0 <= probability <= 1:
            raise ValueError(f"{name}: {probability} is not a probability between 0 and 1")
        found[name] = probability
    return found


def user_id(number: int) -> str:
    """The simulated person number ``number`` (1-based)."""
    return f"sim-{number:06d}"


@dataclass(order=True)
class _Due:
    """Something that happens at ``at`` hours: an event to store."""

    at: float
    order: int
    kind: str = field(compare=False)  # "track" or a message change ("opened", "clicked")
    payload: dict[str, Any] = field(compare=False)


def simulate(
    journey_path: Path,
    templates: Sequence[Path],
    contacts: int,
    days: int,
    assume: Mapping[str, float],
    events: Path | None,
    seed: int,
    step_hours: float = 1.0,
    progress: Callable[[int, int], None] | None = None,
    event_names: Mapping[str, str] | None = None,
) -> Forecast:
    """Run the journey at ``journey_path`` for ``contacts`` people over ``days``;
    ``Refused`` when an input is wrong (nothing has run then)."""
    if contacts < 1 or contacts > 999_999:
        raise Refused(["--contacts: between 1 and 999,999 people"])
    if days < 1:
        raise Refused(["--days: at least 1"])
    horizon = days * 24.0
    for name, probability in assume.items():
        if not 0 <= probability <= 1:
            raise Refused([f"--assume {name}: {probability} is not a probability in [0, 1]"])
    if not 0 < step_hours <= horizon:
        raise Refused([f"--step-hours: more than 0 and at most {horizon:g}"])
    definition, bundled = _read_journey(journey_path)
    given = bundled + [doc for path in templates for doc in _read_templates(path)]
    replayed = _read_events(events, contacts, horizon) if events else []
    with tempfile.TemporaryDirectory(prefix="junction-simulate-") as folder:
        database = Database(f"sqlite:///{Path(folder) / 'simulation.db'}")
        try:
            migrate.upgrade(database)
            run = _Simulation(database, definition, contacts, horizon, step_hours, seed)
            return run.go(given, assume, dict(event_names or {}), replayed, progress)
        finally:
            database.dispose()


def _read_documents(path: Path) -> list[Any]:
    import yaml  # type: ignore[import-untyped, unused-ignore]

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise Refused([f"{path}: cannot be read: {error}"]) from None
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f"line {mark.line + 1} column {mark.column + 1}: " if mark is not None else ""
        raise Refused([f"{path}: yaml: {at}{getattr(error, 'problem', None) or error}"]) from None


def _is_journey(doc: Any) -> bool:
    return isinstance(doc, dict) and ("steps" in doc or "trigger" in doc)


def _read_journey(path: Path) -> tuple[JourneyDefinition, list[tuple[str, Any]]]:
    """The journey of a file, and the templates defined beside it in the same file."""
    docs = _read_documents(path)
    found = [doc for doc in docs if _is_journey(doc)]
    if len(found) != 1:
        raise Refused([f"{path}: holds {len(found)} journeys; a simulation runs exactly one"])
    try:
        definition = journeys.parse(found[0])
    except InvalidInput as error:
        raise Refused([f"{path}: {e.field}: {e.message}" for e in error.errors]) from None
    return definition, [(str(path), doc) for doc in docs if not _is_journey(doc)]


def _read_templates(path: Path) -> list[tuple[str, Any]]:
    return [(str(path), doc) for doc in _read_documents(path)]


def _read_events(path: Path, people: int, horizon: float) -> list[tuple[float, str, Track]]:
    """Replayed events as (hour, user id, call); Refused naming each bad line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise Refused([f"{path}: cannot be read: {error}"]) from None
    found: list[tuple[float, str, Track]] = []
    problems: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}: line {number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            problems.append(f"{where}: not JSON: {error.msg}")
            continue
        if not isinstance(item, dict):
            problems.append(f"{where}: must be a JSON object")
            continue
        who, name, at = item.get("userId"), item.get("event"), item.get("at")
        properties = item.get("properties") or {}
        if not isinstance(who, str) or not who.startswith("sim-") or not who[4:].isdigit():
            problems.append(f"{where}: userId: name a simulated person, {user_id(1)}…")
        elif not 1 <= int(who[4:]) <= people:
            problems.append(f"{where}: userId: {who} is not simulated (--contacts {people})")
        elif not isinstance(name, str) or not name.strip():
            problems.append(f"{where}: event: the event's name is required")
        elif name.startswith("message."):
            problems.append(f"{where}: event: message events come from --assume opens/clicks")
        elif isinstance(at, bool) or not isinstance(at, int | float) or not 0 <= at <= horizon:
            problems.append(f"{where}: at: hours from the start, between 0 and {horizon:g}")
        elif not isinstance(properties, dict):
            problems.append(f"{where}: properties: must be an object")
        else:
            call = Track(user_id=who, event=name, properties=properties)
            found.append((float(at), who, call))
    if problems:
        raise Refused(problems)
    return found


def _satisfying(where: Mapping[str, Any]) -> dict[str, Any]:
    """Event properties that pass a trigger's filter, as far as one can guess them."""
    properties: dict[str, Any] = {}
    for name, expected in where.items():
        if not (isinstance(expected, dict) and "op" in expected):
            properties[name] = expected
            continue
        op, value = expected["op"], expected.get("value")
        if op == "eq" or op in ("gte", "lte"):
            properties[name] = value
        elif op == "in" and value:
            properties[name] = value[0]
        elif op == "exists" and value is not False:
            properties[name] = True
        elif op == "contains":
            properties[name] = value if isinstance(value, str) else [value]
        elif op in ("gt", "lt") and isinstance(value, int | float):
            properties[name] = value + (1 if op == "gt" else -1)
    return properties


class _Simulation:
    def __init__(
        self,
        database: Database,
        definition: JourneyDefinition,
        people: int,
        horizon: float,
        step_hours: float,
        seed: int,
    ) -> None:
        self.database = database
        self.definition = definition
        self.people = people
        self.horizon = horizon
        self.step_hours = step_hours
        self.seed = seed
        self.random = random.Random(seed)
        self.clock = VirtualClock(START)
        self.notes: list[str] = []
        self.due: list[_Due] = []
        self.scheduled = 0
        self.contact_ids: dict[str, int] = {}
        self.performed: dict[str, int] = {}
        self.sent_at: list[tuple[float, str]] = []  # (hour, channel) of each message sent
        self.events_seen = 0
        self.workspace_id = 0

    def _hour(self, instant: datetime) -> float:
        return (instant - START) / timedelta(hours=1)

    def go(
        self,
        given: list[tuple[str, Any]],
        assume: Mapping[str, float],
        names: Mapping[str, str],
        replayed: list[tuple[float, str, Track]],
        progress: Callable[[int, int], None] | None,
    ) -> Forecast:
        now = self.clock.now()
        with self.database.write() as conn:
            self.workspace_id = create_workspace(conn, "simulation", now, SECRET).workspace.id
            self._save_templates(conn, given, now)
            journeys.save(conn, self.workspace_id, self._raw_definition(), now)
            journeys.move(conn, self.workspace_id, self.definition.key, "activate", now)
        self._create_people(now)
        self._plan(assume, names, replayed)
        self._enter(now)
        ticks = [k * self.step_hours for k in range(math.ceil(self.horizon / self.step_hours))]
        ticks.append(self.horizon)
        asyncio.run(self._run(ticks, assume, progress))
        return self._forecast()

    def _raw_definition(self) -> dict[str, Any]:
        return self.definition.model_dump(mode="json", by_alias=True, exclude_none=True)

    def _save_templates(
        self, conn: Connection, given: list[tuple[str, Any]], now: datetime
    ) -> None:
        problems: list[str] = []
        saved: set[str] = set()
        for where, body in given:
            try:
                saved.add(templates.save(conn, self.workspace_id, body, now)["key"])
            except InvalidInput as error:
                problems += [f"{where}: {e.field}: {e.message}" for e in error.errors]
        if problems:
            raise Refused(problems)
        missing: dict[str, list[str]] = {}
        for step in self.definition.steps:
            if isinstance(step, SendStep) and step.template and step.template not in saved:
                wanted = missing.setdefault(step.template, [])
                for channel in [step.channel] if step.channel else step.channels or []:
                    if channel not in wanted:
                        wanted.append(channel)
        for key, channels in missing.items():
            content = {
                channel: {name: text.format(key=key) for name, text in block.items()}
                for channel, block in PLACEHOLDERS.items()
                if channel in channels
            }
            templates.save(conn, self.workspace_id, {"key": key, "channels": content}, now)
            self.notes.append(f"template {key!r} not given: a placeholder ({', '.join(channels)})")

    def _create_people(self, now: datetime) -> None:
        ids = [user_id(n) for n in range(1, self.people + 1)]
        for first in range(0, self.people, BATCH):
            calls = []
            for index, who in enumerate(ids[first : first + BATCH], start=first + 1):
                traits = {
                    "email": f"{who}@example.com",
                    "phone": f"+336{10_000_000 + index:08d}",
                    "first_name": self.random.choice(FIRST_NAMES),
                }
                calls.append(Identify(user_id=who, traits=traits, message_id=f"{who}:identify"))
            with self.database.write() as conn:
                ingest(conn, self.workspace_id, Batch(calls, now), SECRET)
                for who in ids[first : first + BATCH]:
                    details = {"platform": "android", "appId": None}
                    register_device(
                        conn, self.workspace_id, who, AddressKind.PUSH, f"token-{who}", details, now
                    )
        with self.database.read() as conn:
            rows = conn.execute(
                select(contacts.c.user_id, contacts.c.id).where(
                    contacts.c.workspace_id == self.workspace_id
                )
            )
            self.contact_ids = {row.user_id: row.id for row in rows}

    def _plan(
        self,
        assume: Mapping[str, float],
        names: Mapping[str, str],
        replayed: list[tuple[float, str, Track]],
    ) -> None:
        """Schedule the assumed custom events and the replayed ones."""
        steps_before_end = math.ceil(self.horizon / self.step_hours)
        custom = sorted(name for name in assume if name not in ("opens", "clicks"))
        for number in range(1, self.people + 1):
            who = user_id(number)
            for name in custom:
                if self.random.random() < assume[name]:
                    at = self.random.randrange(steps_before_end) * self.step_hours
                    call = Track(user_id=who, event=names.get(name, name), properties={})
                    self._schedule(at, "track", {"call": call})
        for at, _, call in replayed:
            self._schedule(at, "track", {"call": call})

    def _schedule(self, at: float, kind: str, payload: dict[str, Any]) -> None:
        self.scheduled += 1  # ties at one hour keep the order they were scheduled in
        heapq.heappush(self.due, _Due(at, self.scheduled, kind, payload))

    def _enter(self, now: datetime) -> None:
        trigger = self.definition.trigger
        if trigger.event is not None:
            properties = _satisfying(trigger.where)
            self.notes.append(f"entry: everyone performs {trigger.event!r} at hour 0")
            for first in range(0, self.people, BATCH):
                calls = [
                    Track(
                        user_id=user_id(n),
                        event=trigger.event,
                        properties=properties,
                        message_id=f"{user_id(n)}:entry",
                    )
                    for n in range(first + 1, min(first + BATCH, self.people) + 1)
                ]
                with self.database.write() as conn:
                    ingest(conn, self.workspace_id, Batch(calls, now), SECRET)
            self.performed[trigger.event] = self.people
            return
        if trigger.schedule is not None:
            # The engine fires the cron itself, as it will in production.
            start = START.strftime("%a %Y-%m-%d %H:%M")
            self.notes.append(
                f"entry: the schedule {trigger.schedule.cron!r} (UTC) enters everyone at each "
                f"firing; the simulation starts {start} UTC"
            )
            return
        if trigger.api:
            self.notes.append("entry: everyone entered through the API at hour 0")
        else:
            self.notes.append("entry: a segment trigger, simulated as everyone entering at hour 0")
        for first in range(0, self.people, BATCH):
            with self.database.write() as conn:
                for n in range(first + 1, min(first + BATCH, self.people) + 1):
                    journey_runs.enter_by_api(
                        conn,
                        self.workspace_id,
                        self.definition.key,
                        self.contact_ids[user_id(n)],
                        {},
                        now,
                    )

    async def _run(
        self,
        ticks: list[float],
        assume: Mapping[str, float],
        progress: Callable[[int, int], None] | None,
    ) -> None:
        from junction.engine.dispatcher import Dispatcher

        links = Links(SECRET.encode(), "https://simulation.invalid")
        dispatcher = Dispatcher(self.database, self.clock, links=links, journey_grace=timedelta(0))
        for done, tick in enumerate(ticks, start=1):
            self.clock.set(START + timedelta(hours=tick))
            self._store_due(tick)
            await dispatcher.drain()
            self._engage(assume)
            if progress is not None:
                progress(done, len(ticks))

    def _store_due(self, tick: float) -> None:
        calls: list[Track] = []
        changes: list[Change] = []
        while self.due and self.due[0].at <= tick:
            item = heapq.heappop(self.due)
            at = START + timedelta(hours=item.at)
            if item.kind == "track":
                call: Track = item.payload["call"]
                calls.append(
                    Track(
                        user_id=call.user_id,
                        event=call.event,
                        properties=call.properties,
                        timestamp=at,
                        message_id=f"sim:{item.order}",
                    )
                )
                self.performed[call.event] = self.performed.get(call.event, 0) + 1
            else:
                changes.append(Change(**{**item.payload, "at": at}))
                name = f"message.{item.kind}"
                self.performed[name] = self.performed.get(name, 0) + 1
        if not calls and not changes:
            return
        now = self.clock.now()
        with self.database.write() as conn:
            if calls:
                ingest(conn, self.workspace_id, Batch(calls, now), SECRET)
            if changes:
                record_changes(conn, changes, now)

    def _engage(self, assume: Mapping[str, float]) -> None:
        """Note the messages just sent, and schedule their opens and clicks."""
        with self.database.read() as conn:
            rows = conn.execute(
                select(events.c.id, events.c.contact_id, events.c.properties, events.c.timestamp)
                .where(events.c.id > self.events_seen, events.c.name == "message.sent")
                .order_by(events.c.id)
            ).all()
            last = conn.execute(select(events.c.id).order_by(events.c.id.desc()).limit(1))
            self.events_seen = max(self.events_seen, last.scalar_one_or_none() or 0)
        opens, clicks = assume.get("opens", 0.0), assume.get("clicks", 0.0)
        for row in rows:
            message_id, channel = row.properties["messageId"], row.properties["channel"]
            hour = self._hour(_aware(row.timestamp))
            self.sent_at.append((hour, channel))
            draw = random.Random(f"{self.seed}:{message_id}")
            base = {
                "workspace_id": self.workspace_id,
                "contact_id": row.contact_id,
                "message_id": message_id,
                "channel": channel,
            }
            if channel == "email" and draw.random() < opens:
                at = hour + draw.uniform(0, ENGAGEMENT_DELAY_HOURS)
                self._schedule(at, "opened", {**base, "status": "opened"})
            if channel in CLICKABLE and draw.random() < clicks:
                at = hour + draw.uniform(0, ENGAGEMENT_DELAY_HOURS)
                properties = {"url": "https://simulation.invalid/", "link": 0}
                click = {**base, "status": "clicked", "key": "clicked:0", "properties": properties}
                self._schedule(at, "clicked", click)

    def _forecast(self) -> Forecast:
        with self.database.read() as conn:
            shown = journeys.get(conn, self.workspace_id, self.definition.key)
            sent = conn.execute(
                select(messages.c.idempotency_key, messages.c.channel, messages.c.status).where(
                    messages.c.workspace_id == self.workspace_id
                )
            ).all()
        by_step: dict[str, dict[str, int]] = {}
        unsent: dict[str, dict[str, int]] = {}
        channels: dict[str, int] = {}
        for key, channel, status in sent:
            parts = key.split(":")
            step = parts[2] if key.startswith("journey:") and len(parts) >= 4 else ""
            if status in SENT:
                per = by_step.setdefault(step, {})
                per[channel] = per.get(channel, 0) + 1
                channels[channel] = channels.get(channel, 0) + 1
            else:
                outcome = "failed" if status in NOT_SENT else "pending"
                per = unsent.setdefault(step, {})
                per[outcome] = per.get(outcome, 0) + 1
        steps = []
        for step in self.definition.steps:
            counts = shown["steps"].get(step.id, {})
            steps.append(
                StepForecast(
                    id=step.id,
                    type=step.type,
                    entered=counts.get("entered", 0),
                    sent=dict(sorted(by_step.get(step.id, {}).items())),
                    failed=counts.get("failed", 0) + unsent.get(step.id, {}).get("failed", 0),
                    pending=unsent.get(step.id, {}).get("pending", 0),
                    waiting=counts.get("waiting", 0),
                    converted=counts.get("converted", 0),
                    exited=counts.get("exited", 0),
                    completed=counts.get("completed", 0),
                )
            )
        return Forecast(
            journey=self.definition.key,
            contacts=self.people,
            days=int(self.horizon // 24),
            seed=self.seed,
            step_hours=self.step_hours,
            notes=self.notes,
            entered=shown["totals"].get("entered", 0),
            steps=steps,
            channels=dict(sorted(channels.items())),
            timeline=self._timeline(sorted(channels)),
            runs=dict(sorted(shown["runs"].items())),
            events=dict(sorted(self.performed.items())),
        )

    def _timeline(self, channels: list[str]) -> list[Bucket]:
        size = 1.0 if self.horizon <= 48 else 24.0
        count = math.ceil(self.horizon / size)
        buckets = [{c: 0 for c in channels} for _ in range(count)]
        for hour, channel in self.sent_at:
            buckets[min(int(hour // size), count - 1)][channel] += 1
        label = "H+{:g}" if size == 1 else "D+{:g}"
        return [
            Bucket(label.format(i), i * size, min((i + 1) * size, self.horizon), sent)
            for i, sent in enumerate(buckets)
        ]


def _aware(instant: datetime) -> datetime:
    """SQLite gives back naive times, in UTC."""
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)
