"""Topics, each person's preferences, and the workspace's reachability rules, stored.

A preference is (contact, topic, channel) → opted in or out, with where it came from. The
topic ``*`` stands for every marketing topic: opting out of ``*`` on SMS is a STOP. A topic
with no stored preference takes its default.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from junction.domain.sending import SENDABLE_CHANNELS
from junction.errors import FieldError, InvalidInput, NotFound
from junction.store.raw import Raw
from junction.store.sql import insert_ignoring_conflicts, update_or_insert
from junction.store.tables import preferences, topics, workspace_policies

EVERY_TOPIC = "*"
SOURCES = frozenset({"api", "preference_center", "keyword", "unsubscribe", "import"})
_KEY = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Choice:
    topic: str  # a topic key, or EVERY_TOPIC
    channel: str
    opted_in: bool


def save_topic(
    conn: Connection,
    workspace_id: int,
    key: str,
    *,
    name: str,
    description: str | None = None,
    default_opt_in: bool = True,
    channels: Sequence[str] | None = None,
    now: datetime,
) -> dict[str, Any]:
    """Create or update a topic (by key)."""
    problems = []
    if not _KEY.match(key) or key == "transactional":
        problems.append(
            FieldError("key", "lower-case letters, digits, '_', '.', '-'; not 'transactional'")
        )
    unknown = sorted(set(channels or ()) - set(SENDABLE_CHANNELS))
    if unknown:
        problems.append(FieldError("channels", f"unknown channel {unknown[0]!r}"))
    if problems:
        raise InvalidInput(problems)
    values = {
        "name": name,
        "description": description,
        "default_opt_in": default_opt_in,
        "channels": sorted(channels) if channels is not None else None,
        "updated_at": now,
    }
    updated = conn.execute(
        topics.update()
        .where(topics.c.workspace_id == workspace_id, topics.c.key == key)
        .values(**values)
    )
    if updated.rowcount == 0:
        conn.execute(
            topics.insert().values(workspace_id=workspace_id, key=key, created_at=now, **values)
        )
    return topic_view(conn, workspace_id, key)


def topic_view(conn: Connection, workspace_id: int, key: str) -> dict[str, Any]:
    row = conn.execute(
        select(topics).where(topics.c.workspace_id == workspace_id, topics.c.key == key)
    ).first()
    if row is None:
        raise NotFound(f"no topic {key!r} in this workspace")
    return _topic(row)


def _topic(row: Any) -> dict[str, Any]:
    return {
        "key": row.key,
        "name": row.name,
        "description": row.description,
        "defaultOptIn": row.default_opt_in,
        "channels": row.channels,
    }


def list_topics(conn: Connection, workspace_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(topics).where(topics.c.workspace_id == workspace_id).order_by(topics.c.key)
    )
    return [_topic(row) for row in rows]


def delete_topic(conn: Connection, workspace_id: int, key: str) -> None:
    topic_view(conn, workspace_id, key)  # 404 when absent
    conn.execute(topics.delete().where(topics.c.workspace_id == workspace_id, topics.c.key == key))
    conn.execute(
        preferences.delete().where(
            preferences.c.workspace_id == workspace_id, preferences.c.topic == key
        )
    )


def choices_of(
    conn: Connection, contact_ids: Iterable[int]
) -> dict[int, dict[tuple[str, str], bool]]:
    """Every stored choice of each contact, as {(topic, channel): opted in}."""
    found: dict[int, dict[tuple[str, str], bool]] = {}
    ids = list(contact_ids)
    if not ids:
        return found
    # Straight to the driver: every claim reads the choices of everyone in it.
    for contact_id, topic, channel, opted_in in Raw(conn).rows_in(
        "SELECT contact_id, topic, channel, opted_in FROM preferences WHERE contact_id IN ({})",
        ids,
    ):
        found.setdefault(contact_id, {})[(topic, channel)] = bool(opted_in)
    return found


def set_choices(
    conn: Connection,
    workspace_id: int,
    contact_id: int,
    choices: Sequence[Choice],
    source: str,
    now: datetime,
) -> None:
    """Record choices (the latest wins), checking each names a known topic and channel."""
    known = {
        row.key
        for row in conn.execute(select(topics.c.key).where(topics.c.workspace_id == workspace_id))
    } | {EVERY_TOPIC}
    problems = []
    for index, choice in enumerate(choices):
        if choice.topic not in known:
            problems.append(FieldError(f"preferences.{index}.topic", f"no topic {choice.topic!r}"))
        if choice.channel not in SENDABLE_CHANNELS:
            problems.append(
                FieldError(f"preferences.{index}.channel", f"unknown channel {choice.channel!r}")
            )
    if problems:
        raise InvalidInput(problems)
    for choice in choices:
        updated = conn.execute(
            preferences.update()
            .where(
                preferences.c.contact_id == contact_id,
                preferences.c.topic == choice.topic,
                preferences.c.channel == choice.channel,
            )
            .values(opted_in=choice.opted_in, source=source, updated_at=now)
        )
        if updated.rowcount == 0:
            insert_ignoring_conflicts(
                conn,
                preferences,
                [
                    {
                        "workspace_id": workspace_id,
                        "contact_id": contact_id,
                        "topic": choice.topic,
                        "channel": choice.channel,
                        "opted_in": choice.opted_in,
                        "source": source,
                        "updated_at": now,
                    }
                ],
                on=("contact_id", "topic", "channel"),
            )


def rules_of(conn: Connection, workspace_id: int) -> dict[str, Any]:
    found = conn.execute(
        select(workspace_policies.c.rules).where(workspace_policies.c.workspace_id == workspace_id)
    ).scalar_one_or_none()
    return dict(found or {})


def set_rules(conn: Connection, workspace_id: int, rules: dict[str, Any], now: datetime) -> None:
    update_or_insert(
        conn,
        workspace_policies,
        {"workspace_id": workspace_id},
        {"rules": rules, "updated_at": now},
    )
