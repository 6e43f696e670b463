"""The segment engine's round: new events folded into aggregates and the people they are
about decided again, then memberships whose time has come decided again
(``junction.store.segments`` holds the rules)."""

from __future__ import annotations

from datetime import timedelta

from junction.clock import Clock
from junction.engine.journeys import POSTGRES_GRACE
from junction.store import segments
from junction.store.database import Database


class SegmentEngine:
    def __init__(
        self, database: Database, clock: Clock, grace: timedelta | None = None, batch: int = 2000
    ) -> None:
        self.database = database
        self.clock = clock
        self.batch = batch
        if grace is None:
            grace = timedelta(0) if database.is_sqlite else POSTGRES_GRACE
        self.grace = grace

    def run_once(self) -> int:
        """One batch of events and one of due rechecks; returns how many it handled."""
        now = self.clock.now()
        with self.database.read() as conn:  # most rounds have nothing to do: no write
            has_events = segments.pending_events(conn, now, self.grace)
            has_rechecks = segments.due_rechecks(conn, now)
        handled = 0
        if has_events:
            with self.database.write() as conn:
                handled += segments.on_events(conn, now, self.grace, self.batch)
        if has_rechecks:
            with self.database.write() as conn:
                handled += segments.fire_rechecks(conn, now, self.batch)
        return handled
