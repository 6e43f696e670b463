"""Message lifecycle changes, stored as events on the contact so journeys can wait for them
(``message.sent``, ``message.delivered``, ``message.bounced``, ``message.opened``…)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from junction.store.ingest import EVENT_COLUMNS
from junction.store.sql import driver_json, driver_time, insert_rows_fast
from junction.store.tables import events


@dataclass(frozen=True, slots=True)
class Change:
    workspace_id: int
    contact_id: int | None
    message_id: int
    channel: str
    status: str
    at: datetime
    reason: str | None = None
    # One event per (message, key): the status by default; ``clicked:2`` for the third link.
    key: str | None = None
    properties: dict[str, Any] | None = None


def record_changes(conn: Connection, changes: Sequence[Change], received_at: datetime) -> None:
    time = driver_time(conn)
    received = time(received_at)
    rows = [
        (
            c.workspace_id,
            c.contact_id,
            f"junction:message:{c.message_id}:{c.key or c.status}",
            "track",
            f"message.{c.status}",
            None,
            None,
            driver_json(
                {
                    "messageId": c.message_id,
                    "channel": c.channel,
                    "reason": c.reason,
                    **(c.properties or {}),
                }
            ),
            None,
            None,
            time(c.at),
            received,
            None,
        )
        for c in changes
        if c.contact_id is not None
    ]
    insert_rows_fast(conn, events, EVENT_COLUMNS, rows, on=("workspace_id", "message_id"))
