"""A contact's inbox of in-app messages and content cards, as the app sees it.

Rules kept here:
- expired and dismissed items are not shown; pinned cards come first, then newest first;
- ``unread`` counts the shown items never read;
- read, clicked and dismissed are recorded once (the first time), each as an event on the
  contact (``message.read``, ``message.clicked``, ``message.dismissed``); reading also moves
  the message to ``read``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, Row, or_, select, update

from junction.channels.base import DeliveryUpdate
from junction.errors import NotFound
from junction.store.callbacks import apply_updates
from junction.store.identity import find_contact_id
from junction.store.lifecycle import Change, record_changes
from junction.store.tables import inbox_items

Action = Literal["read", "clicked", "dismissed"]


def _contact(conn: Connection, workspace_id: int, user_id: str) -> int:
    contact_id = find_contact_id(conn, workspace_id, user_id)
    if contact_id is None:
        raise NotFound(f"no contact with userId {user_id!r} in this workspace")
    return contact_id


def _item(row: Row[Any]) -> dict[str, Any]:
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": row.id,
        "messageId": row.message_id,
        "kind": row.kind,
        "content": row.content,
        "pinned": row.pinned,
        "expiresAt": iso(row.expires_at),
        "readAt": iso(row.read_at),
        "clickedAt": iso(row.clicked_at),
        "createdAt": iso(row.created_at),
    }


def _visible(contact_id: int, now: datetime) -> Any:
    return (
        (inbox_items.c.contact_id == contact_id)
        & inbox_items.c.dismissed_at.is_(None)
        & or_(inbox_items.c.expires_at.is_(None), inbox_items.c.expires_at > now)
    )


def list_inbox(
    conn: Connection,
    workspace_id: int,
    user_id: str,
    now: datetime,
    kind: str | None = None,
    limit: int = 100,
) -> dict[str, Any]:
    contact_id = _contact(conn, workspace_id, user_id)
    query = select(inbox_items).where(_visible(contact_id, now))
    if kind is not None:
        query = query.where(inbox_items.c.kind == kind)
    rows = conn.execute(
        query.order_by(inbox_items.c.pinned.desc(), inbox_items.c.id.desc()).limit(limit)
    ).all()
    return {
        "items": [_item(row) for row in rows],
        "unread": sum(1 for row in rows if row.read_at is None),
    }


def items_after(
    conn: Connection, workspace_id: int, user_id: str, after_id: int, now: datetime
) -> list[dict[str, Any]]:
    """New visible items, oldest first, for the live stream."""
    contact_id = _contact(conn, workspace_id, user_id)
    rows = conn.execute(
        select(inbox_items)
        .where(_visible(contact_id, now), inbox_items.c.id > after_id)
        .order_by(inbox_items.c.id)
    ).all()
    return [_item(row) for row in rows]


def latest_id(conn: Connection, workspace_id: int, user_id: str) -> int:
    contact_id = _contact(conn, workspace_id, user_id)
    found = conn.execute(
        select(inbox_items.c.id)
        .where(inbox_items.c.contact_id == contact_id)
        .order_by(inbox_items.c.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    return found or 0


def mark(
    conn: Connection,
    workspace_id: int,
    user_id: str,
    item_id: int,
    action: Action,
    now: datetime,
) -> bool:
    """Record what the person did with an item; False when it was already recorded."""
    contact_id = _contact(conn, workspace_id, user_id)
    row = conn.execute(
        select(inbox_items).where(
            inbox_items.c.id == item_id, inbox_items.c.contact_id == contact_id
        )
    ).first()
    if row is None:
        raise NotFound(f"contact {user_id!r} has no inbox item {item_id}")
    column = {"read": "read_at", "clicked": "clicked_at", "dismissed": "dismissed_at"}[action]
    if getattr(row, column) is not None:
        return False
    conn.execute(update(inbox_items).where(inbox_items.c.id == item_id).values({column: now}))
    if action == "read":
        apply_updates(
            conn, workspace_id, "inbox", [DeliveryUpdate(f"inbox-{row.message_id}", "read")], now
        )
    else:
        record_changes(
            conn, [Change(workspace_id, contact_id, row.message_id, row.kind, action, now)], now
        )
    return True
