"""The journey step function: ``advance(definition, run_id, state, trigger, now, contact)``.

A run is a value (``RunState``); a trigger (``Entered``, ``TimerFired``, ``EventReceived``)
moves it and yields effects (``SendIntent``, ``SetTimer``, ``ProfileUpdate``, ``WebhookCall``,
``Finished``) that the runtime commits together with the new state. Nothing here reads a clock
or does I/O. The definition model lives in ``junction.domain.journey_model`` and is
re-exported here (its ``Trigger``, what starts runs, as ``TriggerDefinition``: here ``Trigger``
is what moves a run).

Rules kept here:
- ``Entered`` with no state starts the run at ``start``; the run then moves at once through
  send, update-profile, branch, split and webhook steps and stops at a wait, a wait-for, an
  exit step or an end (a null ``next``: completed). At most 1,000 steps run per advance; past
  that the run exits with reason "step limit" (validation already refuses loops with no wait);
- every returned run is final (completed, exited, converted) or waiting with a wake-up time:
  ``active`` exists only inside ``advance``;
- a send's key is ``journey:{run_id}:{step}:{visit}``, unique per run and visit of the step,
  so a resent trigger cannot send twice; the runtime uses it as the idempotency key;
- a webhook continues at once; its JSON response is merged into ``context[step_id]`` by the
  runtime, so later steps see it once it has returned (a body left unset posts the run's id,
  step and context);
- a split draws from sha256 of ``{run_id}:{step}:{visit}``, so it is reproducible; a control
  path ends the run, exited with reason "control group";
- an event is, in order: recorded as an engagement of a sent message when its message key
  matches one; the goal, within ``within`` of ``entered_at`` (the run ends converted: the
  journey's point is reached; checked before the exit criteria so that a purchase that is both
  counts as a conversion); an exit criterion (the run exits, wherever it is); what the run
  waits for (it continues at ``onEvent``);
- an engagement satisfies a wait for a weaker one: a click proves an open (images blocked),
  an open or a read proves delivery, and a read counts as an open; a wait-for whose engagement
  was already seen continues at once;
- a timer continues a run only if it waits with a wake-up at or before the timer's time (a
  wait goes to ``next``, a wait-for to ``onTimeout``); early and stale timers change nothing;
- a trigger that does not apply returns the very same state and no effects, so the runtime
  can skip the write; final runs ignore every trigger;
- times of day are the contact's local time (``contact["timezone"]``, UTC when unknown); a
  time that does not exist locally (spring forward) falls the gap's length later, an ambiguous
  one (fall back) at its first occurrence; an ``untilTrait`` date without a time is midnight
  local, and a missing, unreadable or past trait continues at once;
- the runtime must deliver to a run every ``message.*`` event about a message it sent (its key
  is in ``state.sent``), the events of the exit criteria and goal, and what ``waits_on`` names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from junction.domain.journey_model import (
    WEEKDAYS,
    BranchStep,
    Case,
    Condition,
    EngagedCondition,
    EngagedOn,
    Entry,
    EventCondition,
    ExitCriterion,
    ExitStep,
    Goal,
    JourneyDefinition,
    Period,
    Schedule,
    SendStep,
    SplitPath,
    SplitStep,
    Step,
    TimeOfDay,
    TraitCondition,
    TraitTime,
    UpdateProfileStep,
    WaitForStep,
    WaitStep,
    WebhookStep,
    check_where,
    compare,
    lookup,
    matches,
)
from junction.domain.journey_model import Trigger as TriggerDefinition

__all__ = [
    "EVENT_FOR_ENGAGEMENT",
    "MAX_STEPS",
    "BranchStep",
    "Case",
    "Condition",
    "Effect",
    "EngagedCondition",
    "EngagedOn",
    "Entered",
    "Entry",
    "EventCondition",
    "EventReceived",
    "ExitCriterion",
    "ExitStep",
    "Finished",
    "Goal",
    "JourneyDefinition",
    "Period",
    "ProfileUpdate",
    "RunState",
    "RunTrigger",
    "Schedule",
    "SendIntent",
    "SendStep",
    "SetTimer",
    "SplitPath",
    "SplitStep",
    "Step",
    "TimeOfDay",
    "TimerFired",
    "TraitCondition",
    "TraitTime",
    "Trigger",
    "TriggerDefinition",
    "UpdateProfileStep",
    "WaitForStep",
    "WaitStep",
    "Waiting",
    "WebhookCall",
    "WebhookStep",
    "advance",
    "check_where",
    "matches",
    "may_enter",
    "waits_on",
]

MAX_STEPS = 1000
_Value = TypeVar("_Value")
Status = Literal["active", "waiting", "completed", "exited", "converted"]
FINAL = frozenset({"completed", "exited", "converted"})
EVENT_FOR_ENGAGEMENT = {
    "delivered": "message.delivered",
    "opened": "message.opened",
    "clicked": "message.clicked",
    "read": "message.read",
}
# Which engagements seen prove the one waited for.
_PROVES = {
    "delivered": frozenset({"delivered", "opened", "clicked", "read"}),
    "opened": frozenset({"opened", "clicked", "read"}),
    "read": frozenset({"read", "opened", "clicked"}),
    "clicked": frozenset({"clicked"}),
}


# --- run state -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Waiting:
    kind: Literal["timer", "event", "engagement"]
    step: str
    until: datetime | None
    event: str | None = None
    where: dict[str, Any] = field(default_factory=dict)
    message_of: str | None = None
    engagement: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "step": self.step,
            "until": _iso(self.until),
            "event": self.event,
            "where": self.where,
            "message_of": self.message_of,
            "engagement": self.engagement,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Waiting:
        get = data.get
        until = get("until")
        return _built(
            cls,
            {
                "kind": data["kind"],
                "step": data["step"],
                "until": datetime.fromisoformat(until) if until else None,
                "event": get("event"),
                "where": get("where") or {},
                "message_of": get("message_of"),
                "engagement": get("engagement"),
            },
        )


@dataclass(frozen=True)
class RunState:
    status: Status
    step: str | None
    entered_at: datetime
    waiting: Waiting | None = None
    sent: dict[str, str] = field(default_factory=dict)
    engaged: dict[str, list[str]] = field(default_factory=dict)
    visits: dict[str, int] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    event: dict[str, Any] | None = None  # the triggering event: {"name", "properties"}
    converted_at: datetime | None = None
    ended_at: datetime | None = None
    exit_reason: str | None = None
    path: list[str] = field(default_factory=list)
    touched: list[str] = field(default_factory=list)

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def to_dict(self) -> dict[str, Any]:
        """The state as JSON values. Its collections are the state's own, not copies (the
        runtime encodes it at once, for every state it writes): change none of them."""
        waiting = self.waiting
        return {
            "status": self.status,
            "step": self.step,
            "entered_at": _iso(self.entered_at),
            "waiting": waiting.to_dict() if waiting is not None else None,
            "sent": self.sent,
            "engaged": self.engaged,
            "visits": self.visits,
            "context": self.context,
            "event": self.event,
            "converted_at": _iso(self.converted_at) if self.converted_at is not None else None,
            "ended_at": _iso(self.ended_at) if self.ended_at is not None else None,
            "exit_reason": self.exit_reason,
            "path": self.path,
            "touched": self.touched,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunState:
        """The state of ``to_dict``'s values. Its collections are taken as they are, not
        copied (the runtime reads a state from JSON just decoded): the caller keeps none."""
        get = data.get
        waiting = get("waiting")
        converted_at = get("converted_at")
        ended_at = get("ended_at")
        return _built(
            cls,
            {
                "status": data["status"],
                "step": get("step"),
                "entered_at": datetime.fromisoformat(data["entered_at"]),
                "waiting": Waiting.from_dict(waiting) if waiting else None,
                "sent": get("sent") or {},
                "engaged": get("engaged") or {},
                "visits": get("visits") or {},
                "context": get("context") or {},
                "event": get("event"),
                "converted_at": datetime.fromisoformat(converted_at) if converted_at else None,
                "ended_at": datetime.fromisoformat(ended_at) if ended_at else None,
                "exit_reason": get("exit_reason"),
                "path": get("path") or [],
                "touched": get("touched") or [],
            },
        )


def _built(cls: type[_Value], fields: dict[str, Any]) -> _Value:
    """``cls(**fields)`` for a frozen dataclass given every field, at a third of the cost: a
    frozen ``__init__`` sets each field through ``object.__setattr__``, and the runtime
    builds a state or two per advance."""
    value = object.__new__(cls)
    value.__dict__.update(fields)
    return value


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else _iso_text(moment, moment.tzinfo)


# The runtime writes batches of states whose times are mostly the same few (the batch's now,
# the wake-ups it sets): their text is kept. Keyed with the zone, which the text shows (equal
# instants in two zones are equal datetimes).
@lru_cache(maxsize=4096)
def _iso_text(moment: datetime, zone: tzinfo | None) -> str:
    return moment.isoformat()


# --- triggers and effects --------------------------------------------------------------------


@dataclass(frozen=True)
class Entered:
    context: dict[str, Any] = field(default_factory=dict)
    event: dict[str, Any] | None = None  # {"name": ..., "properties": {...}}


@dataclass(frozen=True)
class TimerFired:
    at: datetime


@dataclass(frozen=True)
class EventReceived:
    name: str
    properties: dict[str, Any] = field(default_factory=dict)
    message_key: str | None = None  # for message.* events: the key of the message
    engagement: str | None = None  # "delivered", "opened", "clicked", "read"


# What moves a run. The definition's own trigger (what starts runs) is ``TriggerDefinition``.
Trigger = Entered | TimerFired | EventReceived
RunTrigger = Trigger


@dataclass(frozen=True)
class SendIntent:
    step: str
    key: str
    channel: str | None
    channels: tuple[str, ...] | None
    template: str | None
    content: dict[str, Any] | None
    category: str
    data: dict[str, Any]


@dataclass(frozen=True)
class SetTimer:
    at: datetime


@dataclass(frozen=True)
class ProfileUpdate:
    set: dict[str, Any]


@dataclass(frozen=True)
class WebhookCall:
    step: str
    key: str
    url: str
    body: dict[str, Any]


@dataclass(frozen=True)
class Finished:
    status: Literal["completed", "exited", "converted"]
    reason: str


Effect = SendIntent | SetTimer | ProfileUpdate | WebhookCall | Finished


# --- the step function -----------------------------------------------------------------------


def advance(
    definition: JourneyDefinition,
    run_id: int,
    state: RunState | None,
    trigger: Trigger,
    now: datetime,
    contact: Mapping[str, Any],
) -> tuple[RunState, list[Effect]]:
    """The run after ``trigger`` at ``now``, and what the runtime must do about it."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if state is None:
        if not isinstance(trigger, Entered):
            raise ValueError("a run starts with Entered")
        first = _built(
            RunState,
            {
                "status": "active",
                "step": None,
                "entered_at": now,
                "waiting": None,
                "sent": {},
                "engaged": {},
                "visits": {},
                "context": dict(trigger.context),
                "event": dict(trigger.event) if trigger.event is not None else None,
                "converted_at": None,
                "ended_at": None,
                "exit_reason": None,
                "path": [],
                "touched": [],
            },
        )
        run = _Run(definition, run_id, now, contact, first)
        run.go(definition.first)
        return run.result()
    if state.final or isinstance(trigger, Entered):
        return state, []
    if isinstance(trigger, TimerFired):
        return _on_timer(definition, run_id, state, trigger, now, contact)
    return _on_event(definition, run_id, state, trigger, now, contact)


