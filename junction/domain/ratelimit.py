"""Pacing sends to a provider's rate limit: each send reserves the next free slot.

At ``rate`` sends a second, slots are ``1 / rate`` apart; up to ``burst`` sends may go at
once after a quiet spell. ``reserve(now)`` says how long this send must wait for its slot.
Time is passed in (seconds on a monotonic clock), so the policy is a pure function of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Pace:
    rate: float  # sends per second
    burst: int = 1
    _next: float = field(default=float("-inf"), init=False)

    def reserve(self, now: float) -> float:
        """Take the next slot; returns the seconds to wait before sending (0: go now)."""
        interval = 1.0 / self.rate
        earliest = now - (self.burst - 1) * interval  # credit for a quiet spell, capped
        slot = max(self._next, earliest)
        self._next = slot + interval
        return max(0.0, slot - now)
