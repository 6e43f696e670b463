"""The channel policy: eligibility, transactional exemptions, caps, quiet hours, ranking."""

from __future__ import annotations

from collections import Counter
from dataclasses import FrozenInstanceError, replace
from datetime import UTC, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from junction.domain.caps import CapRule, PastSend
from junction.domain.countries import COUNTRY_APPS
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

NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)  # 14:00 in Paris
EVERY = frozenset(CHANNELS)
TOPICS = {
    "promo": Topic("promo"),
    "digest": Topic("digest", default_opt_in=False),
    "news": Topic("news", channels=frozenset({"email", "push"})),
}
RULES = Rules(topics=TOPICS)
PHONE_AND_MAIL = {"email": "active", "sms": "active", "push": "active", "whatsapp": "active"}


def contact(**changes: object) -> ContactFacts:
    base = ContactFacts(
        timezone="Europe/Paris", country="FR", preferred_channel=None, addresses=PHONE_AND_MAIL
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def ask(*candidates: str, category: str = "promo", **changes: object) -> Ask:
    return replace(Ask(candidates, category, EVERY), **changes)  # type: ignore[arg-type]


def reasons(decision, channel: str) -> tuple[str, ...]:  # type: ignore[no-untyped-def]
    return next(item.reasons for item in decision.considered if item.channel == channel)


# Eligibility ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "facts", "reason"),
    [
        ({"content_channels": frozenset({"email"})}, {}, "no content"),
        ({"exclude": frozenset({"sms"})}, {}, "already tried"),
        ({}, {"addresses": {"email": "active"}}, "no address"),
        ({}, {"addresses": {"sms": "bounced"}}, "address bounced"),
        ({}, {"addresses": {"sms": "invalid"}}, "address invalid"),
        ({}, {"addresses": {"sms": "unsubscribed"}}, "address unsubscribed"),
        ({}, {"opted_out": frozenset({"sms"})}, "opted out"),
        ({}, {"preferences": {("promo", "sms"): False}}, "opted out of topic promo"),
        ({"session_only": frozenset({"sms"})}, {}, SESSION_CLOSED),
    ],
)
def test_each_reason_makes_a_channel_ineligible(changes, facts, reason) -> None:
    decision = decide(ask("sms", **changes), contact(**facts), RULES, NOW)
    assert decision.action == "suppress"
    assert decision.considered[0].eligible is False
    assert reason in reasons(decision, "sms")
    assert decision.reason == f"no eligible channel: sms {reason}"


def test_every_standing_reason_is_listed() -> None:
    facts = contact(addresses={}, opted_out=frozenset({"sms"}))
    decision = decide(ask("sms", exclude=frozenset({"sms"})), facts, RULES, NOW)
    assert reasons(decision, "sms") == ("already tried", "no address", "opted out")


def test_unverified_addresses_and_pull_channels_are_reachable() -> None:
    facts = contact(addresses={"email": "unverified"})
    assert decide(ask("email"), facts, RULES, NOW).channel == "email"
    assert decide(ask("in_app"), contact(addresses={}), RULES, NOW).channel == "in_app"
    assert decide(ask("content_card"), contact(addresses={}), RULES, NOW).channel == "content_card"


def test_a_topic_limited_to_some_channels() -> None:
    decision = decide(ask("sms", "email", category="news"), contact(), RULES, NOW)
    assert decision.channel == "email"
    assert reasons(decision, "sms") == ("topic news is not sent on this channel",)


def test_an_opt_in_topic_needs_the_contact_to_opt_in() -> None:
    decision = decide(ask("email", category="digest"), contact(), RULES, NOW)
    assert reasons(decision, "email") == ("topic digest needs opt-in",)
    opted_in = contact(preferences={("digest", "email"): True})
    assert decide(ask("email", category="digest"), opted_in, RULES, NOW).channel == "email"


def test_an_open_window_allows_session_text() -> None:
    facts = contact(open_sessions=frozenset({"whatsapp"}))
    chosen = decide(ask("whatsapp", session_only=frozenset({"whatsapp"})), facts, RULES, NOW)
    assert chosen.channel == "whatsapp"


