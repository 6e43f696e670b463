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
from junction.store.sql import insert_ignoring_conflicts
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


def ingest(conn: Connection, workspace_id: int, batch: Batch, secret: str) -> IngestResult:
    messages = list(batch.messages)
    suppressed_ids = _suppressed(conn, workspace_id, messages, secret)
    kept: list[AnyMessage] = []
    for message in messages:
        user_id, anonymous_id = as_id(message.user_id), as_id(message.anonymous_id)
        if isinstance(message, Identify) and user_id is not None:
            _lift(conn, workspace_id, secret, suppressed_ids, user_id, anonymous_id)
        elif (USER, user_id) in suppressed_ids or (
            user_id is None and (ANONYMOUS, anonymous_id) in suppressed_ids
        ):
            continue
        kept.append(message)

    contact_of: dict[int, int] = {}  # index in kept → contact id
    changes: list[ProfileChange] = []
    for index, message in enumerate(kept):
        if isinstance(message, Alias):
            contact_of[index] = alias_user(
                conn,
                workspace_id,
                str(as_id(message.user_id)),
                str(as_id(message.previous_id)),
                batch.received_at,
            )
        elif isinstance(message, Identify):
            user_id, anonymous_id = as_id(message.user_id), as_id(message.anonymous_id)
            if user_id is not None and anonymous_id is not None:
                contact_of[index] = link_anonymous_id(
                    conn, workspace_id, user_id, anonymous_id, batch.received_at
                )

    user_ids = {
        uid for i, m in enumerate(kept) if i not in contact_of and (uid := as_id(m.user_id))
    }
    anonymous_ids = {
        aid
        for i, m in enumerate(kept)
        if i not in contact_of and as_id(m.user_id) is None and (aid := as_id(m.anonymous_id))
    }
    by_user = contacts_for_user_ids(conn, workspace_id, user_ids, batch.received_at)
    by_anonymous = contacts_for_anonymous_ids(conn, workspace_id, anonymous_ids, batch.received_at)

    rows: list[dict[str, Any]] = []
    for index, message in enumerate(kept):
        contact_id = contact_of.get(index)
        if contact_id is None:
            user_id = as_id(message.user_id)
            contact_id = (
                by_user[user_id]
                if user_id is not None
                else by_anonymous[str(as_id(message.anonymous_id))]
            )
        if isinstance(message, Identify) and message.traits:
            fields, _ = read_profile_fields(message.traits)
            changes.append(ProfileChange(contact_id, message.traits, fields))
        rows.append(_event_row(workspace_id, contact_id, message, batch))

    apply_profile_changes(conn, workspace_id, changes, batch.received_at)
    insert_ignoring_conflicts(conn, events, rows, on=("workspace_id", "message_id"))
    return IngestResult(accepted=len(messages), suppressed=len(messages) - len(kept))


def _event_row(
    workspace_id: int, contact_id: int, message: AnyMessage, batch: Batch
) -> dict[str, Any]:
    name: str | None = None
    properties: dict[str, Any] | None = None
    traits: dict[str, Any] | None = None
    if isinstance(message, Track):
        name, properties = message.event.strip(), message.properties or {}
    elif isinstance(message, Page | Screen):
        name, properties = message.name, message.properties or {}
    elif isinstance(message, Identify):
        traits = message.traits or {}
    elif isinstance(message, Group):
        properties, traits = {"groupId": str(as_id(message.group_id))}, message.traits or {}
    elif isinstance(message, Alias):
        properties = {"previousId": str(as_id(message.previous_id))}
    context = message.context
    if batch.context:
        context = {**batch.context, **(context or {})}
    return {
        "workspace_id": workspace_id,
        "contact_id": contact_id,
        "message_id": message_id_or_new(message),
        "type": message.kind,
        "name": name,
        "user_id": as_id(message.user_id),
        "anonymous_id": as_id(message.anonymous_id),
        "properties": properties,
        "traits": traits,
        "context": context,
        "timestamp": occurred_at(message, batch.received_at, batch.sent_at),
        "received_at": batch.received_at,
        "sent_at": message.sent_at or batch.sent_at,
    }


def _suppressed(
    conn: Connection, workspace_id: int, messages: list[AnyMessage], secret: str
) -> set[tuple[str, str | None]]:
    """The (kind, id) pairs of this batch that belong to erased people."""
    any_suppression = conn.execute(
        select(exists().where(suppressions.c.workspace_id == workspace_id))
    ).scalar()
    if not any_suppression:
        return set()
    candidates: dict[str, tuple[str, str]] = {}
    for message in messages:
        for kind, value in (
            (USER, as_id(message.user_id)),
            (ANONYMOUS, as_id(message.anonymous_id)),
        ):
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
