"""The journey engine's round: scheduled journeys fired, events matched to runs, due timers
fired — each batch one transaction (``junction.store.journey_runs`` holds the rules)."""

from __future__ import annotations

from datetime import timedelta

from junction.clock import Clock
from junction.store import journey_runs
from junction.store.database import Database

# On PostgreSQL, how long an event waits before the cursor may pass it (transactions commit
# out of id order); SQLite has one writer, so ids commit in order.
POSTGRES_GRACE = timedelta(seconds=2)


class JourneyEngine:
    def __init__(
        self, database: Database, clock: Clock, grace: timedelta | None = None, batch: int = 1000
    ) -> None:
        self.database = database
        self.clock = clock
        self.batch = batch
        if grace is None:
            grace = timedelta(0) if database.is_sqlite else POSTGRES_GRACE
        self.grace = grace

    def run_once(self) -> int:
        """One batch of events and one of timers; returns how many it handled."""
        now = self.clock.now()
        with self.database.read() as conn:  # most rounds have nothing to do: no write
            has_events = journey_runs.pending_events(conn, now, self.grace)
            has_timers = journey_runs.due_timers(conn, now)
            has_schedules = journey_runs.due_schedules(conn, now)
        handled = 0
        if has_schedules:
            with self.database.write() as conn:
                handled += journey_runs.fire_schedules(conn, now) or 1
        if has_events:
            with self.database.write() as conn:
                handled += journey_runs.on_events(conn, now, self.grace, self.batch)
        if has_timers:
            with self.database.write() as conn:
                handled += journey_runs.fire_timers(conn, now, self.batch)
        return handled