def test_an_unknown_topic_is_suppressed() -> None:
    decision = decide(ask("email", category="nope"), contact(), RULES, NOW)
    assert (decision.action, decision.reason) == ("suppress", "unknown topic")
    assert decision.considered[0].reasons == ("unknown topic nope",)


def test_no_candidate_at_all() -> None:
    assert decide(ask(), contact(), RULES, NOW).reason == "no candidate channel"


def test_a_channel_named_twice_is_considered_once() -> None:
    assert [
        item.channel for item in decide(ask("sms", "sms"), contact(), RULES, NOW).considered
    ] == ["sms"]


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError):
        decide(ask("email"), contact(), RULES, NOW.replace(tzinfo=None))


# Transactional ---------------------------------------------------------------------------


def test_transactional_skips_marketing_opt_outs_preferences_caps_and_quiet_hours() -> None:
    rules = replace(
        RULES,
        caps=(CapRule("daily-1", 1, 1, "days"),),
        quiet_hours=(QuietHours(time(0), time(23, 59)),),
    )
    facts = contact(
        addresses={"email": "unsubscribed"},
        opted_out=frozenset({"email"}),
        history=[PastSend(NOW - timedelta(minutes=1), "email", None)],
    )
    decision = decide(ask("email", category="transactional"), facts, rules, NOW)
    assert (decision.action, decision.channel) == ("send", "email")
    assert decide(ask("email"), facts, rules, NOW).action == "suppress"


@pytest.mark.parametrize("channel", ["sms", "whatsapp"])
def test_transactional_still_honours_stop_on_sms_and_whatsapp(channel) -> None:
    stopped = contact(opted_out=frozenset({channel}))
    decision = decide(ask(channel, category="transactional"), stopped, RULES, NOW)
    assert reasons(decision, channel) == ("opted out",)
    unsubscribed = contact(addresses={channel: "unsubscribed"})
    decision = decide(ask(channel, category="transactional"), unsubscribed, RULES, NOW)
    assert reasons(decision, channel) == ("address unsubscribed",)


@pytest.mark.parametrize("status", ["bounced", "invalid"])
def test_transactional_never_goes_to_a_dead_address(status) -> None:
    facts = contact(addresses={"email": status})
    decision = decide(ask("email", category="transactional"), facts, RULES, NOW)
    assert reasons(decision, "email") == (f"address {status}",)


# Caps ------------------------------------------------------------------------------------


def sent(ago: timedelta, channel: str = "email", topic: str | None = "promo") -> PastSend:
    return PastSend(NOW - ago, channel, topic)


def capped(rule: CapRule, history: list[PastSend], channel: str = "email", **kw: object) -> bool:
    rules = replace(RULES, caps=(rule,))
    decision = decide(ask(channel, **kw), contact(history=history), rules, NOW)
    return decision.action == "suppress"


@pytest.mark.parametrize(
    ("rule", "history", "blocked"),
    [
        (CapRule("m", 1, 30, "minutes"), [sent(timedelta(minutes=29))], True),
        (CapRule("m", 1, 30, "minutes"), [sent(timedelta(minutes=31))], False),
        (CapRule("h", 2, 4, "hours"), [sent(timedelta(hours=1)), sent(timedelta(hours=3))], True),
        (CapRule("h", 2, 4, "hours"), [sent(timedelta(hours=1)), sent(timedelta(hours=5))], False),
        # 14:00 in Paris: today began 12 h ago (Paris is UTC+2 in June)
        (CapRule("d", 1, 1, "days"), [sent(timedelta(hours=13, minutes=59))], True),
        (CapRule("d", 1, 1, "days"), [sent(timedelta(hours=14, minutes=1))], False),
        (CapRule("d", 1, 2, "days"), [sent(timedelta(hours=37))], True),
        (CapRule("d", 1, 2, "days"), [sent(timedelta(hours=38, minutes=1))], False),
        (CapRule("w", 1, 1, "weeks"), [sent(timedelta(days=6, hours=13))], True),
        (CapRule("w", 1, 1, "weeks"), [sent(timedelta(days=6, hours=15))], False),
    ],
)
def test_each_unit_counts_its_window(rule, history, blocked) -> None:
    assert capped(rule, history) is blocked


