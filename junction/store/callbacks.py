"""Applying what providers report after a send: delivered, failed, bounced, read…

Callbacks arrive late, twice, and out of order (Twilio may report ``sent`` after
``delivered``), so a status only ever moves forward:

    queued/sending/retrying (0) → sent (1) → delivered | failed | bounced (2) → read (3)

A report that would move a message backwards or sideways is ignored. Each change that is
applied is also an event on the contact; a hard bounce also marks the address ``bounced``.
A failure of a message sent by a "best of" policy sends it on at once on its next channel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from junction.channels.base import DeliveryUpdate
from junction.store import outbox
from junction.store.lifecycle import Change, record_changes
from junction.store.providers import mark_address
from junction.store.tables import messages

RANK = {
    "queued": 0,
    "sending": 0,
    "retrying": 0,
    "sent": 1,
    "delivered": 2,
    "failed": 2,
    "bounced": 2,
    "dead": 2,
    "read": 3,
}


def apply_updates(
    conn: Connection,
    workspace_id: int,
    provider: str,
    updates: Sequence[DeliveryUpdate],
    now: datetime,
) -> int:
    """Apply provider reports; returns how many changed a message."""
    changes: list[Change] = []
    for report in updates:
        if report.status not in RANK:
            continue
        row = conn.execute(
            select(
                messages.c.id,
                messages.c.status,
                messages.c.contact_id,
                messages.c.to_address,
                messages.c.channel,
                messages.c.workspace_id,
                messages.c.policy,
                messages.c.decisions,
            ).where(
                messages.c.workspace_id == workspace_id,
                messages.c.provider == provider,
                messages.c.provider_message_id == report.provider_message_id,
            )
        ).first()
        if row is None or RANK[report.status] <= RANK.get(row.status, 0):
            continue
        conn.execute(
            update(messages)
            .where(messages.c.id == row.id)
            .values(status=report.status, last_error=report.reason, updated_at=now)
        )
        if report.status == "bounced" and row.contact_id is not None:
            mark_address(conn, row.contact_id, row.to_address, "bounced", now)
        if report.status in ("failed", "bounced") and outbox.has_next_channel(
            row.policy, row.channel
        ):
            outbox.move_on(conn, [row], now, _failed_on(report))
        changes.append(
            Change(
                workspace_id, row.contact_id, row.id, row.channel, report.status, now, report.reason
            )
        )
    record_changes(conn, changes, now)
    return len(changes)


def _failed_on(report: DeliveryUpdate) -> Callable[[Any], str]:
    def why(row: Any) -> str:
        return f"{row.channel}: {report.reason or report.status}"

    return why
