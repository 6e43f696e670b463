"""Keywords people text us (STOP, START, HELP), acted on and answered.

Rules kept here:
- only SMS and WhatsApp messages are read for keywords (``KEYWORD_CHANNELS``); what counts
  as one is ``junction.domain.keywords``;
- STOP opts the contact out of every marketing topic on that channel (topic ``*``), START
  opts them back in, both with source ``keyword`` and an event on the contact
  (``message.unsubscribed`` / ``message.resubscribed``); HELP stores nothing;
- each keyword gets exactly one reply, to the sender on the same channel through the
  channel's provider: transactional, with policy ``{"reply": true}`` so the send-time
  reachability policy lets this one answer through even after a STOP; its idempotency key
  and the event's id come from the inbound message's id, so a webhook delivered twice
  replies once;
- a WhatsApp reply is free text: the person has just written, so the 24 h window is open;
- the workspace's rules may hold ``{"brand": "...", "keywords": {"extra": {"BAJA": "stop"},
  "helpText": {"en": "...", "fr": "..."}}}``; anything absent takes the defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from junction.domain.keywords import (
    Keyword,
    classify,
    help_text_in,
    language_of,
    normalise,
    reply_text,
)
from junction.store.ingest import EVENT_COLUMNS
from junction.store.outbox import Intent, enqueue
from junction.store.preferences import EVERY_TOPIC, Choice, rules_of, set_choices
from junction.store.providers import provider_for
from junction.store.sql import driver_json, driver_time, insert_rows_fast
from junction.store.tables import contacts, events

KEYWORD_CHANNELS = frozenset({"sms", "whatsapp"})
EVENTS: Mapping[Keyword, str] = {
    Keyword.STOP: "message.unsubscribed",
    Keyword.START: "message.resubscribed",
}


def handle(
    conn: Connection,
    workspace_id: int,
    contact_id: int,
    channel: str,
    sender_address: str,
    text: str,
    now: datetime,
    *,
    external_id: str,
) -> str | None:
    """Act on a keyword and queue its one reply; returns the reply's text, or None when the
    message is not a keyword (or not on a keyword channel)."""
    if channel not in KEYWORD_CHANNELS:
        return None
    rules = rules_of(conn, workspace_id)
    settings = _mapping(rules.get("keywords"))
    keyword = classify(text, _words(settings.get("extra")))
    if keyword is None:
        return None
    if keyword is not Keyword.HELP:
        opted_in = keyword is Keyword.START
        set_choices(
            conn,
            workspace_id,
            contact_id,
            [Choice(topic=EVERY_TOPIC, channel=channel, opted_in=opted_in)],
            source="keyword",
            now=now,
        )
        _record_event(conn, workspace_id, contact_id, keyword, channel, text, external_id, now)
    locale = conn.execute(
        select(contacts.c.locale).where(contacts.c.id == contact_id)
    ).scalar_one_or_none()
    language = language_of(text, locale)
    brand = rules.get("brand")
    reply = reply_text(
        keyword,
        channel,
        brand if isinstance(brand, str) else None,
        help_text_in(settings.get("helpText"), language),
        language,
    )
    enqueue(
        conn,
        [
            Intent(
                workspace_id=workspace_id,
                idempotency_key=f"junction:keyword:{external_id}",
                channel=channel,
                provider=provider_for(conn, workspace_id, channel),
                to_address=sender_address,
                content={"text": reply},
                contact_id=contact_id,
                category="transactional",
                policy={"reply": True},
            )
        ],
        now,
    )
    return reply


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _words(value: Any) -> dict[str, str]:
    """The workspace's extra words, keeping only well-formed ones: a bad rule must not stop
    an inbound message from being stored."""
    return {k: v for k, v in _mapping(value).items() if isinstance(k, str) and isinstance(v, str)}


def _record_event(
    conn: Connection,
    workspace_id: int,
    contact_id: int,
    keyword: Keyword,
    channel: str,
    text: str,
    external_id: str,
    now: datetime,
) -> None:
    time = driver_time(conn)
    # Shaped like the one-click unsubscribe's event (junction.web.unsubscribe), so a journey
    # waiting for message.unsubscribed reads either the same way.
    properties = {
        "channel": channel,
        "topic": EVERY_TOPIC,
        "source": "keyword",
        "keyword": normalise(text),
    }
    row = (
        workspace_id,
        contact_id,
        f"junction:keyword:{external_id}",
        "track",
        EVENTS[keyword],
        None,
        None,
        driver_json(properties),
        None,
        None,
        time(now),
        time(now),
        None,
    )
    insert_rows_fast(conn, events, EVENT_COLUMNS, [row], on=("workspace_id", "message_id"))
