"""When to try a failed send again: full-jitter exponential backoff, honouring Retry-After.

    delay(n) = uniform(0, min(cap, base * 2**n)), never less than what the provider asked for

After ``max_attempts`` attempts a message is dead (kept, and replayable by hand). The random
draw is passed in, so the policy is a pure function.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_seconds: float = 2.0
    cap_seconds: float = 3600.0
    max_attempts: int = 8

    def next_attempt(
        self, attempts: int, now: datetime, draw: float, retry_after: float | None = None
    ) -> datetime | None:
        """When attempt number ``attempts + 1`` may start, or None when retries are spent.

        ``attempts`` counts the attempts made so far (>= 1); ``draw`` is uniform in [0, 1).
        """
        if attempts >= self.max_attempts:
            return None
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** (attempts - 1))
        delay = draw * ceiling
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.cap_seconds))
        return now + timedelta(seconds=delay)