def test_a_calendar_day_is_the_contacts_own() -> None:
    # 00:30 in Tokyo on June 10; 23:30 local yesterday does not count toward today.
    now = datetime(2026, 6, 9, 15, 30, tzinfo=UTC)
    rules = replace(RULES, caps=(CapRule("daily-1", 1, 1, "days"),))
    facts = contact(
        timezone="Asia/Tokyo", history=[PastSend(now - timedelta(hours=1), "email", "promo")]
    )
    assert decide(ask("email"), facts, rules, now).action == "send"
    facts = replace(facts, history=[PastSend(now - timedelta(minutes=29), "email", "promo")])
    assert decide(ask("email"), facts, rules, now).action == "suppress"
    # The same sends, for a contact with no timezone, fall on the same UTC day.
    facts = replace(
        facts, timezone=None, history=[PastSend(now - timedelta(hours=1), "email", "promo")]
    )
    assert decide(ask("email"), facts, rules, now).action == "suppress"


@pytest.mark.parametrize(
    ("rule", "history", "channel", "blocked"),
    [
        # a channel rule counts only that channel, and applies only to it
        (
            CapRule("c", 1, 1, "days", channel="sms"),
            [sent(timedelta(hours=1), "email")],
            "sms",
            False,
        ),
        (CapRule("c", 1, 1, "days", channel="sms"), [sent(timedelta(hours=1), "sms")], "sms", True),
        (
            CapRule("c", 1, 1, "days", channel="sms"),
            [sent(timedelta(hours=1), "sms")],
            "email",
            False,
        ),
        # a topic rule counts only that topic, and applies only to it
        (CapRule("t", 1, 1, "days", topic="news"), [sent(timedelta(hours=1))], "email", False),
        (CapRule("t", 1, 1, "days", topic="promo"), [sent(timedelta(hours=1))], "email", True),
        # a rule without a topic counts transactional sends too
        (CapRule("a", 1, 1, "days"), [sent(timedelta(hours=1), topic=None)], "email", True),
        # both set: that channel and that topic
        (
            CapRule("b", 1, 1, "days", "email", "promo"),
            [sent(timedelta(hours=1), "sms")],
            "email",
            False,
        ),
        (CapRule("b", 1, 1, "days", "email", "promo"), [sent(timedelta(hours=1))], "email", True),
    ],
)
def test_each_scope(rule, history, channel, blocked) -> None:
    assert capped(rule, history, channel) is blocked


def test_the_tightest_rule_wins_and_the_first_blocking_by_id_is_named() -> None:
    rules = replace(
        RULES,
        caps=(
            CapRule("weekly-9", 9, 1, "weeks"),
            CapRule("z-daily-1", 1, 1, "days"),
            CapRule("b-hourly-1", 1, 1, "hours"),
        ),
    )
    facts = contact(history=[sent(timedelta(minutes=5))])
    assert reasons(decide(ask("email"), facts, rules, NOW), "email") == (
        "capped by rule b-hourly-1",
    )
    facts = contact(history=[sent(timedelta(hours=2))])
    decision = decide(ask("email", "sms"), facts, rules, NOW)
    assert reasons(decision, "email") == ("capped by rule z-daily-1",)
    assert decision.reason == (
        "no eligible channel: email capped by rule z-daily-1; sms capped by rule z-daily-1"
    )


def test_exempt_channels_and_ignore_caps() -> None:
    rule = CapRule("d", 1, 1, "days")
    history = [sent(timedelta(hours=1))]
    assert not capped(rule, history, "in_app")
    assert not capped(rule, history, "email", ignore_caps=True)


# Quiet hours ----------------------------------------------------------------------------

NIGHT = QuietHours(time(21), time(8))


