"""The campaign engine's round: scheduled campaigns whose time has come start (their audience
frozen), then each sending campaign queues one batch of its due recipients — each step one
transaction (``junction.store.campaigns`` holds the rules)."""

from __future__ import annotations

from junction.clock import Clock
from junction.store import campaigns
from junction.store.database import Database

# Messages waiting in the outbox beyond which campaigns stop queueing until it drains.
OUTBOX_BOUND = 4000


class CampaignEngine:
    def __init__(
        self,
        database: Database,
        clock: Clock,
        batch: int = 1000,
        outbox_bound: int | None = OUTBOX_BOUND,
    ) -> None:
        self.database = database
        self.clock = clock
        self.batch = batch
        self.outbox_bound = outbox_bound  # None: no bound (benchmarks of the queueing alone)

    def run_once(self) -> int:
        """Start what is due, and queue a batch of each sending campaign; how many
        campaigns started plus recipients handled (0: nothing to do now)."""
        now = self.clock.now()
        with self.database.read() as conn:  # most rounds have nothing to do: no write
            if not campaigns.due_work(conn, now):
                return 0
            sending = campaigns.sending_ids(conn, now)
        handled = 0
        with self.database.write() as conn:
            started = campaigns.start_due(conn, now)
        if started:
            handled += started
            with self.database.read() as conn:
                sending = campaigns.sending_ids(conn, now)
        for campaign_id in sending:
            with self.database.write() as conn:
                handled += campaigns.run_round(
                    conn, campaign_id, now, self.batch, self.outbox_bound
                )
        return handled
