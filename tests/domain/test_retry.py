"""Full-jitter backoff, honouring Retry-After, then dead."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from junction.domain.retry import RetryPolicy

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(base_seconds=2, cap_seconds=600, max_attempts=5)


@pytest.mark.parametrize(
    ("attempts", "draw", "seconds"),
    [
        (1, 0.5, 1.0),  # ceiling 2 s
        (2, 0.5, 2.0),  # ceiling 4 s
        (3, 0.999, 7.992),  # ceiling 8 s
        (4, 0.0, 0.0),  # full jitter may retry at once
    ],
)
def test_the_ceiling_doubles_and_the_draw_picks_below_it(attempts, draw, seconds) -> None:
    assert POLICY.next_attempt(attempts, NOW, draw) == NOW + timedelta(seconds=seconds)


def test_the_ceiling_is_capped() -> None:
    policy = RetryPolicy(base_seconds=2, cap_seconds=60, max_attempts=50)
    assert policy.next_attempt(30, NOW, 0.5) == NOW + timedelta(seconds=30)


def test_retry_after_is_a_floor() -> None:
    assert POLICY.next_attempt(1, NOW, 0.1, retry_after=30) == NOW + timedelta(seconds=30)
    # …but a shorter Retry-After does not shorten the backoff
    assert POLICY.next_attempt(4, NOW, 1.0, retry_after=1) == NOW + timedelta(seconds=16)


def test_after_the_last_attempt_there_is_none() -> None:
    assert POLICY.next_attempt(5, NOW, 0.5) is None
