"""Segments as data, and the one rule that decides who is in them.

A segment is a tree of ``all`` / ``any`` / ``not`` over conditions. Whether a person is in it
is decided from their ``Facts``: traits, the channels they can be reached on, and, for each
*signal* (an event name with a property filter) the segments watch, an ``Aggregate`` of the
times they performed it. The shell keeps aggregates current as events arrive (real time) and
can rebuild them from the stored events (batch); both call ``Compiled.evaluate``, so both
mean the same thing.

Rules kept here:
- ``trait``: ``{trait, op, value}``; ``op`` is one of eq, ne, gt, gte, lt, lte, in, contains,
  exists (as in journey filters), ``between`` (``value: [low, high]``, inclusive), ``before``
  / ``after`` (an ISO 8601 date or time), ``withinLast`` / ``moreThanAgo`` (``value: {amount,
  unit}``: the trait is a date or time that far back from now at most / at least). A date
  trait that does not parse as ISO 8601 matches nothing. A dotted name reaches a nested trait.
- ``performed``: performed the event (with ``where`` on its properties) at least ``atLeast``
  (default 1, or 0 when only ``atMost`` is given) and at most ``atMost`` times, ever or
  ``within`` the last period.
- ``performed`` + ``notFollowedBy``: the person's latest such event (within ``within``, when
  given) was not followed by the other event at or after it — within ``notFollowedBy.within``
  of it when given, in which case they only count once that time has passed ("added to cart,
  no purchase within an hour").
- ``lastPerformed``: performed it, the last time at least ``moreThan`` ago; ``orNever: true``
  also counts people who never did.
- ``engaged``: a message of a campaign or a journey (optionally one step) was ``received``
  (``message.sent``), ``opened`` or ``clicked``, ever or ``within`` a period.
- ``reachable``: the person has an active address for the channel.
- ``bucket``: ``{from, to}`` percent of a stable hash of the contact id (``salt`` varies it);
  the same person is always in the same bucket, so holdouts stay put.
- Time alone changes some answers (windows pass). ``evaluate`` also returns the earliest time
  the answer may change without a new event, so the shell can check again then.
- An aggregate keeps the count and first and last times of a signal forever, and the times
  within the longest window a segment needs, at most ``MAX_RECENT`` of them: counts within a
  window are exact up to that many (``atLeast``/``atMost`` are limited below it).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from junction.domain.journey_model import OPERATORS, Period, Where, compare, lookup, matches
from junction.domain.sending import CHANNEL_ADDRESS
from junction.domain.templates import KEY_PATTERN

MAX_RECENT = 1000
FOREVER = 10 * 365 * 86400  # how long "no window" keeps recent times, in seconds
ENGAGEMENT_EVENTS = {
    "received": "message.sent",
    "opened": "message.opened",
    "clicked": "message.clicked",
}
DATE_OPERATORS = ("between", "before", "after", "withinLast", "moreThanAgo")
_MISSING = object()


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --- facts ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Aggregate:
    """What is kept of one person's occurrences of one signal; times are epoch seconds."""

    count: int
    first_at: float
    last_at: float
    recent: tuple[float, ...] = ()  # ascending

    def since(self, start: float) -> int:
        """How many kept times are at or after ``start``."""
        low, high = 0, len(self.recent)
        while low < high:
            middle = (low + high) // 2
            if self.recent[middle] < start:
                low = middle + 1
            else:
                high = middle
        return len(self.recent) - low


def fold(
    aggregate: Aggregate | None, times: Iterable[float], keep_seconds: float, now: float
) -> Aggregate | None:
    """``aggregate`` with more occurrences added; the order they come in does not matter."""
    added = sorted(times)
    if not added:
        return aggregate
    horizon = now - keep_seconds if keep_seconds > 0 else math.inf
    kept = [t for t in added if t >= horizon]
    if aggregate is None:
        recent = kept
        count, first, last = len(added), added[0], added[-1]
    else:
        recent = sorted([*(t for t in aggregate.recent if t >= horizon), *kept])
        count = aggregate.count + len(added)
        first, last = min(aggregate.first_at, added[0]), max(aggregate.last_at, added[-1])
    return Aggregate(count, first, last, tuple(recent[-MAX_RECENT:]))


