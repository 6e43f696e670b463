"""The policy's shortcuts against plain definitions: caps counted by a full scan, and decisions
taken with nothing remembered from the ones before.

``decide`` remembers per-ask plans, per-state outcomes and per-moment cap windows, and reads a
contact's history newest first, looking only at the sends that can tell. These properties
check that none of that changes an answer.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from typing import get_args

from hypothesis import given, settings
from hypothesis import strategies as st

from junction.domain.caps import (
    CapRule,
    PastSend,
    Unit,
)
from junction.domain.localtime import (
    local_to_utc,
    zone,
)
from junction.domain.quiet_hours import QuietHours
from junction.domain.reachability import (
    CHANNELS,
    SESSION_CLOSED,
    Ask,
    ContactFacts,
    Rules,
    Topic,
    decide,
)

TOPICS = {
    "promo": Topic("promo"),
    "news": Topic("news", channels=frozenset({"email", "push", "in_app"})),
    "digest": Topic("digest", False),
}
CANDIDATES = ("email", "sms", "push", "whatsapp", "in_app")
ZONES = ["Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Lord_Howe", None]
# Around Europe's and America's spring-forward nights, where a calendar day is 23 hours long.
START = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)
SPANS = {"minutes": timedelta(minutes=1), "hours": timedelta(hours=1)}

rules_of_caps = st.lists(
    st.builds(
        CapRule,
        id=st.sampled_from("abcdefgh"),
        limit=st.integers(1, 4),
        amount=st.integers(1, 3),
        unit=st.sampled_from(get_args(Unit)),
        channel=st.sampled_from([None, "email", "sms"]),
        topic=st.sampled_from([None, "promo", "news"]),
    ),
    max_size=4,
    unique_by=lambda rule: rule.id,
)
sends = st.lists(
    st.builds(
        PastSend,
        # minutes before START, a few of them after it
        at=st.integers(-600, 20 * 24 * 60).map(lambda ago: START - timedelta(minutes=ago)),
        channel=st.sampled_from(["email", "sms", "push", "in_app"]),
        topic=st.sampled_from(["promo", "news", None]),
    ),
    max_size=16,
)


def window_start(rule: CapRule, now: datetime, tz_name: str | None) -> datetime:
    if rule.unit in SPANS:
        return now - rule.amount * SPANS[rule.unit]
    days = rule.amount * (7 if rule.unit == "weeks" else 1)
    today = now.astimezone(zone(tz_name)).date()
    return local_to_utc(today - timedelta(days=days - 1), time(0), zone(tz_name))


def blocking_rule(
    caps: list[CapRule],
    history: list[PastSend],
    channel: str,
    topic: str,
    now: datetime,
    tz: str | None,
) -> str | None:
    """The first rule by id that applies and whose window holds its limit: a full count."""
    for rule in sorted(caps, key=lambda rule: rule.id):
        if rule.channel not in (None, channel) or rule.topic not in (None, topic):
            continue
        start = window_start(rule, now, tz)
        held = sum(
            1
            for sent in history
            if sent.at >= start
            and rule.channel in (None, sent.channel)
            and rule.topic in (None, sent.topic)
        )
        if held >= rule.limit:
            return rule.id
    return None


@settings(max_examples=200, deadline=None)
@given(
    caps=rules_of_caps,
    cases=st.lists(
        st.tuples(
            sends,
            st.sampled_from(ZONES),
            st.integers(0, 3 * 24 * 60),
            st.sampled_from(["promo", "news"]),
        ),
        min_size=1,
        max_size=6,
    ),
)
def test_caps_block_as_a_full_count_says(caps, cases) -> None:
    # One workspace for every case, so what it remembers is shared; topics on every channel.
    rules = Rules(topics={key: Topic(key) for key in ("promo", "news")}, caps=tuple(caps))
    active = dict.fromkeys(CANDIDATES, "active")
    for history, tz, minutes, topic in cases:
        now = START + timedelta(minutes=minutes)
        newest_first = sorted(history, key=lambda sent: sent.at, reverse=True)
        facts = ContactFacts(tz, None, None, active, history=newest_first)
        decision = decide(Ask(CANDIDATES, topic, frozenset(CHANNELS)), facts, rules, now)
        for item in decision.considered:
            expected = None
            if item.channel not in rules.cap_exempt:
                expected = blocking_rule(caps, history, item.channel, topic, now, tz)
            if expected is None:
                assert item.eligible, (item, now, tz)
            else:
                assert item.reasons == (f"capped by rule {expected}",), (item, now, tz)


statuses = st.sampled_from([None, "active", "unverified", "bounced", "invalid", "unsubscribed"])
contacts = st.builds(
    ContactFacts,
    timezone=st.sampled_from(ZONES),
    country=st.sampled_from([None, "BR", "US", "JP", "XX"]),
    preferred_channel=st.sampled_from([None, *CANDIDATES]),
    addresses=st.dictionaries(st.sampled_from(CANDIDATES), statuses.filter(bool), max_size=5),
    opted_out=st.frozensets(st.sampled_from(CANDIDATES), max_size=2),
    preferences=st.dictionaries(
        st.tuples(st.sampled_from(sorted(TOPICS)), st.sampled_from(CANDIDATES)),
        st.booleans(),
        max_size=3,
    ),
    engagement=st.dictionaries(
        st.sampled_from(CANDIDATES), st.tuples(st.integers(0, 3), st.integers(3, 6)), max_size=3
    ),
    open_sessions=st.frozensets(st.sampled_from(["whatsapp"])),
    history=sends.map(lambda history: sorted(history, key=lambda s: s.at, reverse=True)),
)
asks = st.builds(
    Ask,
    candidates=st.lists(st.sampled_from(CANDIDATES), max_size=5).map(tuple),
    category=st.sampled_from([*TOPICS, "transactional", "unknown"]),
    content_channels=st.frozensets(st.sampled_from(CANDIDATES)),
    session_only=st.frozensets(st.sampled_from(["whatsapp"])),
    ignore_caps=st.booleans(),
    quiet=st.sampled_from(["defer", "drop"]),
    exclude=st.frozensets(st.sampled_from(CANDIDATES), max_size=1),
)


@settings(max_examples=150, deadline=None)
@given(
    caps=rules_of_caps,
    night=st.booleans(),
    steps=st.lists(st.tuples(asks, contacts, st.integers(0, 3 * 24 * 60)), min_size=1, max_size=8),
)
def test_a_decision_does_not_depend_on_those_before(caps, night, steps) -> None:
    quiet = (QuietHours(time(21), time(8), frozenset({"sms", "push"})),) if night else ()
    shared = Rules(topics=TOPICS, caps=tuple(caps), quiet_hours=quiet)
    for ask, facts, minutes in steps:
        now = START + timedelta(minutes=minutes)
        fresh = replace(shared)  # the same rules, nothing remembered
        decision = decide(ask, facts, shared, now)
        assert decision == decide(ask, facts, fresh, now)
        if ask.category in TOPICS or ask.category == "transactional":
            for item in decision.considered:
                if item.eligible or item.reasons[0].startswith(("capped by", "quiet hours")):
                    assert standing(ask, facts, item.channel) == ()
                else:
                    assert item.reasons == standing(ask, facts, item.channel)


def standing(ask: Ask, facts: ContactFacts, channel: str) -> tuple[str, ...]:
    """The module docstring's eligibility rules, read straight off the facts."""
    topic = TOPICS.get(ask.category)
    reasons = []
    if channel not in ask.content_channels:
        reasons.append("no content")
    if channel in ask.exclude:
        reasons.append("already tried")
    status = facts.addresses.get(channel)
    if channel not in ("in_app", "content_card"):
        if status is None:
            reasons.append("no address")
        elif status == "unsubscribed" and topic is None and channel not in ("sms", "whatsapp"):
            pass  # transactional mail still goes to an unsubscribed address
        elif status not in ("active", "unverified"):
            reasons.append(f"address {status}")
    if channel in facts.opted_out and (topic is not None or channel in ("sms", "whatsapp")):
        reasons.append("opted out")
    if topic is not None:
        chosen = facts.preferences.get((topic.key, channel))
        if topic.channels is not None and channel not in topic.channels:
            reasons.append(f"topic {topic.key} is not sent on this channel")
        elif chosen is False:
            reasons.append(f"opted out of topic {topic.key}")
        elif chosen is None and not topic.default_opt_in:
            reasons.append(f"topic {topic.key} needs opt-in")
    if channel in ask.session_only and channel not in facts.open_sessions:
        reasons.append(SESSION_CLOSED)
    return tuple(reasons)


@settings(max_examples=150, deadline=None)
@given(
    caps=rules_of_caps,
    night=st.booleans(),
    ask=asks,
    alike=contacts,
    others=st.lists(
        st.tuples(st.sampled_from(ZONES), sends, st.integers(0, 3 * 24 * 60)), min_size=2
    ),
)
def test_contacts_alike_in_ranking_share_only_what_they_share(
    caps, night, ask, alike, others
) -> None:
    """Send decisions are remembered by what ranks the channels (preferred channel, country,
    engagement): people alike in that but not in their timezone or history still get their
    own caps and quiet hours."""
    quiet = (QuietHours(time(21), time(8), frozenset({"sms", "push"})),) if night else ()
    shared = Rules(topics=TOPICS, caps=tuple(caps), quiet_hours=quiet)
    for tz, history, minutes in others:
        now = START + timedelta(minutes=minutes)
        facts = replace(
            alike, timezone=tz, history=sorted(history, key=lambda s: s.at, reverse=True)
        )
        assert decide(ask, facts, shared, now) == decide(ask, facts, replace(shared), now)
