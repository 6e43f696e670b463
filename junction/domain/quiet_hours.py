"""Quiet hours: the local times at which a workspace's messages wait (or are dropped).

Rules kept here:
- a window is [start, end) in the contact's local time (DST-correct), may cross midnight,
  and applies to the channels listed (every channel when none are); a window whose start
  equals its end is empty;
- an end time that does not exist locally (the spring-forward gap) ends the window when the
  clock jumps, an ambiguous one at its first occurrence;
- overlapping windows hand over, so a deferral lasts until none covers the channel.

Which messages wait and which are dropped is the policy's call:
``junction.domain.reachability``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo

from junction.domain.localtime import local_to_utc


@dataclass(frozen=True, slots=True)
class QuietHours:
    start: time  # naive local wall times
    end: time
    channels: frozenset[str] = frozenset()  # empty: every channel


def in_window(window: QuietHours, wall: time) -> bool:
    start, end = window.start, window.end
    if start <= end:
        return start <= wall < end
    return wall >= start or wall < end


def covering(windows: Sequence[QuietHours], wall: time) -> tuple[bool, frozenset[str]]:
    """Whether the windows cover every channel at local ``wall`` time, else which ones."""
    named: set[str] = set()
    for window in windows:
        if in_window(window, wall):
            if not window.channels:
                return True, frozenset()
            named.update(window.channels)
    return False, frozenset(named)


def quiet_until(windows: Sequence[QuietHours], now: datetime, tz: tzinfo) -> tuple[datetime, time]:
    """When the windows covering ``now`` are all over (UTC, and the local wall end)."""
    moment, local, end_wall = now, now.astimezone(tz), time(0)
    # Overlapping windows hand over to each other; the bound stops a day-long cover.
    for _ in range(2 * len(windows) + 2):
        wall = local.time().replace(tzinfo=None)
        active = [window for window in windows if in_window(window, wall)]
        if not active:
            break
        ends = []
        for window in active:
            day = local.date() if wall < window.end else local.date() + timedelta(days=1)
            ends.append((local_to_utc(day, window.end, tz), window.end))
        moment, end_wall = max(ends)
        local = moment.astimezone(tz)
    return moment, end_wall
