"""Wall-clock times in a contact's own timezone, and the instants they fall on."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@lru_cache(maxsize=1024)
def zone(name: str | None) -> tzinfo:
    """The contact's timezone; UTC when unknown or invalid."""
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def local_to_utc(day: date, wall: time, tz: tzinfo) -> datetime:
    """The first instant at which the local clock reads ``wall`` or later on ``day``.

    An ambiguous wall time (clocks going back) is its first occurrence; a wall time that never
    happens (clocks going forward) is the instant of the jump.
    """
    first = datetime.combine(day, wall, tzinfo=tz).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == datetime.combine(day, wall):
        return first
    # In the gap: fold=1 reads the wall time with the later offset, landing before the jump,
    # and fold=0 after it. Bisect on whole seconds for the jump itself.
    before = int(datetime.combine(day, wall, tzinfo=tz).replace(fold=1).timestamp())
    after = int(first.timestamp()) + 1
    offset = datetime.fromtimestamp(before, tz).utcoffset()
    while after - before > 1:
        middle = (before + after) // 2
        if datetime.fromtimestamp(middle, tz).utcoffset() == offset:
            before = middle
        else:
            after = middle
    return datetime.fromtimestamp(after, UTC)
