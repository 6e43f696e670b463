"""Cap rules as a workspace saves them (how caps block sends is tested through the policy, in
``test_reachability``)."""

from __future__ import annotations

from junction.domain.caps import CapRule, check_rules
from junction.domain.reachability import CHANNELS


def test_check_rules() -> None:
    assert check_rules([CapRule("d", 2, 1, "days")], CHANNELS) == []
    assert check_rules([CapRule(str(i), 1, 1, "days") for i in range(11)], CHANNELS) == [
        "11 cap rules; at most 10"
    ]
    assert check_rules(
        [
            CapRule("a", 0, 31, "days"),
            CapRule("a", 1, 5, "weeks", channel="fax"),
            CapRule("m", 1, 43201, "minutes"),
            CapRule("h", 1, 720, "hours"),
        ],
        CHANNELS,
    ) == [
        "cap rule a: the limit must be at least 1",
        "cap rule a: the window is over 30 days",
        "cap rule a: the id is used twice",
        "cap rule a: the window is over 30 days",
        "cap rule a: unknown channel 'fax'",
        "cap rule m: the window is over 30 days",
    ]
