"""Provider reports move a message's status forward only, whatever order they arrive in."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from junction.channels.base import DeliveryUpdate, SendResult
from junction.channels.fake import FakeAdapter
from junction.engine.dispatcher import Dispatcher
from junction.store.callbacks import apply_updates
from junction.store.sends import get_message
from junction.store.tables import addresses, events
from tests.engine.test_dispatcher import queue_email, use_fake


def sent_message(database, clock, tenant) -> int:  # type: ignore[no-untyped-def]
    use_fake(database, tenant, clock)
    message_id = queue_email(database, tenant, clock)
    asyncio.run(
        Dispatcher(database, clock, adapters={"fake": FakeAdapter([SendResult("P-1")])}).drain()
    )
    return message_id


def report(database, clock, tenant, *updates: DeliveryUpdate) -> int:  # type: ignore[no-untyped-def]
    with database.write() as conn:
        return apply_updates(conn, tenant.id, "fake", updates, clock.now())


def status(database, tenant, message_id: int) -> str:  # type: ignore[no-untyped-def]
    with database.read() as conn:
        return str(get_message(conn, tenant.id, message_id)["status"])


def test_reports_out_of_order_never_move_a_message_back(database, clock, tenant) -> None:
    message_id = sent_message(database, clock, tenant)
    assert report(database, clock, tenant, DeliveryUpdate("P-1", "delivered")) == 1
    assert (
        report(
            database,
            clock,
            tenant,
            DeliveryUpdate("P-1", "sent"),
            DeliveryUpdate("P-1", "queued"),
            DeliveryUpdate("P-1", "failed"),
        )
        == 0
    )
    assert status(database, tenant, message_id) == "delivered"
    assert report(database, clock, tenant, DeliveryUpdate("P-1", "read")) == 1
    assert status(database, tenant, message_id) == "read"
    with database.read() as conn:
        names = (
            conn.execute(
                select(events.c.name).where(events.c.type == "track").order_by(events.c.id)
            )
            .scalars()
            .all()
        )
    assert names == ["message.queued", "message.sent", "message.delivered", "message.read"]


def test_a_report_twice_is_applied_once(database, clock, tenant) -> None:
    sent_message(database, clock, tenant)
    assert report(database, clock, tenant, DeliveryUpdate("P-1", "delivered")) == 1
    assert report(database, clock, tenant, DeliveryUpdate("P-1", "delivered")) == 0


def test_a_hard_bounce_marks_the_address(database, clock, tenant) -> None:
    message_id = sent_message(database, clock, tenant)
    report(database, clock, tenant, DeliveryUpdate("P-1", "bounced", reason="5.1.1 no such user"))
    assert status(database, tenant, message_id) == "bounced"
    with database.read() as conn:
        assert conn.execute(select(addresses.c.status)).scalar_one() == "bounced"


def test_reports_for_unknown_or_foreign_messages_change_nothing(database, clock, tenant) -> None:
    from tests.conftest import make_tenant

    message_id = sent_message(database, clock, tenant)
    other = make_tenant(database, clock, "globex")
    assert report(database, clock, other, DeliveryUpdate("P-1", "delivered")) == 0
    assert report(database, clock, tenant, DeliveryUpdate("P-404", "delivered")) == 0
    assert status(database, tenant, message_id) == "sent"
