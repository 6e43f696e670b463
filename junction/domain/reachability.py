"""Which channel reaches a contact now: one pure decision per (contact, message) at send time.

``decide(ask, contact, rules, now)`` returns send (on one channel), defer (until a moment) or
suppress, with every candidate considered and the reasons for each.

Rules kept here:
- the category is ``transactional`` or a known topic key; an unknown topic is suppressed;
- a candidate is eligible only when all of these hold:
  the content has a variant for it; it was not already tried (``Ask.exclude``);
  the contact has an address for it whose status is active or unverified (in-app messages and
  content cards need none); the contact has not opted out of the channel; the topic is sent on
  it and the contact's (topic, channel) preference, or else the topic's default, is opted in;
  free-text (session-only) content goes only while the chat's 24-hour window is open;
  no frequency cap is reached; and it is not within quiet hours;
- transactional messages skip topic preferences, global opt-outs, caps and quiet hours, but
  not a bounced or invalid address, and not a STOP on SMS or WhatsApp: carriers and Meta
  require STOP to end every message (Twilio refuses the send anyway, error 21610);
- caps are those of ``junction.domain.caps`` (as in Braze: per channel and topic, rolling or
  calendar windows in the contact's timezone); channels in ``Rules.cap_exempt``,
  transactional messages and asks with ``ignore_caps`` are never capped;
- quiet hours are those of ``junction.domain.quiet_hours`` (contact-local, DST-correct, per
  channel);
- caps and quiet hours are checked only for a channel with no other reason against it, so a
  candidate is "only quiet" when quiet hours are its sole reason;
- with no eligible candidate but some only quiet, the message is deferred until the earliest
  such window ends (or suppressed with reason "quiet hours" when ``Ask.quiet`` is "drop");
  with none only quiet it is suppressed, the reason summarising each candidate;
- eligible candidates rank by, in order: the contact's preferred channel; engagement, the
  posterior mean (engaged + 1) / (sent + 2) of a Beta(1, 1) prior, higher first; the position
  in the country's usual apps (channels not listed after listed ones); cost, lower first; the
  marketer's order. The score is the sort key (lower first) and the reason names the first
  criterion where the winner beats the runner-up; ``considered`` lists the eligible in rank
  order (``Decision.fallbacks()`` is the rest of them), then the others in the asked order;
  a channel named twice is considered once;
- the policy reads no clock: ``now`` is passed in and must be timezone-aware.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from functools import lru_cache
from operator import itemgetter
from types import MappingProxyType
from typing import Any, Literal

from junction.domain.caps import (
    CapRule,
    Limits,
    PastSend,
    Reach,
    capped,
    may_reach,
    window_starts,
)
from junction.domain.caps import limits as limits_of
from junction.domain.countries import COUNTRY_APPS
from junction.domain.localtime import zone
from junction.domain.quiet_hours import QuietHours, covering, quiet_until

CHANNELS = (
    "email",
    "sms",
    "voice",
    "push",
    "web_push",
    "whatsapp",
    "telegram",
    "messenger",
    "line",
    "viber",
    "wechat",
    "kakaotalk",
    "in_app",
    "content_card",
)
TRANSACTIONAL = "transactional"
# Served by Junction itself to the contact: no address to hold.
ADDRESSLESS = frozenset({"in_app", "content_card"})
# Channels whose STOP binds every message, transactional ones included.
STOP_CHANNELS = frozenset({"sms", "whatsapp"})
SENDABLE_STATUSES = frozenset({"active", "unverified"})
# Relative list prices in USD per message (2024, typical paid tiers; the own-channel ones cost
# nothing per message). Only the order matters; a workspace overrides them with its own rates.
DEFAULT_COSTS: Mapping[str, float] = MappingProxyType(
    {
        "in_app": 0.0,
        "content_card": 0.0,
        "push": 0.0,
        "web_push": 0.0,
        "telegram": 0.0,
        "messenger": 0.0,
        "email": 0.0001,
        "line": 0.002,
        "viber": 0.002,
        "whatsapp": 0.005,
        "kakaotalk": 0.005,
        "wechat": 0.005,
        "sms": 0.0079,
        "voice": 0.013,
    }
)
# A channel missing from the costs ranks after every priced one.
UNPRICED = 1.0
_NOTHING: frozenset[str] = frozenset()
_NO_RANK: dict[str, float] = {}
SESSION_CLOSED = "24-hour window closed; needs an approved template"


@dataclass(frozen=True, slots=True)
class Topic:
    key: str
    default_opt_in: bool = True
    channels: frozenset[str] | None = None  # None: any channel


@dataclass(frozen=True, slots=True)
class Rules:
    topics: Mapping[str, Topic]
    caps: tuple[CapRule, ...] = ()
    quiet_hours: tuple[QuietHours, ...] = ()
    country_apps: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: COUNTRY_APPS)
    costs: Mapping[str, float] = field(default_factory=lambda: DEFAULT_COSTS)
    cap_exempt: frozenset[str] = frozenset({"in_app", "content_card"})
    # Derived once per workspace, not per decision.
    _caps_by_topic: dict[str | None, tuple[CapRule, ...]] = field(
        init=False, repr=False, compare=False
    )
    _quiet_by_channel: dict[str, tuple[QuietHours, ...]] = field(
        init=False, repr=False, compare=False
    )
    _quiet_all: tuple[QuietHours, ...] = field(init=False, repr=False, compare=False)
    # country -> channel -> position among its usual apps; "" -> the position of unlisted ones
    _app_rank: dict[str, dict[str, float]] = field(init=False, repr=False, compare=False)
    # Per (timezone, now): a batch decides many people at one moment, most in a few
    # timezones, so their local time, quiet-hours answers and cap windows are worked out once.
    _moments: dict[tuple[str | None, datetime], _Moment] = field(
        init=False, repr=False, compare=False
    )
    # Per ask: a campaign's messages ask the same question of many people, so what the answer
    # takes from the ask and these rules alone is worked out once. By identity first (cheap),
    # then by value (a claim builds a new, equal ask per message).
    _plans: dict[int, tuple[Ask, _Plan]] = field(init=False, repr=False, compare=False)
    _plans_by_ask: dict[Ask, _Plan] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Sorted by id so that the first blocking rule found is the one to name.
        caps = tuple(sorted(self.caps, key=lambda rule: rule.id))
        general = tuple(rule for rule in caps if rule.topic is None)
        by_topic: dict[str | None, tuple[CapRule, ...]] = {None: general}
        for key in {rule.topic for rule in caps if rule.topic is not None}:
            by_topic[key] = tuple(rule for rule in caps if rule.topic in (None, key))
        quiet_all = tuple(window for window in self.quiet_hours if not window.channels)
        named = {channel for window in self.quiet_hours for channel in window.channels}
        interned: dict[tuple[int, ...], tuple[QuietHours, ...]] = {(): quiet_all}
        by_channel = {}
        for channel in named:
            covering = [
                index
                for index, window in enumerate(self.quiet_hours)
                if not window.channels or channel in window.channels
            ]
            by_channel[channel] = interned.setdefault(
                tuple(covering), tuple(self.quiet_hours[index] for index in covering)
            )
        object.__setattr__(self, "_caps_by_topic", by_topic)
        app_rank = {
            country: {"": float(len(apps))} | {app: float(i) for i, app in enumerate(apps)}
            for country, apps in self.country_apps.items()
        }
        object.__setattr__(self, "_app_rank", app_rank)
        object.__setattr__(self, "_moments", {})
        object.__setattr__(self, "_plans", {})
        object.__setattr__(self, "_plans_by_ask", {})
        object.__setattr__(self, "_quiet_by_channel", by_channel)
        object.__setattr__(self, "_quiet_all", quiet_all)


@dataclass(frozen=True, slots=True)
class ContactFacts:
    timezone: str | None
    country: str | None
    preferred_channel: str | None
    # channel -> status of the best address: active, unverified, bounced, invalid, unsubscribed
    addresses: Mapping[str, str]
    opted_out: frozenset[str] = frozenset()
    preferences: Mapping[tuple[str, str], bool] = field(default_factory=dict)
    engagement: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    open_sessions: frozenset[str] = frozenset()
    history: Sequence[PastSend] = ()  # counted sends of the last 30 days, newest first


@dataclass(frozen=True, slots=True)
class Ask:
    candidates: tuple[str, ...]  # one channel, or "best of" in the marketer's order
    category: str  # "transactional" or a topic key
    content_channels: frozenset[str]
    session_only: frozenset[str] = frozenset()
    ignore_caps: bool = False
    # Whether this send, once made, counts toward caps; it does not change the decision.
    counts: bool = True
    quiet: Literal["defer", "drop"] = "defer"
    exclude: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        # A channel named twice is considered once, at its first place.
        if len(set(self.candidates)) != len(self.candidates):
            object.__setattr__(self, "candidates", tuple(dict.fromkeys(self.candidates)))


# The two results are built on every decision: their __init__ sets the slots directly, which
# costs half of the frozen dataclass's generated object.__setattr__ calls. Still frozen.
@dataclass(frozen=True, slots=True, init=False)
class Consideration:
    channel: str
    eligible: bool
    reasons: tuple[str, ...]
    score: tuple[float, ...] | None = None  # the rank's sort key, lower first

    def __init__(
        self,
        channel: str,
        eligible: bool,
        reasons: tuple[str, ...],
        score: tuple[float, ...] | None = None,
    ) -> None:
        _SET_CHANNEL(self, channel)
        _SET_ELIGIBLE(self, eligible)
        _SET_REASONS(self, reasons)
        _SET_SCORE(self, score)


@dataclass(frozen=True, slots=True, init=False)
class Decision:
    action: Literal["send", "defer", "suppress"]
    channel: str | None  # set only when sending
    until: datetime | None  # set only when deferring, in UTC
    considered: tuple[Consideration, ...]  # eligible in rank order, then the rest as asked
    reason: str

    def __init__(
        self,
        action: Literal["send", "defer", "suppress"],
        channel: str | None,
        until: datetime | None,
        considered: tuple[Consideration, ...],
        reason: str,
    ) -> None:
        _SET_ACTION(self, action)
        _SET_DECIDED(self, channel)
        _SET_UNTIL(self, until)
        _SET_CONSIDERED(self, considered)
        _SET_REASON(self, reason)

    def fallbacks(self) -> tuple[str, ...]:
        """The other eligible channels, best first."""
        return tuple(
            item.channel
            for item in self.considered
            if item.eligible and item.channel != self.channel
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "channel": self.channel,
            "until": self.until.isoformat() if self.until else None,
            "reason": self.reason,
            "considered": [
                {
                    "channel": item.channel,
                    "eligible": item.eligible,
                    "reasons": list(item.reasons),
                    "score": list(item.score) if item.score is not None else None,
                }
                for item in self.considered
            ],
        }


_SET_CHANNEL, _SET_ELIGIBLE, _SET_REASONS, _SET_SCORE = (
    vars(Consideration)[name].__set__ for name in ("channel", "eligible", "reasons", "score")
)
_SET_ACTION, _SET_DECIDED, _SET_UNTIL, _SET_CONSIDERED, _SET_REASON = (
    vars(Decision)[name].__set__ for name in ("action", "channel", "until", "considered", "reason")
)


def _ordinal(n: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(n, f"{n}th")


@lru_cache(maxsize=256)
def _alone(channel: str) -> str:
    return f"{channel}: the only eligible channel"


@lru_cache(maxsize=4096)
def _posterior(counted: tuple[int, int] | None) -> float:
    """Minus the mean engagement under a Beta(1, 1) prior, (engaged + 1) / (sent + 2)."""
    if not counted:
        return -0.5
    engaged, sent = counted
    return -(engaged + 1) / (sent + 2)


def _why(
    winner: tuple[tuple[float, ...], str],
    runner: tuple[tuple[float, ...], str],
    contact: ContactFacts,
) -> str:
    score, channel = winner
    other_score, other = runner
    criterion = 0
    while score[criterion] == other_score[criterion]:
        criterion += 1
    if criterion == 0:
        return f"{channel}: the contact's preferred channel"
    if criterion == 1:
        engaged, sent = contact.engagement.get(channel, (0, 0))
        return f"{channel}: the best engagement ({engaged} of {sent} engaged, vs {other})"
    if criterion == 2:
        if score[2] == 0:
            return f"{channel}: the usual app in {contact.country}"
        return f"{channel}: {_ordinal(int(score[2]) + 1)} of the usual apps in {contact.country}"
    if criterion == 3:
        return f"{channel}: cheaper than {other}"
    return f"{channel}: first in the marketer's order"


def _unknown_topic(ask: Ask) -> Decision:
    reasons = (f"unknown topic {ask.category}",)
    considered = tuple(Consideration(channel, False, reasons) for channel in ask.candidates)
    return Decision("suppress", None, None, considered, "unknown topic")


@lru_cache(maxsize=4096)
def _rejected(channel: str, reasons: tuple[str, ...]) -> Consideration:
    # Rejections repeat (a few channels, a few reasons): sharing the immutable record saves
    # most of a decision's allocations.
    return Consideration(channel, False, reasons)


@lru_cache(maxsize=16384)
def _eligible(ranked: tuple[tuple[float, ...], str]) -> Consideration:
    # Most contacts share a few scores (no engagement data yet, the same country).
    score, channel = ranked
    return Consideration(channel, True, (), score)


@lru_cache(maxsize=16384)
def _standing(
    channel: str,
    has_content: bool,
    excluded: bool,
    status: str | None,
    opted_out: bool,
    topic: str | None,
    topic_allows: bool,
    opted_in: bool | None,
    session_closed: bool,
) -> Consideration | None:
    """Why ``channel`` may not carry the message, caps and quiet hours aside; None if it may.

    ``topic`` is None for transactional messages; ``opted_in`` is the contact's preference for
    (topic, channel), or None when they have none and the topic's default applies (the caller
    passes the default then). Cached: the combinations are few and decisions many.
    """
    transactional = topic is None
    reasons = []
    if not has_content:
        reasons.append("no content")
    if excluded:
        reasons.append("already tried")
    if channel not in ADDRESSLESS:
        if status is None:
            reasons.append("no address")
        elif status not in SENDABLE_STATUSES and (
            status != "unsubscribed" or not transactional or channel in STOP_CHANNELS
        ):
            reasons.append(f"address {status}")
    if opted_out and (not transactional or channel in STOP_CHANNELS):
        reasons.append("opted out")
    if not transactional:
        if not topic_allows:
            reasons.append(f"topic {topic} is not sent on this channel")
        elif opted_in is False:
            reasons.append(f"opted out of topic {topic}")
        elif opted_in is None:
            reasons.append(f"topic {topic} needs opt-in")
    if session_closed:
        reasons.append(SESSION_CLOSED)
    return _rejected(channel, tuple(reasons)) if reasons else None


# A candidate that passed its standing, as the decision loop unpacks it: (channel, place in
# the marketer's order, the cap rules that apply to it as (index among the category's rules,
# rejection) in id order, those indexes alone, the quiet-hours windows that may cover it or
# None).
_Candidate = tuple[
    str,
    int,
    tuple[tuple[int, Consideration], ...],
    tuple[int, ...],
    tuple[QuietHours, ...] | None,
]
# Each candidate's rank criteria fixed by the ask, the rules and the contact's country:
# (position in the country's usual apps, cost, place in the marketer's order).
_Tail = tuple[float, float, float]
# The contact's side of every candidate's standing: the status of each candidate's address,
# the preference for the topic on each, and which candidates they opted out of or hold an
# open chat for (only those that matter).
_State = tuple[tuple[str | None, ...], tuple[bool | None, ...], frozenset[str], frozenset[str]]


@dataclass(frozen=True, slots=True)
class _Outcome:
    """The candidates' standing for one ``_State``, caps and quiet hours aside."""

    passed: tuple[_Candidate, ...]  # in the asked order
    rejected: tuple[Consideration, ...]  # the others, in the asked order
    places: tuple[int, ...]  # the place of each rejected one among the candidates
    settled: Decision | None  # the decision itself when none passed
    # For the common case, where neither caps nor quiet hours stop any of the passed:
    ranking: tuple[tuple[str, int], ...]  # (channel, place) of each passed one
    channels: tuple[str, ...]  # the channel of each passed one
    cap_indexes: tuple[int, ...]  # the cap rules that apply to any of them
    quiet_channels: frozenset[str]  # those quiet hours may cover


