"""Campaign rounds in the database: a round that does not commit leaves no trace and the next
one does its work (nobody twice, nobody skipped); on PostgreSQL two workers' rounds on one
campaign claim disjoint batches."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
from sqlalchemy import func, select, text

from junction.clock import VirtualClock
from junction.domain.tracking import Identify
from junction.store import campaigns, templates
from junction.store.database import Database
from junction.store.ingest import Batch, ingest
from junction.store.tables import campaign_recipients, messages, metadata
from junction.store.workspaces import create_workspace
from tests.conftest import SECRET, START, Tenant

TEMPLATE = {"key": "t", "channels": {"email": {"subject": "Hi", "text": "Hello"}}}
CAMPAIGN = {
    "key": "c",
    "audience": "everyone",
    "message": {"template": "t", "channel": "email", "category": "transactional"},
}


def sending(database: Database, workspace_id: int, people: int, now: datetime) -> int:
    with database.write() as conn:
        templates.save(conn, workspace_id, TEMPLATE, now)
        calls = [Identify(user_id=f"u{i}", traits={"email": f"u{i}@x.io"}) for i in range(people)]
        ingest(conn, workspace_id, Batch(messages=calls, received_at=now), SECRET)
        campaigns.save(conn, workspace_id, CAMPAIGN, now)
        campaigns.send(conn, workspace_id, "c", now)
        return int(conn.scalar(select(campaign_recipients.c.campaign_id).limit(1)) or 0)


def counts(database: Database) -> tuple[int, int]:
    with database.read() as conn:
        queued = conn.scalar(
            select(func.count())
            .select_from(campaign_recipients)
            .where(campaign_recipients.c.status == "queued")
        )
        made = conn.scalar(select(func.count()).select_from(messages))
    return int(queued or 0), int(made or 0)


class Crash(Exception):
    pass


def test_a_round_that_does_not_commit_leaves_nothing(
    database: Database, tenant: Tenant, clock: VirtualClock
) -> None:
    campaign_id = sending(database, tenant.id, 25, clock.now())
    with pytest.raises(Crash), database.write() as conn:
        assert campaigns.run_round(conn, campaign_id, clock.now(), 10) == 10
        raise Crash  # the worker dies before the commit
    assert counts(database) == (0, 0)
    for expected in (10, 20, 25):
        with database.write() as conn:
            campaigns.run_round(conn, campaign_id, clock.now(), 10)
        assert counts(database) == (expected, expected)
    with database.write() as conn:
        assert campaigns.run_round(conn, campaign_id, clock.now(), 10) == 0
    with database.read() as conn:
        shown = campaigns.status(conn, tenant.id, "c")
        keys = set(conn.scalars(select(messages.c.idempotency_key)))
        linked = conn.execute(
            select(campaign_recipients.c.contact_id, campaign_recipients.c.message_id)
        ).all()
    assert shown["status"] == "completed" and shown["progress"]["queued"] == 25
    assert keys == {f"campaign:{campaign_id}:{contact}" for contact, _ in linked}
    assert all(message_id is not None for _, message_id in linked)


@pytest.fixture
def postgres(postgres_url: str) -> Iterator[Database]:
    database = Database(postgres_url)
    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with database.write() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    yield database
    database.dispose()


def test_two_workers_share_a_campaign_on_postgresql(postgres: Database) -> None:
    with postgres.write() as conn:
        workspace_id = create_workspace(conn, "acme", START, SECRET).workspace.id
    campaign_id = sending(postgres, workspace_id, 30, START)
    # Worker A's round holds its batch (uncommitted) while worker B's round runs.
    with postgres.write() as first:
        assert campaigns.run_round(first, campaign_id, START, 10) == 10
        with postgres.write() as second:
            assert campaigns.run_round(second, campaign_id, START, 10) == 10
        # B committed its ten; A still holds its own.
        with postgres.read() as conn:
            assert conn.scalar(select(func.count()).select_from(messages)) == 10
    assert counts(postgres) == (20, 20)
    with postgres.write() as conn:
        assert campaigns.run_round(conn, campaign_id, START, 100) == 10
    assert counts(postgres) == (30, 30)


def test_a_campaign_feeds_the_outbox_no_faster_than_it_drains(
    database: Database, tenant: Tenant, clock: VirtualClock
) -> None:
    campaign_id = sending(database, tenant.id, 25, clock.now())

    def round_() -> int:
        with database.write() as conn:
            return campaigns.run_round(conn, campaign_id, clock.now(), 10, outbox_bound=15)

    assert [round_(), round_(), round_()] == [10, 5, 0]
    with database.write() as conn:  # the dispatcher takes twelve of them
        taken = select(messages.c.id).order_by(messages.c.id).limit(12).scalar_subquery()
        conn.execute(messages.update().where(messages.c.id.in_(taken)).values(status="sent"))
    assert [round_(), round_(), round_()] == [10, 0, 0]
    assert counts(database) == (25, 25)