def _on_timer(
    definition: JourneyDefinition,
    run_id: int,
    state: RunState,
    trigger: TimerFired,
    now: datetime,
    contact: Mapping[str, Any],
) -> tuple[RunState, list[Effect]]:
    waiting = state.waiting
    if waiting is None or waiting.until is None or trigger.at < waiting.until:
        return state, []
    run = _Run(definition, run_id, now, contact, state)
    step = run.steps[waiting.step]
    run.go(step.on_timeout if isinstance(step, WaitForStep) else getattr(step, "next", None))
    return run.result()


def _on_event(
    definition: JourneyDefinition,
    run_id: int,
    state: RunState,
    trigger: EventReceived,
    now: datetime,
    contact: Mapping[str, Any],
) -> tuple[RunState, list[Effect]]:
    engaged = _record_engagement(state, trigger)
    current = replace(state, engaged=engaged) if engaged is not None else state
    run = _Run(definition, run_id, now, contact, current)
    goal = definition.goal
    if (
        goal is not None
        and goal.event == trigger.name
        and matches(goal.where, trigger.properties)
        and now <= state.entered_at + goal.within.delta()
    ):
        run.converted_at = now
        run.finish("converted", "goal")
        return run.result()
    for criterion in definition.exit:
        if criterion.event == trigger.name and matches(criterion.where, trigger.properties):
            run.finish("exited", "exit criterion")
            return run.result()
    waiting = state.waiting
    if waiting is not None and _satisfies(waiting, current, trigger):
        step = run.steps[waiting.step]
        assert isinstance(step, WaitForStep)
        run.go(step.on_event)
        return run.result()
    return current, []


