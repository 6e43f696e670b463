"""Reading, exporting, erasing contacts, and registering their devices."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, select

from junction.domain.addresses import AddressKind, AddressStatus
from junction.errors import NotFound
from junction.keys import identity_hash
from junction.store.identity import ANONYMOUS, USER, contacts_for_user_ids, find_contact_id
from junction.store.sql import insert_ignoring_conflicts
from junction.store.tables import (
    addresses,
    contact_aliases,
    contacts,
    events,
    inbox_items,
    message_attempts,
    messages,
    suppressions,
)

LATEST_EVENTS = 20


def _require(conn: Connection, workspace_id: int, user_id: str) -> int:
    contact_id = find_contact_id(conn, workspace_id, user_id)
    if contact_id is None:
        raise NotFound(f"no contact with userId {user_id!r} in this workspace")
    return contact_id


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _address(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "value": row.value,
        "status": row.status,
        "details": row.details,
        "createdAt": _iso(row.created_at),
        "updatedAt": _iso(row.updated_at),
    }


def _event(row: Row[Any]) -> dict[str, Any]:
    return {
        "messageId": row.message_id,
        "type": row.type,
        "name": row.name,
        "userId": row.user_id,
        "anonymousId": row.anonymous_id,
        "properties": row.properties,
        "traits": row.traits,
        "context": row.context,
        "timestamp": _iso(row.timestamp),
        "receivedAt": _iso(row.received_at),
        "sentAt": _iso(row.sent_at),
    }


def _profile(conn: Connection, contact_id: int) -> dict[str, Any]:
    contact = conn.execute(select(contacts).where(contacts.c.id == contact_id)).one()
    aliases = conn.execute(
        select(contact_aliases.c.kind, contact_aliases.c.alias)
        .where(contact_aliases.c.contact_id == contact_id)
        .order_by(contact_aliases.c.id)
    ).all()
    rows = conn.execute(
        select(addresses).where(addresses.c.contact_id == contact_id).order_by(addresses.c.id)
    )
    return {
        "userId": contact.user_id,
        "anonymousIds": [a.alias for a in aliases if a.kind == ANONYMOUS],
        "aliases": [a.alias for a in aliases if a.kind == USER],
        "traits": contact.traits,
        "timezone": contact.timezone,
        "locale": contact.locale,
        "country": contact.country,
        "addresses": [_address(row) for row in rows],
        "createdAt": _iso(contact.created_at),
        "updatedAt": _iso(contact.updated_at),
    }


def get_contact(conn: Connection, workspace_id: int, user_id: str) -> dict[str, Any]:
    """A contact's profile, addresses and latest events."""
    contact_id = _require(conn, workspace_id, user_id)
    latest = conn.execute(
        select(events)
        .where(events.c.contact_id == contact_id)
        .order_by(events.c.timestamp.desc(), events.c.id.desc())
        .limit(LATEST_EVENTS)
    )
    return {**_profile(conn, contact_id), "latestEvents": [_event(row) for row in latest]}


def export_contact(conn: Connection, workspace_id: int, user_id: str) -> dict[str, Any]:
    """Everything stored about a contact (a data-subject access request)."""
    contact_id = _require(conn, workspace_id, user_id)
    history = conn.execute(
        select(events)
        .where(events.c.contact_id == contact_id)
        .order_by(events.c.timestamp, events.c.id)
    )
    return {**_profile(conn, contact_id), "events": [_event(row) for row in history]}


def erase_contact(
    conn: Connection, workspace_id: int, user_id: str, now: datetime, secret: str
) -> None:
    """Delete every row that names the contact, and keep only keyed hashes of their ids so a
    stray late call cannot re-create them (an identify can)."""
    contact_id = _require(conn, workspace_id, user_id)
    ids: set[tuple[str, str]] = {
        (row.kind, row.alias)
        for row in conn.execute(
            select(contact_aliases.c.kind, contact_aliases.c.alias).where(
                contact_aliases.c.contact_id == contact_id
            )
        )
    }
    owner = conn.execute(select(contacts.c.user_id).where(contacts.c.id == contact_id)).scalar()
    if owner is not None:
        ids.add((USER, owner))
    insert_ignoring_conflicts(
        conn,
        suppressions,
        [
            {
                "workspace_id": workspace_id,
                "identity_hash": identity_hash(secret, workspace_id, kind, value),
                "created_at": now,
            }
            for kind, value in sorted(ids)
        ],
        on=("workspace_id", "identity_hash"),
    )
    # Children first: the same on both databases whatever their cascade settings. Messages
    # go too: their address and content name the person.
    sent = select(messages.c.id).where(messages.c.contact_id == contact_id)
    conn.execute(delete(message_attempts).where(message_attempts.c.message_id.in_(sent)))
    for table in (inbox_items, messages, events, addresses, contact_aliases):
        conn.execute(delete(table).where(table.c.contact_id == contact_id))
    conn.execute(delete(contacts).where(contacts.c.id == contact_id))


def register_device(
    conn: Connection,
    workspace_id: int,
    user_id: str,
    kind: AddressKind,
    value: str,
    details: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """Attach a push token or web-push subscription to a contact (created if new).

    A device belongs to one person at a time: registering it for a new user moves it.
    """
    contact_id = contacts_for_user_ids(conn, workspace_id, {user_id}, now)[user_id]
    conn.execute(
        delete(addresses).where(
            addresses.c.workspace_id == workspace_id,
            addresses.c.kind == kind,
            addresses.c.value == value,
        )
    )
    address_id = conn.execute(
        addresses.insert()
        .values(
            workspace_id=workspace_id,
            contact_id=contact_id,
            kind=str(kind),
            value=value,
            status=AddressStatus.ACTIVE.value,
            details=details,
            created_at=now,
            updated_at=now,
        )
        .returning(addresses.c.id)
    ).scalar_one()
    row = conn.execute(select(addresses).where(addresses.c.id == address_id)).one()
    return _address(row)


def remove_device(conn: Connection, workspace_id: int, user_id: str, address_id: int) -> None:
    contact_id = _require(conn, workspace_id, user_id)
    result = conn.execute(
        delete(addresses).where(
            addresses.c.id == address_id,
            addresses.c.contact_id == contact_id,
            addresses.c.kind.in_([AddressKind.PUSH, AddressKind.WEB_PUSH]),
        )
    )
    if result.rowcount == 0:
        raise NotFound(f"contact {user_id!r} has no device {address_id}")