@dataclass(slots=True)
class _Plan:
    """What a decision takes from the ask and the rules alone, and the outcomes seen so far."""

    ask: Ask
    unknown: Decision | None  # the whole answer when the topic is unknown
    topic: Topic | None  # None: transactional
    channels: tuple[str, ...]
    pref_keys: tuple[tuple[str, str], ...]  # (topic, channel) of each; empty: transactional
    among: frozenset[str]  # the candidates, to pick out the opt-outs that matter
    sessions: frozenset[str]  # candidates whose content needs an open chat
    candidates: tuple[_Candidate, ...]
    cap_key: str | None  # the category's entry in Rules._caps_by_topic
    limits: Limits | None  # that entry's rules; None when no candidate can be capped
    cap_floor: int  # the fewest sends that can reach one of the caps
    needs_moment: bool  # caps or quiet hours may apply
    # The states are few and the decisions many: each outcome is worked out once.
    outcomes: dict[_State, _Outcome] = field(default_factory=dict)
    tails: dict[str | None, tuple[_Tail, ...]] = field(default_factory=dict)  # by country
    # Decisions to send where neither caps nor quiet hours stop a passed candidate, by what
    # else ranks them: (id of the outcome, preferred channel, country, engagement on each
    # passed one). Cleared with the outcomes, so an outcome's id is never reused here.
    sends: dict[tuple[Any, ...], Decision] = field(default_factory=dict)