def test_quiet_hours_defer_to_the_end_of_the_window() -> None:
    rules = replace(RULES, quiet_hours=(NIGHT,))
    now = datetime(2026, 6, 10, 20, 0, tzinfo=UTC)  # 22:00 in Paris
    decision = decide(ask("sms", "email"), contact(), rules, now)
    assert decision.action == "defer"
    assert decision.until == datetime(2026, 6, 11, 6, 0, tzinfo=UTC)
    assert decision.reason == "sms: quiet hours until 08:00 Europe/Paris"
    assert reasons(decision, "email") == ("quiet hours until 08:00 Europe/Paris",)
    # at the end of the window it goes
    assert decide(ask("sms"), contact(), rules, decision.until).action == "send"  # type: ignore[arg-type]
    # just after midnight, the window still ends the same morning
    early = datetime(2026, 6, 10, 23, 0, tzinfo=UTC)
    assert decide(ask("sms"), contact(), rules, early).until == decision.until


def test_drop_suppresses_instead() -> None:
    rules = replace(RULES, quiet_hours=(NIGHT,))
    now = datetime(2026, 6, 10, 20, 0, tzinfo=UTC)
    decision = decide(ask("sms", quiet="drop"), contact(), rules, now)
    assert (decision.action, decision.reason) == ("suppress", "quiet hours")


def test_quiet_hours_on_some_channels_leave_the_others() -> None:
    rules = replace(RULES, quiet_hours=(QuietHours(time(21), time(8), frozenset({"sms"})),))
    now = datetime(2026, 6, 10, 20, 0, tzinfo=UTC)
    decision = decide(ask("sms", "email"), contact(), rules, now)
    assert (decision.action, decision.channel) == ("send", "email")


def test_a_channel_blocked_for_another_reason_is_not_deferred() -> None:
    rules = replace(RULES, quiet_hours=(NIGHT,))
    now = datetime(2026, 6, 10, 20, 0, tzinfo=UTC)
    decision = decide(ask("sms"), contact(opted_out=frozenset({"sms"})), rules, now)
    assert decision.action == "suppress"


def test_overlapping_windows_hand_over() -> None:
    rules = replace(RULES, quiet_hours=(NIGHT, QuietHours(time(7), time(9, 30))))
    now = datetime(2026, 6, 10, 20, 0, tzinfo=UTC)
    decision = decide(ask("sms"), contact(), rules, now)
    assert decision.until == datetime(2026, 6, 11, 7, 30, tzinfo=UTC)
    assert decision.reason == "sms: quiet hours until 09:30 Europe/Paris"


@pytest.mark.parametrize(
    ("zone", "now", "until"),
    [
        # spring forward: 22:00 CET, window ends 08:00 CEST
        (
            "Europe/Paris",
            datetime(2026, 3, 28, 21, 0, tzinfo=UTC),
            datetime(2026, 3, 29, 6, 0, tzinfo=UTC),
        ),
        # fall back: 22:00 CEST, window ends 08:00 CET
        (
            "Europe/Paris",
            datetime(2026, 10, 24, 20, 0, tzinfo=UTC),
            datetime(2026, 10, 25, 7, 0, tzinfo=UTC),
        ),
        (
            "America/New_York",
            datetime(2026, 3, 8, 2, 0, tzinfo=UTC),
            datetime(2026, 3, 8, 12, 0, tzinfo=UTC),
        ),
        (
            "America/New_York",
            datetime(2026, 11, 1, 2, 0, tzinfo=UTC),
            datetime(2026, 11, 1, 13, 0, tzinfo=UTC),
        ),
    ],
)
def test_quiet_hours_across_dst_nights(zone, now, until) -> None:
    rules = replace(RULES, quiet_hours=(NIGHT,))
    assert decide(ask("sms"), contact(timezone=zone), rules, now).until == until


def test_a_window_ending_in_the_spring_gap_ends_when_the_clock_jumps() -> None:
    rules = replace(RULES, quiet_hours=(QuietHours(time(1), time(2, 30)),))
    now = datetime(2026, 3, 29, 0, 15, tzinfo=UTC)  # 01:15 CET
    assert decide(ask("sms"), contact(), rules, now).until == datetime(
        2026, 3, 29, 1, 0, tzinfo=UTC
    )


def test_an_ambiguous_end_is_its_first_occurrence() -> None:
    rules = replace(RULES, quiet_hours=(QuietHours(time(1), time(2, 30)),))
    now = datetime(2026, 10, 24, 23, 15, tzinfo=UTC)  # 01:15 CEST
    assert decide(ask("sms"), contact(), rules, now).until == datetime(
        2026, 10, 25, 0, 30, tzinfo=UTC
    )


