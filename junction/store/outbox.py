"""The outbox: send intents as rows, claimed by workers in batches, outcomes recorded on them.

Claiming is the one dialect-specific query in Junction: on PostgreSQL, ``FOR UPDATE SKIP
LOCKED`` lets any number of workers on any number of machines take disjoint batches; on
SQLite one worker claims, and ``BEGIN IMMEDIATE`` makes the claim atomic.

A claim sets ``status='sending'``, counts the attempt and takes a lease. A worker that dies
mid-batch leaves its rows ``sending``; when the lease runs out they are claimed again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, or_, select, update

from junction.store.lifecycle import Change, record_changes
from junction.store.sql import insert_ignoring_conflicts
from junction.store.tables import contacts, message_attempts, messages

QUEUED = "queued"
SENDING = "sending"
RETRYING = "retrying"
SENT = "sent"
SUPPRESSED = "suppressed"  # decided not to send: the reason is in last_error
DELIVERED = "delivered"
FAILED = "failed"
DEAD = "dead"


@dataclass(frozen=True, slots=True)
class Intent:
    """A message to send: what ``enqueue`` needs."""

    workspace_id: int
    idempotency_key: str
    channel: str
    provider: str
    to_address: str
    content: dict[str, Any]
    contact_id: int | None = None
    category: str = "transactional"


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    workspace_id: int
    idempotency_key: str
    channel: str
    provider: str
    to_address: str
    content: dict[str, Any]
    category: str
    contact_id: int | None
    attempts: int
    locale: str | None = None  # the contact's, for voice and localised content
    contact: dict[str, Any] | None = None  # what templates see as {{ contact }}
    links: tuple[str, ...] = ()  # targets of the tracked links rendered into the content
    rendered: bool = False  # content came from a template at claim time


@dataclass(frozen=True, slots=True)
class Outcome:
    message_id: int
    attempt: int
    started_at: datetime
    finished_at: datetime
    status: str  # SENT, RETRYING, FAILED, DEAD
    error: str | None = None
    due_at: datetime | None = None  # for RETRYING
    provider_message_id: str | None = None
    details: dict[str, Any] | None = None


def enqueue(conn: Connection, intents: Sequence[Intent], now: datetime) -> dict[str, int]:
    """Store send intents (an intent whose key is already stored is kept as it was);
    returns the message id of every key."""
    if not intents:
        return {}
    rows = [
        {
            "workspace_id": i.workspace_id,
            "contact_id": i.contact_id,
            "idempotency_key": i.idempotency_key,
            "channel": i.channel,
            "provider": i.provider,
            "to_address": i.to_address,
            "category": i.category,
            "content": i.content,
            "status": QUEUED,
            "attempts": 0,
            "due_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for i in intents
    ]
    insert_ignoring_conflicts(conn, messages, rows, on=("workspace_id", "idempotency_key"))
    found: dict[str, int] = {}
    for workspace_id in {i.workspace_id for i in intents}:
        keys = [i.idempotency_key for i in intents if i.workspace_id == workspace_id]
        stored = conn.execute(
            select(messages.c.idempotency_key, messages.c.id).where(
                messages.c.workspace_id == workspace_id,
                messages.c.idempotency_key.in_(keys),
            )
        )
        found.update((row.idempotency_key, row.id) for row in stored)
    record_changes(
        conn,
        [
            Change(i.workspace_id, i.contact_id, found[i.idempotency_key], i.channel, QUEUED, now)
            for i in intents
            if i.contact_id is not None
        ],
        now,
    )
    return found


def claim(conn: Connection, now: datetime, limit: int, lease: timedelta) -> list[Claimed]:
    """Take up to ``limit`` due messages for this worker, oldest due first."""
    due = or_(
        and_(messages.c.status.in_([QUEUED, RETRYING]), messages.c.due_at <= now),
        and_(messages.c.status == SENDING, messages.c.lease_until < now),
    )
    query = (
        select(
            messages,
            contacts.c.locale,
            contacts.c.user_id,
            contacts.c.traits,
            contacts.c.timezone,
            contacts.c.country,
        )
        .outerjoin(contacts, contacts.c.id == messages.c.contact_id)
        .where(due)
        .order_by(messages.c.due_at, messages.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(of=messages, skip_locked=True)
    rows = conn.execute(query).all()
    if not rows:
        return []
    conn.execute(
        update(messages)
        .where(messages.c.id.in_([row.id for row in rows]))
        .values(
            status=SENDING,
            lease_until=now + lease,
            attempts=messages.c.attempts + 1,
            updated_at=now,
        )
    )
    return [
        Claimed(
            id=row.id,
            workspace_id=row.workspace_id,
            idempotency_key=row.idempotency_key,
            channel=row.channel,
            provider=row.provider,
            to_address=row.to_address,
            content=row.content,
            category=row.category,
            contact_id=row.contact_id,
            attempts=row.attempts + 1,
            locale=row.locale,
            contact=contact_namespace(row) if row.contact_id is not None else None,
        )
        for row in rows
    ]


def contact_namespace(row: Any) -> dict[str, Any]:
    return {
        **(row.traits or {}),
        "userId": row.user_id,
        "timezone": row.timezone,
        "locale": row.locale,
        "country": row.country,
    }


def record(conn: Connection, outcomes: Sequence[Outcome], now: datetime) -> None:
    """Write what happened to each claimed message, and the attempt's history row."""
    if not outcomes:
        return
    conn.execute(
        update(messages)
        .where(messages.c.id == bindparam("mid"), messages.c.status == SENDING)
        .values(
            status=bindparam("new_status"),
            due_at=bindparam("new_due"),
            lease_until=None,
            last_error=bindparam("error"),
            provider_message_id=bindparam("pmid"),
            details=bindparam("new_details"),
            updated_at=now,
        ),
        [
            {
                "mid": o.message_id,
                "new_status": o.status,
                "new_due": o.due_at or o.finished_at,
                "error": o.error[:1000] if o.error else None,
                "pmid": o.provider_message_id,
                "new_details": o.details,
            }
            for o in outcomes
        ],
    )
    conn.execute(
        message_attempts.insert(),
        [
            {
                "message_id": o.message_id,
                "number": o.attempt,
                "started_at": o.started_at,
                "finished_at": o.finished_at,
                "outcome": o.status,
                "error": o.error[:1000] if o.error else None,
                "retry_after": o.due_at if o.status == RETRYING else None,
            }
            for o in outcomes
        ],
    )