_NEVER = 1 << 62
_MAX_PLANS = 4096
_MAX_OUTCOMES = 65536
_MAX_TAILS = 1024
_MAX_SENDS = 65536


def _plan(rules: Rules, ask: Ask) -> _Plan:
    known = rules._plans.get(id(ask))
    if known is not None and known[0] is ask:
        return known[1]
    try:
        plan = rules._plans_by_ask.get(ask)
    except TypeError:  # a mutable set for a frozenset: nothing to key it by, work it out
        return _make_plan(rules, ask)
    if plan is None:
        if len(rules._plans_by_ask) >= _MAX_PLANS:
            rules._plans_by_ask.clear()
        plan = rules._plans_by_ask[ask] = _make_plan(rules, ask)
    if len(rules._plans) >= _MAX_PLANS:
        rules._plans.clear()
    # The ask is held beside its id, so the id cannot be reused while the entry lives.
    rules._plans[id(ask)] = (ask, plan)
    return plan


def _make_plan(rules: Rules, ask: Ask) -> _Plan:
    category, channels = ask.category, ask.candidates
    topic: Topic | None = None
    if category != TRANSACTIONAL:
        topic = rules.topics.get(category)
        if topic is None:
            unknown = _unknown_topic(ask)
            nothing = _NOTHING
            return _Plan(
                ask, unknown, None, (), (), nothing, nothing, (), None, None, _NEVER, False
            )
    cap_key = category if category in rules._caps_by_topic else None
    caps = rules._caps_by_topic[cap_key] if topic is not None and not ask.ignore_caps else ()
    candidates: list[_Candidate] = []
    for place, channel in enumerate(channels):
        applying: tuple[tuple[int, Consideration], ...] = ()
        if channel not in rules.cap_exempt:
            applying = tuple(
                (index, _rejected(channel, (f"capped by rule {rule.id}",)))
                for index, rule in enumerate(caps)
                if rule.channel is None or rule.channel == channel
            )
        windows = None
        if topic is not None and rules.quiet_hours:
            windows = rules._quiet_by_channel.get(channel, rules._quiet_all) or None
        indexes = tuple(index for index, _ in applying)
        candidates.append((channel, place, applying, indexes, windows))
    subject = {index for *_, indexes, _ in candidates for index in indexes}
    return _Plan(
        ask,
        None,
        topic,
        channels,
        tuple((topic.key, channel) for channel in channels) if topic is not None else (),
        frozenset(channels),
        frozenset(channel for channel in channels if channel in ask.session_only),
        tuple(candidates),
        cap_key,
        limits_of(caps) if subject else None,
        min((caps[index].limit for index in subject), default=_NEVER),
        bool(subject) or any(windows for *_, windows in candidates),
    )