def test_an_invalid_timezone_is_utc() -> None:
    rules = replace(RULES, quiet_hours=(NIGHT,))
    decision = decide(ask("sms"), contact(timezone="Mars/Olympus"), rules, NOW.replace(hour=22))
    assert decision.reason == "sms: quiet hours until 08:00 UTC"


# Ranking ---------------------------------------------------------------------------------

FIVE = ("email", "sms", "whatsapp", "line", "messenger")
EVERYWHERE = {channel: "active" for channel in ("email", "sms", "whatsapp", "line", "messenger")}


def test_brazil_gets_whatsapp() -> None:
    decision = decide(ask(*FIVE), contact(country="BR", addresses=EVERYWHERE), RULES, NOW)
    assert (decision.channel, decision.reason) == ("whatsapp", "whatsapp: the usual app in BR")


def test_japan_gets_line() -> None:
    decision = decide(ask(*FIVE), contact(country="JP", addresses=EVERYWHERE), RULES, NOW)
    assert decision.channel == "line"


def test_the_us_gets_messenger_when_eligible() -> None:
    us = contact(country="US", addresses=EVERYWHERE, timezone="America/Chicago")
    assert decide(ask(*FIVE), us, RULES, NOW).channel == "messenger"
    closed = ask(*FIVE, session_only=frozenset({"messenger"}))
    decision = decide(closed, us, RULES, NOW)
    assert decision.channel == "sms"
    assert decision.reason == "sms: 2nd of the usual apps in US"


def test_only_a_phone_and_no_chat_app_means_sms() -> None:
    facts = contact(country="BR", addresses={"sms": "active"})
    assert decide(ask(*FIVE), facts, RULES, NOW).channel == "sms"


def test_the_preferred_channel_beats_the_country() -> None:
    facts = contact(country="BR", addresses=EVERYWHERE, preferred_channel="email")
    decision = decide(ask(*FIVE), facts, RULES, NOW)
    assert (decision.channel, decision.reason) == (
        "email",
        "email: the contact's preferred channel",
    )


def test_engagement_beats_the_country() -> None:
    facts = contact(country="BR", addresses=EVERYWHERE, engagement={"email": (3, 4)})
    decision = decide(ask(*FIVE), facts, RULES, NOW)
    assert decision.channel == "email"
    assert decision.reason.startswith("email: the best engagement (3 of 4 engaged")
    # a poor record ranks below no record at all (the prior's 0.5)
    facts = replace(facts, engagement={"whatsapp": (0, 10)})
    assert decide(ask(*FIVE), facts, RULES, NOW).channel == "sms"  # BR's next usual app


def test_cost_then_the_marketers_order_break_ties() -> None:
    facts = contact(country=None, addresses={"email": "active", "sms": "active"})
    decision = decide(ask("sms", "email"), facts, RULES, NOW)
    assert (decision.channel, decision.reason) == ("email", "email: cheaper than sms")
    decision = decide(ask("push", "in_app"), contact(country=None), RULES, NOW)
    assert (decision.channel, decision.reason) == ("push", "push: first in the marketer's order")
    costs = {"sms": 0.001, "email": 0.01}
    assert decide(ask("sms", "email"), facts, replace(RULES, costs=costs), NOW).channel == "sms"


def test_a_single_eligible_channel() -> None:
    decision = decide(ask("email"), contact(), RULES, NOW)
    assert decision.reason == "email: the only eligible channel"


def test_a_workspace_overrides_the_country_table() -> None:
    rules = replace(RULES, country_apps={"BR": ("line", "sms")})
    facts = contact(country="BR", addresses=EVERYWHERE)
    assert decide(ask(*FIVE), facts, rules, NOW).channel == "line"
    assert COUNTRY_APPS["BR"][0] == "whatsapp"


