"""Clicks and opens: following a tracked link or loading an email's pixel becomes a
``message.clicked`` / ``message.opened`` event on the contact, with the message's id.

The first click of each link and the first open of each message are recorded; repeats
(a person clicking twice, a mail client loading images again) change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from junction.store.lifecycle import Change, record_changes
from junction.store.tables import messages


@dataclass(frozen=True, slots=True)
class Tracked:
    message_id: int
    workspace_id: int
    contact_id: int | None
    channel: str
    content: dict[str, Any]
    links: list[str]


def find(conn: Connection, message_id: int) -> Tracked | None:
    row = conn.execute(
        select(
            messages.c.workspace_id,
            messages.c.contact_id,
            messages.c.channel,
            messages.c.content,
            messages.c.details,
        ).where(messages.c.id == message_id)
    ).first()
    if row is None:
        return None
    links = (row.details or {}).get("links") or []
    return Tracked(message_id, row.workspace_id, row.contact_id, row.channel, row.content, links)


def clicked(conn: Connection, message: Tracked, index: int, target: str, now: datetime) -> None:
    record_changes(
        conn,
        [
            Change(
                message.workspace_id,
                message.contact_id,
                message.message_id,
                message.channel,
                "clicked",
                now,
                key=f"clicked:{index}",
                properties={"url": target, "link": index},
            )
        ],
        now,
    )


def opened(conn: Connection, message: Tracked, now: datetime) -> None:
    record_changes(
        conn,
        [
            Change(
                message.workspace_id,
                message.contact_id,
                message.message_id,
                message.channel,
                "opened",
                now,
            )
        ],
        now,
    )