def _outcome(plan: _Plan, state: _State) -> _Outcome:
    """Each candidate's standing in this state; remembered for the next contact in it."""
    statuses, prefs, opted_out, open_sessions = state
    ask, topic = plan.ask, plan.topic
    key = topic.key if topic is not None else None
    default_in = True if topic is None or topic.default_opt_in else None
    passed, rejected, places = [], [], []
    for place, candidate in enumerate(plan.candidates):
        channel = candidate[0]
        preference = prefs[place] if prefs else None
        # Without a preference of their own, the topic's default: opt-in topics need one.
        opted_in = preference if preference is not None else default_in
        found = _standing(
            channel,
            channel in ask.content_channels,
            channel in ask.exclude,
            statuses[place],
            channel in opted_out,
            key,
            topic is None or topic.channels is None or channel in topic.channels,
            opted_in,
            channel in plan.sessions and channel not in open_sessions,
        )
        if found is None:
            passed.append(candidate)
        else:
            rejected.append(found)
            places.append(place)
    settled = None
    if not passed:
        settled = _suppressed(tuple(rejected))
    outcome = _Outcome(
        tuple(passed),
        tuple(rejected),
        tuple(places),
        settled,
        tuple((channel, place) for channel, place, *_ in passed),
        tuple(channel for channel, *_ in passed),
        tuple(sorted({index for *_, indexes, _ in passed for index in indexes})),
        frozenset(channel for channel, *_, quiet in passed if quiet is not None),
    )
    if len(plan.outcomes) >= _MAX_OUTCOMES:  # statuses come from data: bound the memory
        plan.outcomes.clear()
        plan.sends.clear()
    plan.outcomes[state] = outcome
    return outcome