def _record_engagement(state: RunState, trigger: EventReceived) -> dict[str, list[str]] | None:
    """The new ``engaged`` map when the event is a new engagement of a sent message."""
    if trigger.message_key is None or trigger.engagement is None:
        return None
    for step_id, key in state.sent.items():
        if key == trigger.message_key:
            seen = state.engaged.get(step_id, [])
            if trigger.engagement in seen:
                return None
            return {**state.engaged, step_id: [*seen, trigger.engagement]}
    return None


def _satisfies(waiting: Waiting, state: RunState, trigger: EventReceived) -> bool:
    if waiting.kind == "event":
        return waiting.event == trigger.name and matches(waiting.where, trigger.properties)
    if waiting.kind == "engagement" and waiting.message_of is not None:
        key = state.sent.get(waiting.message_of)
        return (
            key is not None
            and trigger.message_key == key
            and trigger.engagement in _PROVES.get(waiting.engagement or "", frozenset())
        )
    return False


class _Run:
    """A run being moved: a mutable draft of ``RunState`` and the effects produced so far."""

    __slots__ = (
        "base",
        "contact",
        "context",
        "converted_at",
        "definition",
        "effects",
        "ended_at",
        "engaged",
        "exit_reason",
        "now",
        "path",
        "run_id",
        "sent",
        "status",
        "step",
        "steps",
        "touched",
        "traits",
        "visits",
        "waiting",
    )

    def __init__(
        self,
        definition: JourneyDefinition,
        run_id: int,
        now: datetime,
        contact: Mapping[str, Any],
        state: RunState,
    ) -> None:
        self.definition = definition
        self.steps = _steps_of(definition)
        self.run_id = run_id
        self.now = now
        # Collections of the state are shared until changed, and replaced rather than changed
        # in place (most advances change few of them): neither the caller's contact nor the
        # given state is ever altered.
        self.contact = contact
        self.traits = contact
        self.base = state
        self.status: Status = state.status
        self.step: str | None = state.step
        self.waiting: Waiting | None = state.waiting
        self.sent = state.sent
        self.engaged = state.engaged
        self.visits = dict(state.visits)  # every step taken counts a visit
        self.context = state.context
        self.converted_at = state.converted_at
        self.ended_at = state.ended_at
        self.exit_reason = state.exit_reason
        self.path = state.path
        self.touched = state.touched
        self.effects: list[Effect] = []

    @property
    def tz(self) -> tzinfo:
        return _zone(self.contact.get("timezone"))

    def result(self) -> tuple[RunState, list[Effect]]:
        state = _built(
            RunState,
            {
                "status": self.status,
                "step": self.step,
                "entered_at": self.base.entered_at,
                "waiting": self.waiting,
                "sent": self.sent,
                "engaged": self.engaged,
                "visits": self.visits,
                "context": self.context,
                "event": self.base.event,
                "converted_at": self.converted_at,
                "ended_at": self.ended_at,
                "exit_reason": self.exit_reason,
                "path": self.path,
                "touched": self.touched,
            },
        )
        return state, self.effects

    def finish(self, status: Literal["completed", "exited", "converted"], reason: str) -> None:
        self.status = status
        self.exit_reason = reason
        self.ended_at = self.now
        self.waiting = None
        self.effects.append(_built(Finished, {"status": status, "reason": reason}))

    def wait(self, waiting: Waiting) -> None:
        self.status = "waiting"
        self.waiting = waiting
        if waiting.until is not None:
            self.effects.append(_built(SetTimer, {"at": waiting.until}))

    def go(self, step_id: str | None) -> None:
        """Run steps from ``step_id`` until the run waits or ends."""
        self.status = "active"
        self.waiting = None
        for _ in range(MAX_STEPS):
            if step_id is None:
                self.finish("completed", "end")
                return
            step = self.steps[step_id]
            self.step = step_id
            visit = self.visits[step_id] = self.visits.get(step_id, 0) + 1
            step_id = self._take(step, f"journey:{self.run_id}:{step_id}:{visit}", visit)
            if self.status != "active":
                return
        self.finish("exited", "step limit")

    def _take(self, step: Step, key: str, visit: int) -> str | None:
        """Do one step; return the next one (meaningful only while the run is active)."""
        if isinstance(step, SendStep):
            channels = tuple(step.channels) if step.channels is not None else None
            intent = {
                "step": step.id,
                "key": key,
                "channel": step.channel,
                "channels": channels,
                "template": step.template,
                "content": step.content,
                "category": step.category,
                "data": dict(self.context),
            }
            self.effects.append(_built(SendIntent, intent))
            self.sent = {**self.sent, step.id: key}
            if step.id in self.engaged:
                self.engaged = {k: v for k, v in self.engaged.items() if k != step.id}
            if step.id not in self.touched:
                self.touched = [*self.touched, step.id]
            return step.next
        if isinstance(step, WaitStep):
            wake = self._wake_at(step)
            if wake is None or wake <= self.now:
                return step.next
            self.wait(Waiting("timer", step.id, wake))
            return None
        if isinstance(step, WaitForStep):
            return self._wait_for(step)
        if isinstance(step, BranchStep):
            for case in step.cases:
                if self._holds(case.when):
                    return case.next
            return step.default
        if isinstance(step, SplitStep):
            chosen = _draw(step, f"{self.run_id}:{step.id}:{visit}")
            self.path = [*self.path, chosen.name]
            if chosen.control:
                self.finish("exited", "control group")
            return chosen.next
        if isinstance(step, UpdateProfileStep):
            self.effects.append(ProfileUpdate(dict(step.set)))
            self.traits = {**self.traits, **step.set}
            return step.next
        if isinstance(step, WebhookStep):
            body = step.body if step.body is not None else self._webhook_body(step.id)
            self.effects.append(WebhookCall(step.id, key, step.url, dict(body)))
            return step.next
        self.finish("exited", "exit step")
        return None

    def _wait_for(self, step: WaitForStep) -> str | None:
        if step.message_of is not None and step.engagement is not None:
            seen = self.engaged.get(step.message_of, [])
            if _PROVES[step.engagement] & set(seen):
                return step.on_event
            fields: dict[str, Any] = {"kind": "engagement", "event": None, "where": {}}
            fields["message_of"], fields["engagement"] = step.message_of, step.engagement
        else:
            fields = {"kind": "event", "event": step.event, "where": dict(step.where)}
            fields["message_of"] = fields["engagement"] = None
        fields["step"], fields["until"] = step.id, self.now + step.timeout.delta()
        waiting: Waiting = _built(Waiting, fields)
        self.wait(waiting)
        return None

    def _webhook_body(self, step_id: str) -> dict[str, Any]:
        return {
            "journey": self.definition.key,
            "run": self.run_id,
            "step": step_id,
            "context": self.context,
        }

    def _holds(self, condition: Condition) -> bool:
        if isinstance(condition, TraitCondition):
            actual = lookup(self.traits, condition.trait)
            return compare(condition.op, actual, condition.value)
        if isinstance(condition, EventCondition):
            properties = (self.base.event or {}).get("properties") or {}
            return compare(condition.op, lookup(properties, condition.event), condition.value)
        seen = set(self.engaged.get(condition.engaged.message_of, []))
        return bool(_PROVES[condition.engaged.engagement] & seen)

    def _wake_at(self, step: WaitStep) -> datetime | None:
        if step.duration is not None:
            return self.now + step.duration.delta()
        if step.until is not None:
            return next_local_time(step.until, self.now, self.tz)
        assert step.until_trait is not None
        return trait_time(step.until_trait, self.traits, self.tz)


