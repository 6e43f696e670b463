"""Quiet-hours windows on their own (deferrals and drops are tested through the policy, in
``test_reachability``)."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from junction.domain.quiet_hours import QuietHours, covering, in_window, quiet_until

NIGHT = QuietHours(time(21), time(8))
SMS_EVENING = QuietHours(time(18), time(22), frozenset({"sms"}))


def test_a_window_may_cross_midnight_and_is_half_open() -> None:
    assert in_window(NIGHT, time(23)) and in_window(NIGHT, time(7, 59))
    assert not in_window(NIGHT, time(8)) and not in_window(NIGHT, time(20, 59))
    assert not in_window(QuietHours(time(8), time(8)), time(8))  # start == end: empty


def test_covering_names_the_channels_or_says_all() -> None:
    assert covering((SMS_EVENING,), time(19)) == (False, frozenset({"sms"}))
    assert covering((SMS_EVENING, NIGHT), time(21, 30)) == (True, frozenset())
    assert covering((SMS_EVENING, NIGHT), time(12)) == (False, frozenset())


def test_overlapping_windows_hand_over() -> None:
    paris = ZoneInfo("Europe/Paris")
    now = datetime(2026, 6, 1, 16, 30, tzinfo=UTC)  # 18:30 in Paris
    # 18:00-22:00 then 21:00-08:00: quiet until 08:00 the next morning.
    assert quiet_until((SMS_EVENING, NIGHT), now, paris) == (
        datetime(2026, 6, 2, 6, 0, tzinfo=UTC),
        time(8),
    )
