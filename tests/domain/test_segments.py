"""The segment rule with plain values: each condition kind, the time its answer may change,
aggregates folded in any order, which people batch evaluation may skip, and definitions
refused with the field named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from junction.domain.segments import (
    MAX_RECENT,
    Aggregate,
    Facts,
    bucket_of,
    fold,
    parse,
    signal_key,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
T = NOW.timestamp()
HOUR, DAY = 3600.0, 86400.0
CART, ORDER = signal_key("Added to Cart", {}), signal_key("Order Completed", {})


def rule(where: dict[str, Any]) -> Any:
    return parse({"key": "s", "where": where}).compile()


def times(*ago: float, keep: float = 30 * DAY) -> Aggregate:
    folded = fold(None, [T - a for a in ago], keep, T)
    assert folded is not None
    return folded


def facts(traits: dict[str, Any] | None = None, **signals: Aggregate) -> Facts:
    by_key = {CART: signals.get("cart"), ORDER: signals.get("order")}
    return Facts(7, traits or {}, {k: v for k, v in by_key.items() if v is not None})


def verdict(where: dict[str, Any], person: Facts, now: datetime = NOW) -> tuple[bool, Any]:
    answer = rule(where).evaluate(person, now)
    recheck = None if answer.recheck_at is None else answer.recheck_at - now.timestamp()
    return answer.member, recheck


# --- traits --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "traits", "member"),
    [
        ({"trait": "plan", "value": "pro"}, {"plan": "pro"}, True),
        ({"trait": "plan", "op": "ne", "value": "pro"}, {}, True),
        ({"trait": "plan", "op": "in", "value": ["pro", "team"]}, {"plan": "free"}, False),
        ({"trait": "address.city", "value": "Lyon"}, {"address": {"city": "Lyon"}}, True),
        ({"trait": "ltv", "op": "between", "value": [10, 20]}, {"ltv": 20}, True),
        ({"trait": "ltv", "op": "between", "value": [10, 20]}, {"ltv": 21}, False),
        ({"trait": "ltv", "op": "gt", "value": 10}, {"ltv": "11"}, False),  # no coercion
        ({"trait": "born", "op": "before", "value": "2000-01-01"}, {"born": "1999-12-31"}, True),
        ({"trait": "born", "op": "after", "value": "2000-01-01"}, {"born": "someday"}, False),
        ({"trait": "email", "op": "exists", "value": False}, {}, True),
    ],
)
def test_trait_conditions(condition: dict[str, Any], traits: dict[str, Any], member: bool) -> None:
    assert verdict(condition, facts(traits))[0] is member


def test_relative_dates_say_when_they_change() -> None:
    ten_days_ago = (NOW - timedelta(days=10)).isoformat()
    week = {"amount": 7, "unit": "days"}
    month = {"amount": 30, "unit": "days"}
    person = facts({"signedUpAt": ten_days_ago})
    assert verdict({"trait": "signedUpAt", "op": "withinLast", "value": week}, person) == (
        False,
        None,
    )
    assert verdict({"trait": "signedUpAt", "op": "withinLast", "value": month}, person) == (
        True,
        20 * DAY,
    )
    assert verdict({"trait": "signedUpAt", "op": "moreThanAgo", "value": month}, person) == (
        False,
        20 * DAY,
    )


# --- events --------------------------------------------------------------------------------


def test_performed_at_least_within_a_window_rechecks_when_the_oldest_leaves() -> None:
    condition = {
        "performed": "Added to Cart",
        "atLeast": 2,
        "within": {"amount": 7, "unit": "days"},
    }
    person = facts(cart=times(6 * DAY, 1 * DAY, 20 * DAY))
    assert verdict(condition, person) == (True, 1 * DAY)  # the 6-day-old one leaves in a day
    assert verdict(condition, facts(cart=times(1 * DAY)))[0] is False


def test_performed_at_most_counts_never_as_zero() -> None:
    condition = {"performed": "Added to Cart", "atMost": 1}
    assert verdict(condition, facts())[0] is True
    assert verdict(condition, facts(cart=times(1, 2)))[0] is False
    assert rule(condition).requirement is None  # anyone may match: no prefilter


def test_not_followed_by_within_an_hour() -> None:
    condition = {
        "performed": "Added to Cart",
        "notFollowedBy": {"event": "Order Completed", "within": {"amount": 1, "unit": "hours"}},
        "within": {"amount": 7, "unit": "days"},
    }
    just_added = facts(cart=times(10 * 60))
    assert verdict(condition, just_added) == (False, 50 * 60)  # the hour is not over yet
    abandoned = facts(cart=times(2 * HOUR))
    assert verdict(condition, abandoned) == (True, 7 * DAY - 2 * HOUR)
    bought_in_time = facts(cart=times(2 * HOUR), order=times(90 * 60))
    assert verdict(condition, bought_in_time) == (False, None)
    bought_late = facts(cart=times(3 * HOUR), order=times(HOUR))
    assert verdict(condition, bought_late)[0] is True
    old_cart = facts(cart=times(8 * DAY))
    assert verdict(condition, old_cart) == (False, None)
    # The latest cart counts: a purchase after an earlier cart does not cover a new one.
    new_cart = facts(cart=times(5 * HOUR, 2 * HOUR), order=times(4 * HOUR))
    assert verdict(condition, new_cart)[0] is True


def test_not_followed_by_at_all() -> None:
    condition = {"performed": "Added to Cart", "notFollowedBy": {"event": "Order Completed"}}
    assert verdict(condition, facts(cart=times(DAY)))[0] is True
    assert verdict(condition, facts(cart=times(DAY), order=times(2 * DAY)))[0] is True
    assert verdict(condition, facts(cart=times(DAY), order=times(HOUR)))[0] is False
    assert verdict(condition, facts(order=times(HOUR)))[0] is False


def test_last_performed_more_than_ago() -> None:
    condition = {"lastPerformed": "Added to Cart", "moreThan": {"amount": 30, "unit": "days"}}
    assert verdict(condition, facts(cart=times(40 * DAY, 31 * DAY))) == (True, None)
    assert verdict(condition, facts(cart=times(40 * DAY, 2 * DAY))) == (False, 28 * DAY)
    assert verdict(condition, facts())[0] is False
    assert verdict({**condition, "orNever": True}, facts())[0] is True


def test_engagement_is_a_message_event_of_the_campaign_or_journey_step() -> None:
    opened = rule({"engaged": "opened", "journey": "launch", "step": "email"})
    key = signal_key("message.opened", {"journey": "launch", "step": "email"})
    assert list(opened.signals) == [key]
    person = Facts(1, {}, {key: times(HOUR)})
    assert opened.evaluate(person, NOW).member is True
    received = rule({"engaged": "received", "campaign": "spring"})
    assert [s.event for s in received.signals.values()] == ["message.sent"]


def test_reachable_and_bucket() -> None:
    person = Facts(7, {}, {}, frozenset({"email", "sms"}))
    assert verdict({"reachable": "sms"}, person)[0] is True
    assert verdict({"reachable": "push"}, person)[0] is False
    bucket = bucket_of(7, "")
    assert verdict({"bucket": {"from": bucket, "to": bucket + 1}}, person)[0] is True
    assert verdict({"bucket": {"from": bucket + 1, "to": 100}}, person)[0] is False


def test_buckets_split_people_evenly_and_salts_reshuffle_them() -> None:
    buckets = [bucket_of(contact, "") for contact in range(20_000)]
    tenth = sum(1 for b in buckets if b < 10)
    assert 1800 < tenth < 2200
    salted = [bucket_of(contact, "holdout-2") for contact in range(20_000)]
    assert sum(a == b for a, b in zip(buckets, salted, strict=True)) < 400


def test_all_any_not_combine_and_take_the_earliest_recheck() -> None:
    window = {"amount": 7, "unit": "days"}
    condition = {
        "all": [
            {"trait": "plan", "value": "pro"},
            {
                "any": [
                    {"performed": "Added to Cart", "within": window},
                    {"not": {"reachable": "email"}},
                ]
            },
        ]
    }
    pro = facts({"plan": "pro"}, cart=times(DAY))
    assert verdict(condition, pro) == (True, 6 * DAY)
    assert verdict(condition, facts({"plan": "free"}, cart=times(DAY)))[0] is False


# --- aggregates ----------------------------------------------------------------------------


@given(
    st.lists(st.floats(min_value=0, max_value=60 * DAY), max_size=40),
    st.integers(min_value=0, max_value=40),
)
def test_folding_in_any_order_gives_the_same_aggregate(ago: list[float], cut: int) -> None:
    keep = 30 * DAY
    moments = [T - a for a in ago]
    whole = fold(None, moments, keep, T)
    parts = fold(fold(None, moments[cut:], keep, T), moments[:cut], keep, T)
    reversed_parts = fold(fold(None, moments[:cut], keep, T), moments[cut:], keep, T)
    assert whole == parts == reversed_parts
    if whole is not None:
        assert whole.count == len(ago)
        assert list(whole.recent) == sorted(m for m in moments if m >= T - keep)


def test_an_aggregate_keeps_at_most_the_latest_recent_times() -> None:
    folded = fold(None, [T - i for i in range(MAX_RECENT + 50)], DAY, T)
    assert folded is not None
    assert len(folded.recent) == MAX_RECENT
    assert folded.recent[-1] == T
    assert folded.count == MAX_RECENT + 50


# --- batch prefilter -----------------------------------------------------------------------


def test_batch_evaluation_may_skip_people_without_a_required_signal() -> None:
    week = {"amount": 7, "unit": "days"}
    cart = {"performed": "Added to Cart", "within": week}
    assert rule(cart).requirement.alternatives == ((CART, 7 * DAY),)
    both = rule({"any": [cart, {"lastPerformed": "Order Completed", "moreThan": week}]})
    assert both.requirement.alternatives == ((CART, 7 * DAY), (ORDER, None))
    assert rule({"any": [cart, {"trait": "vip", "value": True}]}).requirement is None
    assert rule({"not": cart}).requirement is None
    assert rule({"all": [{"trait": "vip", "value": True}, cart]}).requirement is not None


# --- definitions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "location", "message"),
    [
        ({"trait": "plan", "op": "like"}, ("where", "trait", "op"), "Input should be"),
        ({"colour": "red"}, ("where",), "not a condition"),
        ({"performed": "A", "atLeast": 3, "atMost": 1}, ("where", "performed"), "atLeast"),
        ({"reachable": "pigeon"}, ("where", "reachable"), "'pigeon' is not one of"),
        ({"bucket": {"from": 50, "to": 10}}, ("where", "bucket", "bucket"), "'from' must be"),
        ({"engaged": "opened", "step": "x", "campaign": "c"}, ("where", "engaged"), "journey"),
        ({"all": []}, ("where", "all", "all"), "at least 1"),
        ({"trait": "d", "op": "withinLast", "value": 3}, ("where", "trait"), "Period"),
    ],
)
def test_bad_definitions_are_refused_with_the_field_named(
    where: dict[str, Any], location: tuple[str, ...], message: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        parse({"key": "s", "where": where})
    errors = raised.value.errors()
    assert any(tuple(map(str, e["loc"]))[: len(location)] == location for e in errors), errors
    assert any(message in e["msg"] for e in errors), errors
