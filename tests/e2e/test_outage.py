"""A provider outage: Twilio answers 503, then 429 with Retry-After, then hangs, for a while.
Nothing is lost, nothing goes twice, back-off shows in the attempt times, and everything
goes out once the provider recovers — on both databases."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from itertools import pairwise

from junction.engine.dispatcher import Dispatcher
from junction.store.sends import get_message
from tests.channels.test_twilio import config, queue_sms, use_twilio
from tests.fakes.twilio import FakeTwilio

PEOPLE = 30


def test_nothing_is_lost_or_doubled_through_an_outage(database, clock, tenant) -> None:
    fake = FakeTwilio()
    with fake.serve():
        use_twilio(database, tenant, clock, config(fake, timeout=0.5))
        ids = [
            queue_sms(database, tenant, clock, f"u{i}", f"+3361234{i:04d}") for i in range(PEOPLE)
        ]
        fake.fail_next(12, status=503)
        fake.fail_next(8, status=429, retry_after=20)
        fake.hang_next(3)

        rounds = 0
        while len(fake.messages) < PEOPLE and rounds < 30:
            asyncio.run(Dispatcher(database, clock).drain())
            clock.advance(timedelta(seconds=30))
            rounds += 1

        sent_to = [request.form["To"] for request in fake.messages]
        assert sorted(sent_to) == sorted(f"+3361234{i:04d}" for i in range(PEOPLE))  # once each
        with database.read() as conn:
            shown = [get_message(conn, tenant.id, message_id) for message_id in ids]
    assert {m["status"] for m in shown} == {"sent"}
    retried = [m for m in shown if m["attempts"] > 1]
    assert len(retried) >= 12  # every message that met the outage tried again
    for message in retried:
        history = message["history"]
        for earlier, later in pairwise(history):
            # the next attempt never started before the back-off said it could
            assert datetime.fromisoformat(later["startedAt"]) >= datetime.fromisoformat(
                earlier["retryAt"]
            )
    rate_limited = [h for m in shown for h in m["history"] if h["error"] and "429" in h["error"]]
    assert rate_limited, "some attempts met the 429s"
    for attempt in rate_limited:  # Retry-After: 20 is a floor under the back-off
        waited = datetime.fromisoformat(attempt["retryAt"]) - datetime.fromisoformat(
            attempt["finishedAt"]
        )
        assert waited >= timedelta(seconds=20)
    timed_out = [h for m in shown for h in m["history"] if h["error"] and "answer" in h["error"]]
    assert len(timed_out) == 3