@dataclass(frozen=True, slots=True)
class Facts:
    """One person, as segments see them."""

    contact_id: int
    traits: Mapping[str, Any]
    signals: Mapping[str, Aggregate] = field(default_factory=dict)
    reachable: frozenset[str] = frozenset()  # channels with an active address


@dataclass(frozen=True, slots=True)
class Verdict:
    member: bool
    recheck_at: float | None  # epoch seconds: the answer may change then with no new event


# --- signals -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Signal:
    """An event name with a property filter, and how far back its times are needed."""

    key: str
    event: str
    where: Mapping[str, Any]
    keep_seconds: float

    def accepts(self, name: str, properties: Mapping[str, Any]) -> bool:
        return name == self.event and matches(self.where, properties)


def signal_key(event: str, where: Mapping[str, Any]) -> str:
    canonical = orjson.dumps([event, where], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:32]


def _seconds(period: Period | None) -> float | None:
    return None if period is None else period.delta().total_seconds()


# --- conditions ----------------------------------------------------------------------------


def _as_time(value: Any) -> float | None:
    """An ISO 8601 date or time as epoch seconds (a date is its midnight UTC; a time without
    offset is UTC); None when it is not one."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class TraitCondition(_Model):
    trait: str = Field(min_length=1, description="a trait name; dotted for a nested one")
    op: Literal[
        "eq",
        "ne",
        "gt",
        "gte",
        "lt",
        "lte",
        "in",
        "contains",
        "exists",
        "between",
        "before",
        "after",
        "withinLast",
        "moreThanAgo",
    ] = "eq"
    value: Any = None

    @model_validator(mode="after")
    def _operand(self) -> TraitCondition:
        if self.op == "in" and not isinstance(self.value, list):
            raise ValueError(f"trait {self.trait!r}: 'in' needs a list value")
        if self.op == "exists" and not isinstance(True if self.value is None else self.value, bool):
            raise ValueError(f"trait {self.trait!r}: 'exists' takes true or false")
        if self.op == "between" and not (isinstance(self.value, list) and len(self.value) == 2):
            raise ValueError(f"trait {self.trait!r}: 'between' needs [low, high]")
        if self.op in ("before", "after") and _as_time(self.value) is None:
            raise ValueError(
                f"trait {self.trait!r}: {self.op!r} needs an ISO 8601 date or time, "
                "such as 2026-01-31 or 2026-01-31T09:00:00Z"
            )
        if self.op in ("withinLast", "moreThanAgo"):
            self.value = Period.model_validate(self.value)
        return self

    def compile(self, signals: dict[str, Signal]) -> _Check:
        name, op, expected = self.trait, self.op, self.value
        if op not in DATE_OPERATORS:
            assert op in OPERATORS
            return lambda facts, now: (compare(op, lookup(facts.traits, name), expected), None)
        if op == "between":
            low, high = expected

            def between(facts: Facts, now: float) -> tuple[bool, float | None]:
                actual = lookup(facts.traits, name)
                return compare("gte", actual, low) and compare("lte", actual, high), None

            return between
        if op in ("before", "after"):
            bound = _as_time(expected)
            assert bound is not None

            def dated(facts: Facts, now: float) -> tuple[bool, float | None]:
                moment = _as_time(lookup(facts.traits, name))
                if moment is None:
                    return False, None
                return (moment < bound if op == "before" else moment > bound), None

            return dated
        span = expected.delta().total_seconds()

        def relative(facts: Facts, now: float) -> tuple[bool, float | None]:
            moment = _as_time(lookup(facts.traits, name))
            if moment is None:
                return False, None
            if op == "withinLast":  # in it from the moment itself until span after it
                if moment > now:
                    return False, moment
                return now - moment <= span, (moment + span if now - moment <= span else None)
            return now - moment >= span, (moment + span if now - moment < span else None)

        return relative


class _EventCondition(_Model):
    where: Where = Field(default_factory=dict, description="filters on the event's properties")


class PerformedCondition(_EventCondition):
    performed: str = Field(min_length=1, description="the event's name")
    at_least: int | None = Field(default=None, alias="atLeast", ge=0, lt=MAX_RECENT)
    at_most: int | None = Field(default=None, alias="atMost", ge=0, lt=MAX_RECENT)
    within: Period | None = Field(default=None, description="counted over this last period")

    @model_validator(mode="after")
    def _bounds(self) -> PerformedCondition:
        if self.at_least is not None and self.at_most is not None and self.at_least > self.at_most:
            raise ValueError(f"performed {self.performed!r}: atLeast is more than atMost")
        return self

    def compile(self, signals: dict[str, Signal]) -> _Check:
        window = _seconds(self.within)
        key = _register(signals, self.performed, self.where, window or 0.0)
        most = self.at_most if self.at_most is not None else math.inf
        return _counting(key, self.least, most, window)

    @property
    def least(self) -> int:
        if self.at_least is not None:
            return self.at_least
        return 0 if self.at_most is not None else 1


def _counting(key: str, least: int, most: float, window: float | None) -> _Check:
    def check(facts: Facts, now: float) -> tuple[bool, float | None]:
        aggregate = facts.signals.get(key)
        if aggregate is None:
            return least <= 0, None
        if window is None:
            return least <= aggregate.count <= most, None
        start = now - window
        count = aggregate.since(start)
        # The count falls when the oldest time inside the window leaves it.
        recheck = aggregate.recent[-count] + window if count else None
        return least <= count <= most, recheck

    return check


class FollowedBy(_EventCondition):
    event: str = Field(min_length=1)
    within: Period | None = Field(
        default=None, description="how long after the first event the second may come"
    )


class NotFollowedByCondition(_EventCondition):
    performed: str = Field(min_length=1)
    not_followed_by: FollowedBy = Field(alias="notFollowedBy")
    within: Period | None = Field(
        default=None, description="the first event happened within this last period"
    )

    def compile(self, signals: dict[str, Signal]) -> _Check:
        lookback = _seconds(self.within)
        wait = _seconds(self.not_followed_by.within)
        first = _register(signals, self.performed, self.where, 0.0)
        # With a wait, the times of the second event are needed back to the earliest first
        # event that counts; without one, its latest time answers.
        keep = 0.0 if wait is None else (lookback or FOREVER)
        second = _register(signals, self.not_followed_by.event, self.not_followed_by.where, keep)

        def check(facts: Facts, now: float) -> tuple[bool, float | None]:
            started = facts.signals.get(first)
            if started is None:
                return False, None
            at = started.last_at
            if lookback is not None and at < now - lookback:
                return False, None
            leaves = at + lookback if lookback is not None else None
            after = facts.signals.get(second)
            if wait is None:
                followed = after is not None and after.last_at >= at
                return not followed, None if followed else leaves
            if after is not None and after.last_at >= at:
                firsts = [t for t in after.recent if t >= at]
                if not firsts or firsts[0] <= at + wait:
                    return False, None  # followed in time (or more often than is kept)
            if now < at + wait:
                return False, at + wait
            return True, leaves

        return check


class LastPerformedCondition(_EventCondition):
    last_performed: str = Field(alias="lastPerformed", min_length=1)
    more_than: Period = Field(alias="moreThan")
    or_never: bool = Field(default=False, alias="orNever")

    def compile(self, signals: dict[str, Signal]) -> _Check:
        key = _register(signals, self.last_performed, self.where, 0.0)
        span = self.more_than.delta().total_seconds()
        or_never = self.or_never

        def check(facts: Facts, now: float) -> tuple[bool, float | None]:
            aggregate = facts.signals.get(key)
            if aggregate is None:
                return or_never, None
            due = aggregate.last_at + span
            return now >= due, None if now >= due else due

        return check


class EngagedCondition(_Model):
    engaged: Literal["received", "opened", "clicked"]
    campaign: str | None = Field(default=None, pattern=KEY_PATTERN)
    journey: str | None = Field(default=None, pattern=KEY_PATTERN)
    step: str | None = Field(default=None, min_length=1, description="a step of the journey")
    within: Period | None = None

    @model_validator(mode="after")
    def _source(self) -> EngagedCondition:
        if (self.campaign is None) == (self.journey is None):
            raise ValueError("engaged: name either a campaign or a journey")
        if self.step is not None and self.journey is None:
            raise ValueError("engaged: a step belongs to a journey; name the journey too")
        return self

    def signal(self) -> tuple[str, dict[str, Any]]:
        """The message event and the filter on where its message came from."""
        where: dict[str, Any] = (
            {"campaign": self.campaign}
            if self.campaign is not None
            else {"journey": self.journey, **({"step": self.step} if self.step else {})}
        )
        return ENGAGEMENT_EVENTS[self.engaged], where

    def compile(self, signals: dict[str, Signal]) -> _Check:
        window = _seconds(self.within)
        key = _register(signals, *self.signal(), window or 0.0)
        return _counting(key, 1, math.inf, window)


class ReachableCondition(_Model):
    reachable: str = Field(description="a channel: the person has an active address for it")

    @model_validator(mode="after")
    def _channel(self) -> ReachableCondition:
        if CHANNEL_ADDRESS.get(self.reachable) is None:
            usable = sorted(c for c, kind in CHANNEL_ADDRESS.items() if kind is not None)
            raise ValueError(f"reachable: {self.reachable!r} is not one of {usable}")
        return self

    def compile(self, signals: dict[str, Signal]) -> _Check:
        channel = self.reachable
        return lambda facts, now: (channel in facts.reachable, None)


class Bucket(_Model):
    low: int = Field(alias="from", ge=0, le=100)
    high: int = Field(alias="to", ge=0, le=100)
    salt: str = ""

    @model_validator(mode="after")
    def _range(self) -> Bucket:
        if self.low >= self.high:
            raise ValueError("bucket: 'from' must be below 'to'")
        return self


def bucket_of(contact_id: int, salt: str) -> int:
    """The person's stable bucket, 0 to 99."""
    digest = hashlib.sha256(f"{salt}:{contact_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


class BucketCondition(_Model):
    bucket: Bucket

    def compile(self, signals: dict[str, Signal]) -> _Check:
        low, high, salt = self.bucket.low, self.bucket.high, self.bucket.salt
        return lambda facts, now: (low <= bucket_of(facts.contact_id, salt) < high, None)


class AllOf(_Model):
    all: list[Node] = Field(min_length=1)

    def compile(self, signals: dict[str, Signal]) -> _Check:
        return _combined([node.compile(signals) for node in self.all], all)


class AnyOf(_Model):
    any: list[Node] = Field(min_length=1)

    def compile(self, signals: dict[str, Signal]) -> _Check:
        return _combined([node.compile(signals) for node in self.any], any)


def _combined(checks: list[_Check], combine: Callable[[Iterable[bool]], bool]) -> _Check:
    """Every check runs (not short-circuited): the earliest recheck of any part may change
    the whole answer."""

    def check(facts: Facts, now: float) -> tuple[bool, float | None]:
        answers = [each(facts, now) for each in checks]
        recheck = None
        for _, when in answers:
            recheck = _earlier(recheck, when)
        return combine(held for held, _ in answers), recheck

    return check


class NotOf(_Model):
    not_: Node = Field(alias="not")

    def compile(self, signals: dict[str, Signal]) -> _Check:
        inner = self.not_.compile(signals)

        def check(facts: Facts, now: float) -> tuple[bool, float | None]:
            held, when = inner(facts, now)
            return not held, when

        return check


# A condition is told by its marking field; ``performed`` is two kinds (see ``_kind``).
_MARKS = ("all", "any", "not", "trait", "lastPerformed", "engaged", "reachable", "bucket")
CONDITION_TAGS = frozenset({*_MARKS, "performed", "notFollowedBy"})  # pydantic's union tags


def _kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return {
            AllOf: "all",
            AnyOf: "any",
            NotOf: "not",
            TraitCondition: "trait",
            PerformedCondition: "performed",
            NotFollowedByCondition: "notFollowedBy",
            LastPerformedCondition: "lastPerformed",
            EngagedCondition: "engaged",
            ReachableCondition: "reachable",
            BucketCondition: "bucket",
        }.get(type(value))
    if not isinstance(value, Mapping):
        return None
    if "performed" in value:
        return "notFollowedBy" if "notFollowedBy" in value else "performed"
    return next((mark for mark in _MARKS if mark in value), None)


Node = Annotated[
    Annotated[AllOf, Tag("all")]
    | Annotated[AnyOf, Tag("any")]
    | Annotated[NotOf, Tag("not")]
    | Annotated[TraitCondition, Tag("trait")]
    | Annotated[PerformedCondition, Tag("performed")]
    | Annotated[NotFollowedByCondition, Tag("notFollowedBy")]
    | Annotated[LastPerformedCondition, Tag("lastPerformed")]
    | Annotated[EngagedCondition, Tag("engaged")]
    | Annotated[ReachableCondition, Tag("reachable")]
    | Annotated[BucketCondition, Tag("bucket")],
    Discriminator(
        _kind,
        custom_error_type="unknown_condition",
        custom_error_message=(
            "not a condition: use all, any, not, trait, performed, lastPerformed, engaged, "
            "reachable or bucket"
        ),
    ),
]

_Check = Callable[[Facts, float], tuple[bool, float | None]]


def _earlier(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _register(signals: dict[str, Signal], event: str, where: Mapping[str, Any], keep: float) -> str:
    """Note that the segment watches this signal, keeping its times ``keep`` seconds back
    (none when the count and the latest time answer); returns its key."""
    key = signal_key(event, where)
    earlier = signals.get(key)
    if earlier is None or earlier.keep_seconds < keep:
        signals[key] = Signal(key, event, dict(where), keep)
    return key


# --- the definition ------------------------------------------------------------------------


class SegmentDefinition(_Model):
    key: str = Field(pattern=KEY_PATTERN)
    name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    where: Node = Field(description="who is in it: a tree of all / any / not over conditions")

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        return cls.model_json_schema(by_alias=True)

    def compile(self) -> Compiled:
        signals: dict[str, Signal] = {}
        check = self.where.compile(signals)
        kinds = _kinds_in(self.where)
        return Compiled(
            self.key,
            check,
            signals,
            _requirement(self.where),
            needs_traits=TraitCondition in kinds,
            needs_reachable=ReachableCondition in kinds,
        )


@dataclass(frozen=True, slots=True)
class Requirement:
    """Only people with one of these signals (last performed at or after ``since`` seconds
    before now, when given) can be members: batch evaluation need only look at them."""

    alternatives: tuple[tuple[str, float | None], ...]


@dataclass(frozen=True, slots=True)
class Compiled:
    key: str
    check: _Check
    signals: Mapping[str, Signal]
    requirement: Requirement | None  # None: anyone may be a member
    # What of a person it reads besides signals: the shell loads only that.
    needs_traits: bool = True
    needs_reachable: bool = True

    def evaluate(self, facts: Facts, now: datetime) -> Verdict:
        member, recheck = self.check(facts, now.timestamp())
        return Verdict(member, recheck)


def _kinds_in(node: BaseModel) -> set[type[BaseModel]]:
    if isinstance(node, AllOf | AnyOf):
        children = node.all if isinstance(node, AllOf) else node.any
        return {type(node)}.union(*(_kinds_in(child) for child in children))
    if isinstance(node, NotOf):
        return {NotOf, *_kinds_in(node.not_)}
    return {type(node)}


def _requirement(node: BaseModel) -> Requirement | None:
    if isinstance(node, PerformedCondition):
        if node.least < 1:
            return None
        return Requirement(((signal_key(node.performed, node.where), _seconds(node.within)),))
    if isinstance(node, NotFollowedByCondition):
        return Requirement(((signal_key(node.performed, node.where), _seconds(node.within)),))
    if isinstance(node, LastPerformedCondition) and not node.or_never:
        return Requirement(((signal_key(node.last_performed, node.where), None),))
    if isinstance(node, EngagedCondition):
        return Requirement(((signal_key(*node.signal()), _seconds(node.within)),))
    if isinstance(node, AllOf):
        for child in node.all:
            found = _requirement(child)
            if found is not None:
                return found
        return None
    if isinstance(node, AnyOf):
        parts: list[tuple[str, float | None]] = []
        for child in node.any:
            found = _requirement(child)
            if found is None:
                return None
            parts.extend(found.alternatives)
        return Requirement(tuple(parts))
    return None


def parse(raw: Any) -> SegmentDefinition:
    return SegmentDefinition.model_validate(raw)
