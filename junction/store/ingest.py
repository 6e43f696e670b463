"""Storing tracking calls: one batch, one transaction, a handful of statements.

Rules kept here (see also ``junction.domain.tracking``):
- identity calls (identify, alias) are applied first, in the order sent, so the other calls
  of the same batch land on the contacts they settle;
- every other call is resolved to its contact in bulk and stored with one multi-row insert;
  a ``messageId`` already stored is skipped, so a retried call stores nothing twice;
- a call about an erased person is dropped, unless it is an identify: re-identifying lifts
  the suppression.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, exists, select

from junction.domain.profile import read_profile_fields
from junction.domain.tracking import (
    Alias,
    AnyMessage,
    Group,
    Identify,
    Page,
    Screen,
    Track,
    as_id,
    message_id_or_new,
    occurred_at,
)
from junction.keys import identity_hash
from junction.store.identity import (
    ANONYMOUS,
    USER,
    alias_user,
    contacts_for_anonymous_ids,
    contacts_for_user_ids,
    link_anonymous_id,
)
from junction.store.profiles import ProfileChange, apply_profile_changes
from junction.store.sql import driver_json, driver_time, insert_rows_fast
from junction.store.tables import events, suppressions


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    suppressed: int


@dataclass(frozen=True, slots=True)
class Batch:
    """Decoded, valid calls and what the batch says about all of them."""

    messages: Sequence[AnyMessage]
    received_at: datetime
    sent_at: datetime | None = None
    context: dict[str, Any] | None = None


EVENT_COLUMNS = (
    "workspace_id",
    "contact_id",
    "message_id",
    "type",
    "name",
    "user_id",
    "anonymous_id",
    "properties",
    "traits",
    "context",
    "timestamp",
    "received_at",
    "sent_at",
)


def ingest(conn: Connection, workspace_id: int, batch: Batch, secret: str) -> IngestResult:
    calls = [(m, as_id(m.user_id), as_id(m.anonymous_id)) for m in batch.messages]
    suppressed_ids = _suppressed(conn, workspace_id, calls, secret)
    kept: list[tuple[AnyMessage, str | None, str | None]] = []
    for message, user_id, anonymous_id in calls:
        if isinstance(message, Identify) and user_id is not None:
            _lift(conn, workspace_id, secret, suppressed_ids, user_id, anonymous_id)
        elif (USER, user_id) in suppressed_ids or (
            user_id is None and (ANONYMOUS, anonymous_id) in suppressed_ids
        ):
            continue
        kept.append((message, user_id, anonymous_id))

    now = batch.received_at
    settled: dict[int, int] = {}  # index in kept → contact id, for identity calls
    for index, (message, user_id, anonymous_id) in enumerate(kept):
        if isinstance(message, Alias):
            previous_id = str(as_id(message.previous_id))
            settled[index] = alias_user(conn, workspace_id, str(user_id), previous_id, now)
        elif isinstance(message, Identify) and user_id is not None and anonymous_id is not None:
            settled[index] = link_anonymous_id(conn, workspace_id, user_id, anonymous_id, now)

    user_ids: set[str] = set()
    anonymous_ids: set[str] = set()
    for index, (_, user_id, anonymous_id) in enumerate(kept):
        if index in settled:
            continue
        if user_id is not None:
            user_ids.add(user_id)
        elif anonymous_id is not None:
            anonymous_ids.add(anonymous_id)
    by_user = contacts_for_user_ids(conn, workspace_id, user_ids, now)
    by_anonymous = contacts_for_anonymous_ids(conn, workspace_id, anonymous_ids, now)

    time = driver_time(conn)
    received_at, batch_sent_at = time(now), time(batch.sent_at)
    changes: list[ProfileChange] = []
    rows: list[tuple[Any, ...]] = []
    for index, (message, user_id, anonymous_id) in enumerate(kept):
        contact_id = settled.get(index)
        if contact_id is None:
            contact_id = (
                by_user[user_id] if user_id is not None else by_anonymous[str(anonymous_id)]
            )
        if isinstance(message, Identify) and message.traits:
            fields, _ = read_profile_fields(message.traits)
            changes.append(ProfileChange(contact_id, message.traits, fields))
        name, properties, traits = _payload(message)
        context = message.context
        if batch.context:
            context = {**batch.context, **(context or {})}
        rows.append(
            (
                workspace_id,
                contact_id,
                message_id_or_new(message),
                message.kind,
                name,
                user_id,
                anonymous_id,
                driver_json(properties),
                driver_json(traits),
                driver_json(context),
                time(occurred_at(message, now, batch.sent_at)),
                received_at,
                time(message.sent_at) if message.sent_at else batch_sent_at,
            )
        )

    apply_profile_changes(conn, workspace_id, changes, now)
    insert_rows_fast(conn, events, EVENT_COLUMNS, rows, on=("workspace_id", "message_id"))
    return IngestResult(accepted=len(calls), suppressed=len(calls) - len(kept))


def _payload(
    message: AnyMessage,
) -> tuple[str | None, dict[str, Any] | None, dict[str, Any] | None]:
    """The (name, properties, traits) columns of a call."""
    if isinstance(message, Track):
        return message.event.strip(), message.properties or {}, None
    if isinstance(message, Page | Screen):
        return message.name, message.properties or {}, None
    if isinstance(message, Identify):
        return None, None, message.traits or {}
    if isinstance(message, Group):
        return None, {"groupId": str(as_id(message.group_id))}, message.traits or {}
    return None, {"previousId": str(as_id(message.previous_id))}, None


def _suppressed(
    conn: Connection,
    workspace_id: int,
    calls: list[tuple[AnyMessage, str | None, str | None]],
    secret: str,
) -> set[tuple[str, str | None]]:
    """The (kind, id) pairs of this batch that belong to erased people."""
    any_suppression = conn.execute(
        select(exists().where(suppressions.c.workspace_id == workspace_id))
    ).scalar()
    if not any_suppression:
        return set()
    candidates: dict[str, tuple[str, str]] = {}
    for _, user_id, anonymous_id in calls:
        for kind, value in ((USER, user_id), (ANONYMOUS, anonymous_id)):
            if value is not None:
                candidates[identity_hash(secret, workspace_id, kind, value)] = (kind, value)
    hits = conn.execute(
        select(suppressions.c.identity_hash).where(
            suppressions.c.workspace_id == workspace_id,
            suppressions.c.identity_hash.in_(list(candidates)),
        )
    ).scalars()
    return {candidates[h] for h in hits}


def _lift(
    conn: Connection,
    workspace_id: int,
    secret: str,
    suppressed_ids: set[tuple[str, str | None]],
    user_id: str,
    anonymous_id: str | None,
) -> None:
    lifted = [(USER, user_id)] + ([(ANONYMOUS, anonymous_id)] if anonymous_id else [])
    hashes = [identity_hash(secret, workspace_id, kind, value) for kind, value in lifted]
    if suppressed_ids.intersection(lifted):
        conn.execute(
            delete(suppressions).where(
                suppressions.c.workspace_id == workspace_id,
                suppressions.c.identity_hash.in_(hashes),
            )
        )
        suppressed_ids.difference_update(lifted)
