"""The dispatcher: claims, sends, retries with backoff, gives up, recovers lost claims —
on both databases, with the scripted fake adapter."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from sqlalchemy import select

from junction.channels.base import AddressInvalid, PermanentFailure, RetryLater, SendResult
from junction.channels.fake import FakeAdapter
from junction.domain.retry import RetryPolicy
from junction.engine.dispatcher import Dispatcher, DispatcherSettings
from junction.store import outbox
from junction.store.database import Database
from junction.store.ingest import Batch, ingest
from junction.store.providers import set_channel_provider
from junction.store.sends import SendRequest, accept, get_message
from junction.store.tables import addresses, events
from tests.conftest import SECRET

SETTINGS = DispatcherSettings(
    batch_size=50,
    lease=timedelta(seconds=60),
    policy=RetryPolicy(base_seconds=10, cap_seconds=600, max_attempts=3),
)


def use_fake(database: Database, tenant, clock) -> None:  # type: ignore[no-untyped-def]
    with database.write() as conn:
        set_channel_provider(conn, tenant.id, "email", "fake", {}, clock.now())


def queue_email(database: Database, tenant, clock, user: str = "ada") -> int:  # type: ignore[no-untyped-def]
    from junction.domain.tracking import Identify

    with database.write() as conn:
        ingest(
            conn,
            tenant.id,
            Batch([Identify(user_id=user, traits={"email": f"{user}@x.io"})], clock.now()),
            SECRET,
        )
        answer = accept(
            conn,
            tenant.id,
            SendRequest(
                channel="email",
                to={"userId": user},
                content={"subject": "Hi", "text": "Hello"},
            ),
            clock.now(),
        )
    return int(answer.body["id"])


def message(database: Database, tenant, message_id: int) -> dict:  # type: ignore[no-untyped-def]
    with database.read() as conn:
        return get_message(conn, tenant.id, message_id)


def dispatcher(database, clock, fake) -> Dispatcher:  # type: ignore[no-untyped-def]
    return Dispatcher(database, clock, SETTINGS, draw=lambda: 0.5, adapters={"fake": fake})


def test_a_queued_message_is_sent_once_and_recorded(database, clock, tenant) -> None:
    use_fake(database, tenant, clock)
    message_id = queue_email(database, tenant, clock)
    fake = FakeAdapter([SendResult("prov-1", {"cost": 0.001})])
    assert asyncio.run(dispatcher(database, clock, fake).drain()) == 1
    assert [m.to for m in fake.sent] == ["ada@x.io"]
    sent = message(database, tenant, message_id)
    assert (sent["status"], sent["providerMessageId"], sent["attempts"]) == ("sent", "prov-1", 1)
    assert [h["outcome"] for h in sent["history"]] == ["sent"]
    with database.read() as conn:
        names = conn.execute(select(events.c.name).where(events.c.type == "track")).scalars().all()
    assert names == ["message.queued", "message.sent"]
    # Nothing is due any more: a second pass sends nothing.
    assert asyncio.run(dispatcher(database, clock, fake).drain()) == 0
    assert len(fake.attempts) == 1


def test_a_passing_failure_is_retried_after_backoff_and_retry_after(
    database, clock, tenant
) -> None:
    use_fake(database, tenant, clock)
    message_id = queue_email(database, tenant, clock)
    fake = FakeAdapter([RetryLater("429 too many requests", retry_after=30), SendResult("p")])
    worker = dispatcher(database, clock, fake)
    asyncio.run(worker.drain())
    waiting = message(database, tenant, message_id)
    assert waiting["status"] == "retrying" and waiting["lastError"] == "429 too many requests"
    # backoff would be 0.5 * 10 s = 5 s, but the provider asked for 30 s
    assert waiting["history"][0]["retryAt"] == (clock.now() + timedelta(seconds=30)).isoformat()
    clock.advance(timedelta(seconds=29))
    assert asyncio.run(worker.drain()) == 0
    clock.advance(timedelta(seconds=1))
    assert asyncio.run(worker.drain()) == 1
    done = message(database, tenant, message_id)
    assert (done["status"], done["attempts"]) == ("sent", 2)
    assert [h["outcome"] for h in done["history"]] == ["retrying", "sent"]


def test_retries_end_in_dead(database, clock, tenant) -> None:
    use_fake(database, tenant, clock)
    message_id = queue_email(database, tenant, clock)
    fake = FakeAdapter([RetryLater("503")] * 3)
    worker = dispatcher(database, clock, fake)
    for _ in range(3):
        asyncio.run(worker.drain())
        clock.advance(timedelta(minutes=10))
    dead = message(database, tenant, message_id)
    assert dead["status"] == "dead" and "gave up after 3 attempts" in dead["lastError"]
    assert len(fake.attempts) == 3


def test_an_invalid_address_is_not_retried_and_is_marked(database, clock, tenant) -> None:
    use_fake(database, tenant, clock)
    message_id = queue_email(database, tenant, clock)
    fake = FakeAdapter([AddressInvalid("550 no such user", status="bounced")])
    asyncio.run(dispatcher(database, clock, fake).drain())
    assert message(database, tenant, message_id)["status"] == "failed"
    with database.read() as conn:
        assert conn.execute(select(addresses.c.status)).scalar_one() == "bounced"


def test_a_permanent_failure_is_not_retried(database, clock, tenant) -> None:
    use_fake(database, tenant, clock)
    message_id = queue_email(database, tenant, clock)
    fake = FakeAdapter([PermanentFailure("content rejected")])
    worker = dispatcher(database, clock, fake)
    asyncio.run(worker.drain())
    clock.advance(timedelta(hours=1))
    asyncio.run(worker.drain())
    assert message(database, tenant, message_id)["status"] == "failed"
    assert len(fake.attempts) == 1


def test_a_claim_lost_by_a_dead_worker_is_taken_again_after_its_lease(
    database, clock, tenant
) -> None:
    use_fake(database, tenant, clock)
    message_id = queue_email(database, tenant, clock)
    with database.write() as conn:  # a worker claims, then dies before recording anything
        assert [c.id for c in outbox.claim(conn, clock.now(), 10, timedelta(seconds=60))] == [
            message_id
        ]
    fake = FakeAdapter()
    worker = dispatcher(database, clock, fake)
    assert asyncio.run(worker.drain()) == 0  # still leased
    clock.advance(timedelta(seconds=61))
    assert asyncio.run(worker.drain()) == 1
    assert message(database, tenant, message_id)["status"] == "sent"
    assert len(fake.sent) == 1


def test_one_claim_per_message_even_when_two_workers_race(database, clock, tenant) -> None:
    use_fake(database, tenant, clock)
    for index in range(30):
        queue_email(database, tenant, clock, user=f"u{index}")
    lease = timedelta(seconds=60)
    if database.dialect == "postgresql":
        # Two open transactions at once: SKIP LOCKED hands the second the rows the first
        # has not locked.
        with database.write() as first:
            mine = outbox.claim(first, clock.now(), 20, lease)
            with database.write() as second:
                theirs = outbox.claim(second, clock.now(), 20, lease)
    else:  # one worker per SQLite file; claims are serialised by BEGIN IMMEDIATE
        with database.write() as first:
            mine = outbox.claim(first, clock.now(), 20, lease)
        with database.write() as second:
            theirs = outbox.claim(second, clock.now(), 20, lease)
    assert len(mine) == 20 and len(theirs) == 10
    assert not {c.id for c in mine} & {c.id for c in theirs}


def test_a_provider_rate_limit_paces_the_sends(database, clock, tenant) -> None:
    with database.write() as conn:
        set_channel_provider(
            conn, tenant.id, "email", "fake", {"rate_per_second": 20, "burst": 1}, clock.now()
        )
    for index in range(5):
        queue_email(database, tenant, clock, user=f"u{index}")
    stamps: list[float] = []

    class Stamping(FakeAdapter):
        async def send(self, message):  # type: ignore[no-untyped-def]
            stamps.append(time.monotonic())
            return await super().send(message)

    asyncio.run(Dispatcher(database, clock, SETTINGS, adapters={"fake": Stamping()}).drain())
    assert len(stamps) == 5
    # 20 a second with a burst of 1: the fifth send goes no sooner than 200 ms after the
    # first. (Gaps between neighbours are not checked: on a loaded machine a late wake-up
    # can bring one send closer to the next, never the last one earlier.)
    stamps.sort()
    assert stamps[-1] - stamps[0] >= 0.195
