"""Junction's inbox as the provider of in-app messages and cards: sends that arrive together
are stored together, and one that cannot be stored does not hold back the others — on both
databases."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from junction.channels.base import Channel, OutboundMessage, SendResult
from junction.domain.tracking import Identify
from junction.engine.dispatcher import Dispatcher
from junction.engine.inbox import InboxAdapter
from junction.store.database import Database
from junction.store.ingest import Batch, ingest
from junction.store.sends import SendRequest, accept, get_message
from junction.store.tables import inbox_items, messages
from tests.conftest import SECRET


class CountingInbox(InboxAdapter):
    """The inbox, noting how many messages each transaction stored."""

    def __init__(self, database: Database, clock) -> None:  # type: ignore[no-untyped-def]
        super().__init__(database, clock)
        self.transactions: list[int] = []

    def _store(self, batch: list[OutboundMessage]) -> None:
        super()._store(batch)
        self.transactions.append(len(batch))


def queue_cards(database: Database, tenant, clock, people: int) -> list[int]:  # type: ignore[no-untyped-def]
    ids = []
    with database.write() as conn:
        users = [Identify(user_id=f"u{i}", traits={}) for i in range(people)]
        ingest(conn, tenant.id, Batch(users, clock.now()), SECRET)
        for i in range(people):
            answer = accept(
                conn,
                tenant.id,
                SendRequest(
                    channel="content_card",
                    to={"userId": f"u{i}"},
                    content={"title": f"Card {i}", "body": "Hello"},
                ),
                clock.now(),
            )
            ids.append(int(answer.body["id"]))
    return ids


def stored(database: Database) -> dict[int, str]:
    with database.read() as conn:
        rows = conn.execute(select(inbox_items.c.message_id, inbox_items.c.content)).all()
    return {row.message_id: row.content["title"] for row in rows}


def test_cards_sent_together_are_stored_in_fewer_transactions(database, clock, tenant) -> None:
    ids = queue_cards(database, tenant, clock, 30)
    inbox = CountingInbox(database, clock)
    assert asyncio.run(Dispatcher(database, clock, adapters={"inbox": inbox}).drain()) == 30
    assert stored(database) == {message_id: f"Card {i}" for i, message_id in enumerate(ids)}
    assert sum(inbox.transactions) == 30
    assert len(inbox.transactions) < 30
    with database.read() as conn:
        assert {get_message(conn, tenant.id, i)["status"] for i in ids} == {"sent"}


def test_a_card_that_cannot_be_stored_fails_alone(database, clock, tenant) -> None:
    ids = queue_cards(database, tenant, clock, 5)
    with database.read() as conn:
        contact_id = conn.scalar(select(messages.c.contact_id).where(messages.c.id == ids[0]))
    inbox = InboxAdapter(database, clock)

    def card(message_id: int) -> OutboundMessage:
        return OutboundMessage(
            id=message_id,
            idempotency_key=f"k{message_id}",
            workspace_id=tenant.id,
            channel=Channel.CONTENT_CARD,
            to="",
            content={"title": f"#{message_id}"},
            contact_id=contact_id,
        )

    missing = max(ids) + 1000  # no such message: the row breaks a foreign key

    async def send_all() -> list[SendResult | BaseException]:
        sends = [inbox.send(card(message_id)) for message_id in [*ids[:2], missing, *ids[2:]]]
        return await asyncio.gather(*sends, return_exceptions=True)

    results = asyncio.run(send_all())
    assert isinstance(results[2], Exception)
    assert [r.provider_message_id for r in results if isinstance(r, SendResult)] == [
        f"inbox-{message_id}" for message_id in ids
    ]
    assert stored(database) == {message_id: f"#{message_id}" for message_id in ids}