def test_exclude_falls_back_to_the_next_and_fallbacks_are_in_rank_order() -> None:
    facts = contact(country="BR", addresses=EVERYWHERE)
    first = decide(ask(*FIVE), facts, RULES, NOW)
    assert first.fallbacks() == ("sms", "messenger", "email", "line")  # then by cost
    second = decide(ask(*FIVE, exclude=frozenset({"whatsapp"})), facts, RULES, NOW)
    assert second.channel == "sms"
    assert second.fallbacks() == first.fallbacks()[1:]
    assert reasons(second, "whatsapp") == ("already tried",)


def test_scores_are_recorded_and_the_record_is_json() -> None:
    rules = replace(RULES, quiet_hours=(NIGHT,))
    facts = contact(country="BR", addresses=EVERYWHERE, opted_out=frozenset({"sms"}))
    decision = decide(ask(*FIVE), facts, rules, NOW)
    record = orjson.loads(orjson.dumps(decision.as_dict()))
    assert record["action"] == "send" and record["channel"] == "whatsapp"
    assert record["considered"][0] == {
        "channel": "whatsapp",
        "eligible": True,
        "reasons": [],
        "score": [1.0, -0.5, 0.0, 0.005, 2.0],
    }
    assert {"channel": "sms", "eligible": False, "reasons": ["opted out"], "score": None} in record[
        "considered"
    ]
    deferred = decide(ask("sms"), contact(), rules, NOW.replace(hour=21))
    assert orjson.loads(orjson.dumps(deferred.as_dict()))["until"] == "2026-06-11T06:00:00+00:00"


def test_every_country_lists_known_channels() -> None:
    for country, apps in COUNTRY_APPS.items():
        assert len(country) == 2 and country.isupper()
        assert set(apps) <= EVERY and len(set(apps)) == len(apps)


# Invariants ------------------------------------------------------------------------------

CAPS = (
    CapRule("daily-2", 2, 1, "days"),
    CapRule("hourly-1", 1, 3, "hours", channel="sms"),
    CapRule("weekly-3-promo", 3, 1, "weeks", topic="promo"),
)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=600),
            st.sampled_from(["promo", "news", "transactional"]),
            st.lists(st.sampled_from(["email", "sms", "push", "in_app"]), min_size=1, max_size=4),
        ),
        max_size=40,
    ),
    zone=st.sampled_from(["Europe/Paris", "America/New_York", "Asia/Tokyo"]),
)
def test_a_cap_is_never_exceeded_and_decisions_are_deterministic(steps, zone) -> None:
    rules = replace(RULES, caps=CAPS)
    facts = contact(timezone=zone)
    now = datetime(2026, 3, 27, tzinfo=UTC)  # across Europe's spring-forward night
    history: list[PastSend] = []  # newest first, as ContactFacts takes it
    capped_sends: list[PastSend] = []  # those the caps applied to
    for minutes, category, candidates in steps:
        now += timedelta(minutes=minutes)
        message = ask(*candidates, category=category)
        decision = decide(message, replace(facts, history=tuple(history)), rules, now)
        assert decision == decide(message, replace(facts, history=list(history)), rules, now)
        if decision.action == "send":
            assert decision.channel is not None
            topic = None if category == "transactional" else category
            history.insert(0, PastSend(now, decision.channel, topic))
            if topic is not None and decision.channel != "in_app":
                capped_sends.append(history[0])
    local_days = Counter(send.at.astimezone(ZoneInfo(zone)).date() for send in capped_sends)
    assert all(count <= 2 for count in local_days.values())
    sms = [send.at for send in capped_sends if send.channel == "sms"]
    assert all(later - earlier >= timedelta(hours=3) for earlier, later in pairwise(sms))


def test_a_window_that_starts_where_it_ends_is_empty() -> None:
    rules = replace(RULES, quiet_hours=(QuietHours(time(8), time(8)),))
    assert decide(ask("sms"), contact(), rules, NOW).action == "send"


def test_decisions_are_frozen_and_name_a_channel_only_when_sending() -> None:
    rules = replace(RULES, quiet_hours=(NIGHT,))
    deferred = decide(ask("sms"), contact(), rules, NOW.replace(hour=21))
    assert (deferred.action, deferred.channel, deferred.fallbacks()) == ("defer", None, ())
    with pytest.raises(FrozenInstanceError):
        deferred.considered[0].eligible = True  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        deferred.action = "send"  # type: ignore[misc]