def _suppressed(rejected: tuple[Consideration, ...]) -> Decision:
    if not rejected:
        return Decision("suppress", None, None, (), "no candidate channel")
    summary = "; ".join(f"{item.channel} {', '.join(item.reasons)}" for item in rejected)
    return Decision("suppress", None, None, rejected, f"no eligible channel: {summary}")


def _tails(rules: Rules, plan: _Plan, country: str | None) -> tuple[_Tail, ...]:
    app_rank = rules._app_rank.get(country or "", _NO_RANK)
    unlisted = app_rank.get("", 0.0)
    tails = tuple(
        (app_rank.get(channel, unlisted), rules.costs.get(channel, UNPRICED), float(place))
        for place, channel in enumerate(plan.channels)
    )
    if len(plan.tails) >= _MAX_TAILS:
        plan.tails.clear()
    plan.tails[country] = tails
    return tails


@dataclass(slots=True)
class _Moment:
    """``now`` in one timezone, and what quiet hours and cap windows say then."""

    tz: tzinfo
    local: datetime
    all_quiet: bool
    quiet_now: frozenset[str]
    until: dict[int, tuple[datetime, str]]  # by id() of a tuple of windows: end and reason
    # By the entry in Rules._caps_by_topic: where each of its rules' windows starts.
    since: dict[str | None, tuple[datetime, ...]]


