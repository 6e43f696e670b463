"""Wall-clock times in a contact's timezone."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from junction.domain.localtime import local_to_utc, zone


def test_local_to_utc() -> None:
    day = datetime(2026, 3, 8).date()
    assert local_to_utc(day, time(2, 30), ZoneInfo("America/New_York")) == datetime(
        2026, 3, 8, 7, 0, tzinfo=UTC
    )


def test_a_wall_time_clocks_go_back_through_is_its_first_occurrence() -> None:
    paris = ZoneInfo("Europe/Paris")  # 03:00 CEST became 02:00 CET on 2026-10-25
    assert local_to_utc(date(2026, 10, 25), time(2, 30), paris) == datetime(
        2026, 10, 25, 0, 30, tzinfo=UTC
    )


def test_an_unknown_or_missing_zone_is_utc() -> None:
    assert zone("Mars/Olympus") is UTC
    assert zone(None) is UTC
    assert zone("Asia/Tokyo") == ZoneInfo("Asia/Tokyo")