# Each definition's steps by id, for the definitions in use (a definition lives as long as
# the runtime's cache holds it; the entry keeps it alive, so its id is not reused).
_INDEXES: dict[int, tuple[JourneyDefinition, dict[str, Step]]] = {}


def _steps_of(definition: JourneyDefinition) -> dict[str, Step]:
    found = _INDEXES.get(id(definition))
    if found is None or found[0] is not definition:
        if len(_INDEXES) > 256:  # a bound, not a policy: few definitions are live at once
            _INDEXES.clear()
        found = _INDEXES[id(definition)] = (definition, {s.id: s for s in definition.steps})
    return found[1]


def _draw(step: SplitStep, seed: str) -> SplitPath:
    total = sum(path.weight for path in step.paths)
    digest = hashlib.sha256(seed.encode()).digest()
    point = int.from_bytes(digest[:8], "big") % total
    for path in step.paths:
        if point < path.weight:
            return path
        point -= path.weight
    raise AssertionError("the draw falls within the total weight")


def _zone(name: object) -> tzinfo:
    if isinstance(name, str) and name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            return UTC
    return UTC


def next_local_time(until: TimeOfDay, now: datetime, tz: tzinfo) -> datetime:
    """The first ``until.time`` on one of ``until.weekdays``, local to ``tz``, after ``now``."""
    hour, minute = (int(part) for part in until.time.split(":"))
    today = now.astimezone(tz).date()
    for offset in range(9):
        day = today + timedelta(days=offset)
        if WEEKDAYS[day.weekday()] not in until.weekdays:
            continue
        # Round-tripping through UTC moves a time in the spring-forward gap past it.
        moment = datetime.combine(day, time(hour, minute), tzinfo=tz).astimezone(UTC)
        if moment > now:
            return moment
    raise AssertionError("a weekday recurs within a week")


