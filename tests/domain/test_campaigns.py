"""The pure parts of campaigns: the definition's rules, stable assignment to variants and
control, local-time due times across timezones and DST, the throttle, the winner."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from junction.domain.campaigns import (
    MAIN,
    CampaignDefinition,
    Variant,
    VariantScore,
    allowance,
    assign,
    due_at,
    first_due,
    last_due,
    local_due,
    pick,
    winner,
)

MESSAGE = {"template": "promo", "channel": "email", "category": "offers"}


def definition(**fields: Any) -> CampaignDefinition:
    return CampaignDefinition.model_validate(
        {"key": "sale", "audience": "everyone", "message": MESSAGE, **fields}
    )


def test_the_definitions_rules() -> None:
    assert definition().segment is None
    assert definition(audience={"segment": "vip"}).segment == "vip"
    bad = [
        {"message": {**MESSAGE, "channels": ["sms"]}},  # both channel and channels
        {"message": {"template": "promo", "category": "offers"}},  # neither
        {"message": {**MESSAGE, "channel": "webhook"}},
        {"variants": [{"key": "a"}, {"key": "a"}]},
        {"variants": [{"key": "a", "weight": 0}, {"key": "b", "weight": 0}]},
        {
            "variants": [{"key": "a"}],
            "abTest": {
                "testPercent": 10,
                "metric": "opened",
                "after": {"amount": 1, "unit": "hours"},
            },
        },
        {
            "variants": [{"key": "a"}, {"key": "b"}],
            "abTest": {
                "testPercent": 10,
                "metric": "converted",
                "after": {"amount": 1, "unit": "hours"},
            },
        },  # no goal
        {"schedule": {"at": "2026-12-01T09:00:00"}},  # no offset, not local
        {"schedule": {"at": "2026-12-01T09:00:00Z", "localTime": True}},
        {"control": {"percent": 100}},
    ]
    for fields in bad:
        with pytest.raises(ValidationError):
            definition(**fields)


def test_assignment_is_stable_and_follows_the_shares() -> None:
    campaign = definition(
        variants=[{"key": "a", "weight": 3}, {"key": "b", "weight": 1}],
        control={"percent": 10},
    )
    first = [assign(campaign, contact) for contact in range(20_000)]
    assert first == [assign(campaign, contact) for contact in range(20_000)]
    groups = Counter(a.variant or a.group for a in first)
    assert 1_700 < groups["control"] < 2_300
    assert 2.6 < groups["a"] / groups["b"] < 3.4
    # Another campaign draws other people.
    other = definition(key="other", control={"percent": 10})
    assert [assign(other, c).group for c in range(200)] != [a.group for a in first[:200]]
    assert assign(definition(), 7).variant == MAIN


def test_ab_test_holds_the_rest_back() -> None:
    campaign = definition(
        variants=[{"key": "a"}, {"key": "b"}],
        abTest={"testPercent": 20, "metric": "clicked", "after": {"amount": 4, "unit": "hours"}},
    )
    groups = Counter(assign(campaign, c).group for c in range(10_000))
    assert 1_800 < groups["send"] < 2_200 and groups["send"] + groups["held"] == 10_000
    assert all(
        assign(campaign, c).variant is None
        for c in range(50)
        if assign(campaign, c).group == "held"
    )


def test_pick_by_weight() -> None:
    variants = [
        Variant(key="a", weight=1),
        Variant(key="off", weight=0),
        Variant(key="b", weight=1),
    ]
    assert pick(variants, 0.0) == "a" and pick(variants, 0.49) == "a"
    assert pick(variants, 0.5) == "b" and pick(variants, 0.999) == "b"


def test_local_due_across_timezones_and_dst() -> None:
    wall = datetime(2026, 11, 21, 10, 0)
    assert local_due(wall, "Asia/Tokyo") == datetime(2026, 11, 21, 1, 0, tzinfo=UTC)
    assert local_due(wall, "America/New_York") == datetime(2026, 11, 21, 15, 0, tzinfo=UTC)
    assert local_due(wall, None) == local_due(wall, "Not/AZone") == wall.replace(tzinfo=UTC)
    # Summer time in Paris (UTC+2), winter (UTC+1).
    assert local_due(datetime(2026, 7, 1, 9), "Europe/Paris").hour == 7
    assert local_due(datetime(2026, 12, 1, 9), "Europe/Paris").hour == 8
    # 02:30 does not exist on 29 March 2026 in Paris: it lands the gap later, 03:30 CEST.
    assert local_due(datetime(2026, 3, 29, 2, 30), "Europe/Paris") == datetime(
        2026, 3, 29, 1, 30, tzinfo=UTC
    )
    # 02:30 happens twice on 25 October 2026: the first time, still CEST.
    assert local_due(datetime(2026, 10, 25, 2, 30), "Europe/Paris") == datetime(
        2026, 10, 25, 0, 30, tzinfo=UTC
    )


def test_due_at_and_the_schedule_window() -> None:
    started = datetime(2026, 11, 21, 5, 0, tzinfo=UTC)
    assert due_at(definition(), "Asia/Tokyo", started) == started
    local = definition(schedule={"at": "2026-11-21T10:00:00", "localTime": True})
    assert due_at(local, "Asia/Tokyo", started) == started  # passed there: at once
    assert due_at(local, "Europe/Paris", started) == datetime(2026, 11, 21, 9, tzinfo=UTC)
    assert first_due(local) == datetime(2026, 11, 20, 20, tzinfo=UTC)  # UTC+14
    assert last_due(local) == datetime(2026, 11, 21, 22, tzinfo=UTC)  # UTC-12
    fixed = definition(schedule={"at": "2026-11-21T10:00:00+01:00"})
    assert first_due(fixed) == last_due(fixed) == datetime(2026, 11, 21, 9, tzinfo=UTC)
    assert first_due(definition()) is None


def test_throttle_allowance() -> None:
    assert allowance(None, 10_000) is None
    assert allowance(100, 0) == 100
    assert allowance(100, 60) == 40
    assert allowance(100, 150) == 0


def test_winner_by_rate_ties_to_the_first() -> None:
    order = ["a", "b", "c"]
    assert winner(order, {"a": VariantScore(100, 10), "b": VariantScore(50, 10)}) == "b"
    assert winner(order, {"a": VariantScore(100, 10), "b": VariantScore(100, 10)}) == "a"
    assert winner(order, {}) == "a"
    assert VariantScore(0, 0).rate == 0.0
