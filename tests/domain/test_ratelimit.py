"""Pacing: slots 1/rate apart, a burst after a quiet spell, never more."""

from __future__ import annotations

from junction.domain.ratelimit import Pace


def test_sends_are_spaced_by_the_rate() -> None:
    pace = Pace(rate=10)
    assert [round(pace.reserve(100.0), 3) for _ in range(4)] == [0.0, 0.1, 0.2, 0.3]


def test_a_burst_goes_at_once_after_a_quiet_spell() -> None:
    pace = Pace(rate=10, burst=3)
    assert [round(pace.reserve(5.0), 3) for _ in range(5)] == [0.0, 0.0, 0.0, 0.1, 0.2]


def test_quiet_time_does_not_pile_up_beyond_the_burst() -> None:
    pace = Pace(rate=10, burst=2)
    pace.reserve(0.0)
    waits = [round(pace.reserve(60.0), 3) for _ in range(4)]  # a minute later
    assert waits == [0.0, 0.0, 0.1, 0.2]


def test_waits_shrink_as_time_passes() -> None:
    pace = Pace(rate=2)
    assert pace.reserve(0.0) == 0.0
    assert pace.reserve(0.0) == 0.5
    assert pace.reserve(0.75) == 0.25