def trait_time(spec: TraitTime, traits: Mapping[str, Any], tz: tzinfo) -> datetime | None:
    """When an ``untilTrait`` wait wakes, or None when the trait holds no date."""
    value = lookup(traits, spec.trait)
    moment: datetime | None = None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time())
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    moment = moment.astimezone(UTC)
    if spec.offset is not None:
        delta = spec.offset.delta()
        moment = moment - delta if spec.before else moment + delta
    return moment


def waits_on(state: RunState) -> tuple[str | None, datetime | None]:
    """(the event name the run waits for, its wake-up time), for the runtime's index."""
    waiting = state.waiting
    if state.final or waiting is None:
        return None, None
    if waiting.kind == "engagement":
        return EVENT_FOR_ENGAGEMENT.get(waiting.engagement or ""), waiting.until
    return waiting.event, waiting.until


def may_enter(
    entry: Entry,
    *,
    runs_before: int,
    active_runs: int,
    last_entered_at: datetime | None,
    now: datetime,
) -> bool:
    """Whether a contact may start a new run, given the runs of this journey they had."""
    if active_runs >= entry.max_concurrent:
        return False
    if entry.mode == "once":
        return runs_before == 0
    if entry.mode == "cooldown" and last_entered_at is not None:
        assert entry.cooldown is not None
        return now >= last_entered_at + entry.cooldown.delta()
    return True