_MAX_MOMENTS = 100_000


def _moment(rules: Rules, tz_name: str | None, now: datetime) -> _Moment:
    key = (tz_name, now)
    found = rules._moments.get(key)
    if found is None:
        if len(rules._moments) >= _MAX_MOMENTS:
            rules._moments.clear()
        tz = zone(tz_name)
        local = now.astimezone(tz)
        all_quiet, quiet_now = (
            covering(rules.quiet_hours, local.time()) if rules.quiet_hours else (False, _NOTHING)
        )
        found = rules._moments[key] = _Moment(tz, local, all_quiet, quiet_now, {}, {})
    return found


def _since(
    plan: _Plan, limits: Limits, moment: _Moment, tz_name: str | None, now: datetime
) -> tuple[datetime, ...]:
    """Where each of the plan's cap windows starts at this moment; once per moment."""
    since = moment.since[plan.cap_key] = window_starts(limits, tz_name, moment.local.date(), now)
    return since


def decide(ask: Ask, contact: ContactFacts, rules: Rules, now: datetime) -> Decision:
    """Send, defer or suppress this message for this contact, and on which channel."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    known = rules._plans.get(id(ask))
    plan = known[1] if known is not None and known[0] is ask else _plan(rules, ask)
    if plan.unknown is not None:
        return plan.unknown
    preferences, opted_out, open_sessions = (
        contact.preferences,
        contact.opted_out,
        contact.open_sessions,
    )
    state = (
        tuple(map(contact.addresses.get, plan.channels)),
        tuple(map(preferences.get, plan.pref_keys)) if preferences else (),
        opted_out & plan.among if opted_out else _NOTHING,
        open_sessions & plan.sessions if open_sessions and plan.sessions else _NOTHING,
    )
    outcome = plan.outcomes.get(state) or _outcome(plan, state)
    if outcome.settled is not None:
        return outcome.settled

    moment: _Moment | None = None
    reach: Reach | None = None
    if plan.needs_moment:
        tz_name = contact.timezone
        moment = rules._moments.get((tz_name, now)) or _moment(rules, tz_name, now)
        history = contact.history
        limits = plan.limits
        if limits is not None and len(history) >= plan.cap_floor:
            since = moment.since.get(plan.cap_key) or _since(plan, limits, moment, tz_name, now)
            reach = may_reach(history, limits, since)
    ranking: Sequence[tuple[str, int]] = outcome.ranking
    rejected = outcome.rejected
    quiet_best: tuple[datetime, str, str] | None = None
    if (reach is not None and True in map(reach[0].__getitem__, outcome.cap_indexes)) or (
        moment is not None
        and outcome.quiet_channels
        and (moment.all_quiet or not moment.quiet_now.isdisjoint(outcome.quiet_channels))
    ):
        ranking, rejected, quiet_best = _sift(outcome, reach, moment, now)

    if ranking:
        engagement, preferred = contact.engagement, contact.preferred_channel
        alike = None
        if ranking is outcome.ranking:  # contacts alike in what ranks the channels
            alike = (
                id(outcome),
                preferred,
                contact.country,
                *map(engagement.get, outcome.channels),
            )
            same = plan.sends.get(alike)
            if same is not None:
                return same
        tails = plan.tails.get(contact.country) or _tails(rules, plan, contact.country)
        ranked = [
            (
                (0.0 if channel == preferred else 1.0, _posterior(engagement.get(channel)))
                + tails[place],
                channel,
            )
            for channel, place in ranking
        ]
        if len(ranked) > 1:
            ranked.sort()
            reason = _why(ranked[0], ranked[1], contact)
        else:
            reason = _alone(ranked[0][1])
        considered = tuple(map(_eligible, ranked)) + rejected
        decision = Decision("send", ranked[0][1], None, considered, reason)
        if alike is not None:
            if len(plan.sends) >= _MAX_SENDS:  # engagement comes from data: bound the memory
                plan.sends.clear()
            plan.sends[alike] = decision
        return decision
    if quiet_best is not None:
        if ask.quiet == "drop":
            return Decision("suppress", None, None, rejected, "quiet hours")
        until, channel, reason = quiet_best
        return Decision("defer", None, until, rejected, f"{channel}: {reason}")
    return _suppressed(rejected)


def _sift(
    outcome: _Outcome, reach: Reach | None, moment: _Moment | None, now: datetime
) -> tuple[list[tuple[str, int]], tuple[Consideration, ...], tuple[datetime, str, str] | None]:
    """The passed candidates neither caps nor quiet hours stop, as (channel, place); every
    rejection in the asked order; and the quiet hours that end first, as (until, channel,
    reason), if they stop any."""
    kept: list[tuple[str, int]] = []
    late: list[tuple[int, Consideration]] = []
    quiet_best = None
    for channel, place, caps, cap_indexes, quiet in outcome.passed:
        if reach is not None and True in map(reach[0].__getitem__, cap_indexes):
            blocked = capped(caps, *reach)
            if blocked is not None:
                late.append((place, blocked))
                continue
        if (
            quiet is not None
            and moment is not None
            and (moment.all_quiet or channel in moment.quiet_now)
        ):
            until, reason = moment.until.get(id(quiet)) or _quiet_for(quiet, moment, now)
            late.append((place, _rejected(channel, (reason,))))
            if quiet_best is None or until < quiet_best[0]:
                quiet_best = (until, channel, reason)
            continue
        kept.append((channel, place))
    rejected = outcome.rejected
    if late:
        merged = sorted([*zip(outcome.places, rejected, strict=True), *late], key=_PLACE)
        rejected = tuple(map(_ITEM, merged))
    return kept, rejected, quiet_best


_PLACE, _ITEM = itemgetter(0), itemgetter(1)


def _quiet_for(
    windows: tuple[QuietHours, ...], moment: _Moment, now: datetime
) -> tuple[datetime, str]:
    """When the quiet hours on these windows end, and the reason; once per moment."""
    tz = moment.tz
    until, end = quiet_until(windows, now, tz)
    # Channels under the same windows share one answer (the tuples are interned).
    known = moment.until[id(windows)] = (
        until,
        f"quiet hours until {end:%H:%M} {getattr(tz, 'key', 'UTC')}",
    )
    return known
