"""Journey definitions as data: a trigger, entry rules, a goal, exit criteria and steps.

The step function that moves runs through a definition lives in ``junction.domain.journeys``,
which re-exports everything here.

Rules kept here:
- a ``where`` filter maps a property name to the expected value, or to ``{"op": ..., "value":
  ...}`` with ``op`` one of eq, ne, gt, gte, lt, lte, in, contains, exists; a dotted name
  (``order.total``) reaches a nested property, an exact top-level key winning over the path;
  a missing property matches only ``ne`` and ``exists: false``; values that do not compare
  (a string against a number) do not match, they never raise;
- exactly one trigger kind: an event (with ``where``), a person entering a segment (its
  ``segment.entered`` event), the API, or a five-field cron schedule;
- every step has an id; ``next`` (and ``onEvent``, ``onTimeout``, a case's or path's ``next``,
  ``default``) names another step, or is null: the run ends there, completed;
- a definition is refused, with the step named, when: two steps share an id; a reference names
  no step; a step is never reached from ``start``; a loop holds no wait (a ``duration`` or
  time-of-day wait, or a wait-for; an ``untilTrait`` wait may already be past, so it does not
  count); a ``messageOf`` names no send step, or a send step that cannot come before it; a
  split's weights are all zero (a path of weight 0 is allowed: it is switched off);
- the definition is a pydantic model, so its JSON Schema is published from the same source
  that validates it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from junction.domain.templates import KEY_PATTERN

STEP_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "contains", "exists")
Engagement = Literal["delivered", "opened", "clicked", "read"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_UNIT_DELTAS = {"minutes": 60, "hours": 3600, "days": 86400, "weeks": 604800}
_MISSING = object()
SEGMENT_ENTERED = "segment.entered"


def check_where(where: dict[str, Any]) -> dict[str, Any]:
    """Refuse a filter with an unknown operator or a malformed operand."""
    for name, expected in where.items():
        if not name:
            raise ValueError("a filter property name is empty")
        if isinstance(expected, dict) and "op" in expected:
            _check_operator(name, expected.get("op"), expected)
    return where


def _check_operator(name: str, op: object, spec: Mapping[str, Any]) -> None:
    extra = sorted(set(spec) - {"op", "value"})
    if extra:
        raise ValueError(f"filter on {name!r}: unexpected key {extra[0]!r} beside op and value")
    if op not in OPERATORS:
        raise ValueError(f"filter on {name!r}: unknown operator {op!r}; use one of {OPERATORS}")
    if op == "in" and not isinstance(spec.get("value"), list):
        raise ValueError(f"filter on {name!r}: 'in' needs a list value")
    if op == "exists" and not isinstance(spec.get("value", True), bool):
        raise ValueError(f"filter on {name!r}: 'exists' takes true or false")


Where = Annotated[dict[str, Any], AfterValidator(check_where)]


def lookup(properties: Mapping[str, Any], name: str) -> Any:
    """The value at ``name`` (dotted for nested mappings), or ``_MISSING``."""
    if name in properties:
        return properties[name]
    current: Any = properties
    for part in name.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return _MISSING
        current = current[part]
    return current


def compare(op: str, actual: Any, expected: Any) -> bool:
    """One operator applied to a looked-up value (``_MISSING`` when absent)."""
    if op == "exists":
        return (actual is not _MISSING) == (True if expected is None else bool(expected))
    if actual is _MISSING:
        return op == "ne"
    try:
        if op == "eq":
            return bool(actual == expected)
        if op == "ne":
            return bool(actual != expected)
        if op == "in":
            return isinstance(expected, list) and actual in expected
        if op == "contains":
            return isinstance(actual, str | list | tuple | dict) and expected in actual
        if isinstance(actual, bool) or isinstance(expected, bool):
            return False
        if op == "gt":
            return bool(actual > expected)
        if op == "gte":
            return bool(actual >= expected)
        if op == "lt":
            return bool(actual < expected)
        if op == "lte":
            return bool(actual <= expected)
    except TypeError:
        return False
    raise ValueError(f"unknown operator {op!r}")


def matches(where: Mapping[str, Any], properties: Mapping[str, Any]) -> bool:
    """Whether every entry of the filter holds for ``properties`` (an empty filter matches)."""
    for name, expected in where.items():
        actual = lookup(properties, name)
        if isinstance(expected, dict) and "op" in expected:
            if not compare(str(expected["op"]), actual, expected.get("value")):
                return False
        elif not compare("eq", actual, expected):
            return False
    return True


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Period(_Model):
    amount: int = Field(ge=1)
    unit: Literal["minutes", "hours", "days", "weeks"]

    def delta(self) -> timedelta:
        return _delta(self.amount, self.unit)


@lru_cache(maxsize=1024)  # a runtime asks for the same few periods thousands of times
def _delta(amount: int, unit: str) -> timedelta:
    return timedelta(seconds=amount * _UNIT_DELTAS[unit])


_CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_CRON_NAMES = re.compile(r"^[A-Za-z]{3}$")


def _check_cron(value: str) -> str:
    fields = value.split()
    if len(fields) != 5:
        raise ValueError(f"cron {value!r} needs 5 fields (minute hour day month weekday)")
    for text, (low, high) in zip(fields, _CRON_RANGES, strict=True):
        for item in text.split(","):
            base, _, step = item.partition("/")
            if step and not step.isdigit():
                raise ValueError(f"cron {value!r}: bad step {item!r}")
            if base == "*":
                continue
            for bound in base.split("-", 1):
                if _CRON_NAMES.match(bound) and high in (12, 7):
                    continue
                if not bound.isdigit() or not low <= int(bound) <= high:
                    raise ValueError(f"cron {value!r}: {item!r} is not within {low}-{high}")
    return value


class Schedule(_Model):
    cron: Annotated[str, AfterValidator(_check_cron)] = Field(
        description="five fields: minute hour day-of-month month day-of-week"
    )
    audience: Literal["all"] = "all"


class Trigger(_Model):
    event: str | None = Field(default=None, min_length=1, description="a tracked event name")
    where: Where = Field(default_factory=dict, description="filter on the event's properties")
    segment: str | None = Field(
        default=None, pattern=KEY_PATTERN, description="a person entering this segment"
    )
    api: bool = Field(default=False, description="runs are started through the API")
    schedule: Schedule | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Trigger:
        kinds = [self.event is not None, self.segment is not None, self.api, bool(self.schedule)]
        if sum(kinds) != 1:
            raise ValueError("a trigger needs exactly one of event, segment, api or schedule")
        if self.where and self.event is None:
            raise ValueError("a trigger's where filters an event: set event")
        return self

    @property
    def event_name(self) -> str | None:
        """The event that starts runs: a segment trigger waits for the person's
        ``segment.entered``."""
        return SEGMENT_ENTERED if self.segment is not None else self.event

    def accepts(self, name: str, properties: Mapping[str, Any]) -> bool:
        """Whether an event starts a run (event and segment triggers)."""
        if self.segment is not None:
            return name == SEGMENT_ENTERED and properties.get("segment") == self.segment
        return self.event == name and matches(self.where, properties)


class Entry(_Model):
    mode: Literal["once", "cooldown", "every_time"] = "once"
    cooldown: Period | None = None
    max_concurrent: int = Field(default=1, ge=1, alias="maxConcurrent")

    @model_validator(mode="after")
    def _cooldown(self) -> Entry:
        if (self.mode == "cooldown") != (self.cooldown is not None):
            raise ValueError("cooldown is set exactly when mode is 'cooldown'")
        return self


class Goal(_Model):
    event: str = Field(min_length=1)
    where: Where = Field(default_factory=dict)
    within: Period


class ExitCriterion(_Model):
    event: str = Field(min_length=1)
    where: Where = Field(default_factory=dict)


class _Step(_Model):
    id: str = Field(pattern=STEP_ID_PATTERN)

    def targets(self) -> list[str | None]:
        """Every step this one may continue to (None: the run ends)."""
        return [getattr(self, "next", None)]


class SendStep(_Step):
    type: Literal["send"] = "send"
    channel: str | None = Field(default=None, min_length=1)
    channels: list[str] | None = Field(
        default=None, min_length=1, description="the best reachable of these"
    )
    template: str | None = Field(default=None, pattern=KEY_PATTERN)
    content: dict[str, Any] | None = Field(default=None, description="inline template content")
    category: str = Field(default="transactional", min_length=1)
    next: str | None = None

    @model_validator(mode="after")
    def _one_each(self) -> SendStep:
        if (self.channel is None) == (self.channels is None):
            raise ValueError(f"step {self.id!r}: set exactly one of channel or channels")
        if (self.template is None) == (self.content is None):
            raise ValueError(f"step {self.id!r}: set exactly one of template or content")
        return self


class TimeOfDay(_Model):
    time: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM, local time")
    weekdays: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS), min_length=1)


class TraitTime(_Model):
    trait: str = Field(min_length=1, description="holds an ISO date or date-time")
    offset: Period | None = None
    before: bool = Field(default=False, description="wake the offset before the trait's time")


class WaitStep(_Step):
    type: Literal["wait"] = "wait"
    duration: Period | None = None
    until: TimeOfDay | None = Field(
        default=None, description="the next such local time, strictly after now"
    )
    until_trait: TraitTime | None = Field(default=None, alias="untilTrait")
    next: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> WaitStep:
        if sum(x is not None for x in (self.duration, self.until, self.until_trait)) != 1:
            raise ValueError(f"step {self.id!r}: set exactly one of duration, until, untilTrait")
        return self

    def holds(self) -> bool:
        """Whether the wait always lasts (an ``untilTrait`` wait may already be past)."""
        return self.until_trait is None


class WaitForStep(_Step):
    type: Literal["wait_for"] = "wait_for"
    event: str | None = Field(default=None, min_length=1)
    where: Where = Field(default_factory=dict)
    message_of: str | None = Field(
        default=None, alias="messageOf", description="id of an earlier send step"
    )
    engagement: Engagement | None = None
    timeout: Period
    on_event: str | None = Field(default=None, alias="onEvent")
    on_timeout: str | None = Field(default=None, alias="onTimeout")

    @model_validator(mode="after")
    def _one_kind(self) -> WaitForStep:
        on_message = self.message_of is not None or self.engagement is not None
        if (self.event is not None) == on_message:
            raise ValueError(f"step {self.id!r}: wait for an event, or for messageOf+engagement")
        if on_message and (self.message_of is None or self.engagement is None):
            raise ValueError(f"step {self.id!r}: messageOf and engagement go together")
        if self.where and self.event is None:
            raise ValueError(f"step {self.id!r}: where filters an event: set event")
        return self

    def targets(self) -> list[str | None]:
        return [self.on_event, self.on_timeout]


class TraitCondition(_Model):
    trait: str = Field(min_length=1)
    op: Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "contains", "exists"] = "eq"
    value: Any = None


class EventCondition(_Model):
    event: str = Field(min_length=1, description="a property of the event that started the run")
    op: Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "contains", "exists"] = "eq"
    value: Any = None


class EngagedOn(_Model):
    message_of: str = Field(alias="messageOf")
    engagement: Engagement


class EngagedCondition(_Model):
    engaged: EngagedOn


Condition = TraitCondition | EventCondition | EngagedCondition


class Case(_Model):
    when: Condition
    next: str | None = None


class BranchStep(_Step):
    type: Literal["branch"] = "branch"
    cases: list[Case] = Field(min_length=1)
    default: str | None = None

    def targets(self) -> list[str | None]:
        return [*(case.next for case in self.cases), self.default]


class SplitPath(_Model):
    name: str = Field(min_length=1, max_length=64)
    weight: int = Field(ge=0, description="0 switches the path off")
    next: str | None = None
    control: bool = Field(default=False, description="the run exits as control: sent nothing")


class SplitStep(_Step):
    type: Literal["split"] = "split"
    paths: list[SplitPath] = Field(min_length=1)

    @model_validator(mode="after")
    def _weights(self) -> SplitStep:
        if sum(path.weight for path in self.paths) == 0:
            raise ValueError(f"step {self.id!r}: split weights are all zero")
        names = [path.name for path in self.paths]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"step {self.id!r}: path {name!r} is named twice")
        return self

    def targets(self) -> list[str | None]:
        return [path.next for path in self.paths if not path.control]


class UpdateProfileStep(_Step):
    type: Literal["update_profile"] = "update_profile"
    set: dict[str, Any] = Field(min_length=1, description="traits to set")
    next: str | None = None


class WebhookStep(_Step):
    type: Literal["webhook"] = "webhook"
    url: str = Field(pattern=r"^https?://[^\s/]+", description="called signed, by the runtime")
    body: dict[str, Any] | None = Field(
        default=None, description="default: the run's id, step and context"
    )
    next: str | None = None


class ExitStep(_Step):
    type: Literal["exit"] = "exit"

    def targets(self) -> list[str | None]:
        return []


Step = Annotated[
    SendStep
    | WaitStep
    | WaitForStep
    | BranchStep
    | SplitStep
    | UpdateProfileStep
    | WebhookStep
    | ExitStep,
    Field(discriminator="type"),
]


class JourneyDefinition(_Model):
    """What ``junction apply`` reads and ``POST /v1/journeys`` takes."""

    key: str = Field(pattern=KEY_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    trigger: Trigger
    entry: Entry = Field(default_factory=Entry)
    goal: Goal | None = None
    exit: list[ExitCriterion] = Field(default_factory=list)
    start: str | None = Field(default=None, description="default: the first step")
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _graph(self) -> JourneyDefinition:
        by_id: dict[str, _Step] = {}
        for step in self.steps:
            if step.id in by_id:
                raise ValueError(f"step {step.id!r} is defined twice")
            by_id[step.id] = step
        if self.start is not None and self.start not in by_id:
            raise ValueError(f"start {self.start!r} is not a step")
        for step in self.steps:
            for target in step.targets():
                if target is not None and target not in by_id:
                    raise ValueError(f"step {step.id!r} leads to {target!r}, which is not a step")
        reached = _reachable(by_id, self.first)
        for step in self.steps:
            if step.id not in reached:
                raise ValueError(f"step {step.id!r} is never reached")
        for step in self.steps:
            for send_id in _messages_of(step):
                sender = by_id.get(send_id)
                if not isinstance(sender, SendStep):
                    raise ValueError(f"step {step.id!r}: messageOf {send_id!r} is not a send step")
                if step.id not in _reachable(by_id, send_id, first_included=False):
                    raise ValueError(f"step {step.id!r}: send step {send_id!r} never comes first")
        loop = _loop_without_wait(by_id)
        if loop:
            raise ValueError(f"steps {' → '.join(loop)} loop with no wait")
        return self

    @property
    def first(self) -> str:
        return self.start if self.start is not None else self.steps[0].id

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        return cls.model_json_schema(by_alias=True)


def _messages_of(step: _Step) -> list[str]:
    if isinstance(step, WaitForStep) and step.message_of is not None:
        return [step.message_of]
    if isinstance(step, BranchStep):
        return [
            c.when.engaged.message_of for c in step.cases if isinstance(c.when, EngagedCondition)
        ]
    return []


def _reachable(by_id: Mapping[str, _Step], origin: str, *, first_included: bool = True) -> set[str]:
    seen: set[str] = set()
    todo = [origin] if first_included else [t for t in by_id[origin].targets() if t is not None]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo.extend(t for t in by_id[current].targets() if t is not None and t not in seen)
    return seen


def _holds(step: _Step) -> bool:
    return isinstance(step, WaitForStep) or (isinstance(step, WaitStep) and step.holds())


def _loop_without_wait(by_id: Mapping[str, _Step]) -> list[str] | None:
    """A cycle among steps that do not hold the run (as ids, the first repeated at the end)."""
    done: set[str] = set()
    for origin in by_id:
        if origin in done or _holds(by_id[origin]):
            continue
        trail: list[str] = []
        on_trail: set[str] = set()
        stack: list[tuple[str, list[str]]] = [(origin, _next_ids(by_id, origin))]
        trail.append(origin)
        on_trail.add(origin)
        while stack:
            current, pending = stack[-1]
            if not pending:
                stack.pop()
                trail.pop()
                on_trail.discard(current)
                done.add(current)
                continue
            target = pending.pop()
            if target in on_trail:
                return [*trail[trail.index(target) :], target]
            if target in done:
                continue
            stack.append((target, _next_ids(by_id, target)))
            trail.append(target)
            on_trail.add(target)
    return None


def _next_ids(by_id: Mapping[str, _Step], step_id: str) -> list[str]:
    return [t for t in by_id[step_id].targets() if t is not None and not _holds(by_id[t])]
