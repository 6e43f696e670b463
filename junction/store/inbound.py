"""What people send us, stored as ``message.received`` events on their contact.

Rules kept here:
- the sender is found by their address on that channel (a phone number for SMS and
  WhatsApp, a chat id for Telegram); an unknown sender becomes a new contact with that address;
- the provider's message id is the event's ``messageId``, so a webhook delivered twice stores
  one event;
- the time of a person's last inbound message per channel is the latest such event: it is the
  clock of chat apps' session windows (WhatsApp's 24 h), so it needs no column of its own;
- an SMS or WhatsApp message that is a keyword (STOP, START, HELP) is acted on and answered
  (``junction.store.keywords``) once, when first stored: a redelivered STOP must not undo a
  START sent since.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, select

from junction.channels.base import InboundMessage
from junction.domain.addresses import AddressKind, AddressStatus
from junction.store.ingest import EVENT_COLUMNS
from junction.store.keywords import KEYWORD_CHANNELS, handle
from junction.store.sql import driver_json, driver_time, insert_rows_fast
from junction.store.tables import addresses, contacts, events

SENDER_KIND: dict[str, AddressKind] = {
    "sms": AddressKind.PHONE,
    "whatsapp": AddressKind.PHONE,
    "telegram": AddressKind.TELEGRAM,
    "messenger": AddressKind.MESSENGER,
}


def _sender_contact(
    conn: Connection, workspace_id: int, kind: AddressKind, sender: str, now: datetime
) -> int:
    found = conn.execute(
        select(addresses.c.contact_id)
        .where(
            addresses.c.workspace_id == workspace_id,
            addresses.c.kind == kind,
            addresses.c.value == sender,
        )
        .order_by(addresses.c.updated_at.desc())
        .limit(1)
    ).scalar_one_or_none()
    if found is not None:
        return int(found)
    contact_id = conn.execute(
        contacts.insert()
        .values(workspace_id=workspace_id, user_id=None, traits={}, created_at=now, updated_at=now)
        .returning(contacts.c.id)
    ).scalar_one()
    conn.execute(
        addresses.insert().values(
            workspace_id=workspace_id,
            contact_id=contact_id,
            kind=str(kind),
            value=sender,
            status=AddressStatus.ACTIVE.value,
            details={},
            created_at=now,
            updated_at=now,
        )
    )
    return int(contact_id)


def record_inbound(
    conn: Connection, workspace_id: int, received: Sequence[InboundMessage], now: datetime
) -> int:
    """Store each inbound message on its sender's contact; returns how many there were."""
    time = driver_time(conn)
    rows = []
    keywords: list[tuple[int, InboundMessage]] = []
    stored = _stored(conn, workspace_id, [m.external_id for m in received])
    for message in received:
        kind = SENDER_KIND.get(message.channel)
        if kind is None:
            continue
        contact_id = _sender_contact(conn, workspace_id, kind, message.sender_id, now)
        if message.channel in KEYWORD_CHANNELS and message.external_id not in stored:
            stored.add(message.external_id)
            keywords.append((contact_id, message))
        properties = {
            "channel": message.channel,
            "from": message.sender_id,
            "text": message.text,
            "senderName": message.sender_name,
        }
        rows.append(
            (
                workspace_id,
                contact_id,
                message.external_id,
                "track",
                "message.received",
                None,
                None,
                driver_json(properties),
                None,
                None,
                time(message.sent_at or now),
                time(now),
                None,
            )
        )
    insert_rows_fast(conn, events, EVENT_COLUMNS, rows, on=("workspace_id", "message_id"))
    for contact_id, message in keywords:
        handle(
            conn,
            workspace_id,
            contact_id,
            message.channel,
            message.sender_id,
            message.text,
            now,
            external_id=message.external_id,
        )
    return len(rows)


def _stored(conn: Connection, workspace_id: int, external_ids: Sequence[str]) -> set[str]:
    """Which of these inbound messages were stored already (a webhook delivered again)."""
    if not external_ids:
        return set()
    found = conn.execute(
        select(events.c.message_id).where(
            events.c.workspace_id == workspace_id, events.c.message_id.in_(set(external_ids))
        )
    )
    return set(found.scalars())
