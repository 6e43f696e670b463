"""Applying the reachability policy to claimed messages, inside the claim's transaction.

Rules kept here:
- every message to a known contact is decided when it is claimed, not when it is queued:
  preferences, caps and quiet hours are those of the moment it would go; a raw address (no
  contact), a webhook call and the one reply a keyword requires skip the policy;
- on PostgreSQL the claim locks the rows of the contacts it decides for, so two workers
  deciding for one person take turns and each sees the other's sends: a cap holds exactly
  under concurrency. SQLite has one writer, which gives the same;
- a contact's counted sends are the messages that count, of the last 31 days, that are being
  sent, sent, delivered or read; failed and suppressed ones do not count. Their time is the
  moment they went (``due_at``: set to the claim time when claimed, to the finish time when
  the outcome is recorded);
- two messages to one person in one batch see each other: each send decided is added to the
  person's history before the next is decided;
- a message routed by a "best of" policy takes the chosen channel's provider and the
  contact's newest usable address on it (newest device, for push); a message that named its
  channel keeps the address chosen when it was queued;
- each decision is appended to the message's ``decisions``, with when it was taken.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, time, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Connection, select

from junction.domain.caps import CapRule, PastSend
from junction.domain.countries import COUNTRY_APPS
from junction.domain.quiet_hours import QuietHours
from junction.domain.reachability import (
    DEFAULT_COSTS,
    Ask,
    ContactFacts,
    Decision,
    Rules,
    Topic,
    decide,
)
from junction.domain.sending import CHANNEL_ADDRESS
from junction.domain.templates import TemplateDefinition
from junction.errors import NotFound
from junction.store import preferences, templates
from junction.store.providers import provider_for
from junction.store.raw import Raw
from junction.store.tables import contacts, topics

COUNTED = ("sending", "sent", "delivered", "read")
ENGAGED = ("message.opened", "message.clicked", "message.read")
SESSION_CHANNELS = ("whatsapp", "messenger")
_RANK = {"active": 0, "unverified": 1, "unsubscribed": 2, "bounced": 3, "invalid": 4}


@dataclasses.dataclass(frozen=True, slots=True)
class Routed:
    """What the claim does with one message."""

    row: Any
    decision: Decision | None  # None: not decided (no contact, a keyword reply)
    channel: str
    provider: str
    to_address: str
    content: dict[str, Any]


def needs_policy(row: Any) -> bool:
    # A webhook is a call to a system, not a message to the person.
    return (
        row.contact_id is not None
        and row.channel != "webhook"
        and not (row.policy or {}).get("reply")
    )


def rules_for(conn: Connection, workspace_id: int) -> Rules:
    stored = preferences.rules_of(conn, workspace_id)
    topic_rows = conn.execute(
        select(topics.c.key, topics.c.default_opt_in, topics.c.channels).where(
            topics.c.workspace_id == workspace_id
        )
    )
    known = tuple(
        (row.key, row.default_opt_in, tuple(row.channels) if row.channels is not None else None)
        for row in topic_rows
    )
    return _rules(orjson.dumps(stored, option=orjson.OPT_SORT_KEYS), known)


@lru_cache(maxsize=256)
def _rules(stored_json: bytes, known: tuple[tuple[Any, ...], ...]) -> Rules:
    """The same stored rules give the same ``Rules`` object, claim after claim: the policy
    keeps what it works out once per ask and per contact state on it."""
    stored = orjson.loads(stored_json)
    extra: dict[str, Any] = {}
    if stored.get("countryApps"):  # per country, over the built-in table
        extra["country_apps"] = {
            **COUNTRY_APPS,
            **{k: tuple(v) for k, v in stored["countryApps"].items()},
        }
    if stored.get("costs"):
        extra["costs"] = {**DEFAULT_COSTS, **stored["costs"]}
    return Rules(
        topics={
            key: Topic(key, opt_in, frozenset(channels) if channels is not None else None)
            for key, opt_in, channels in known
        },
        caps=tuple(cap_rule(cap) for cap in stored.get("caps", [])),
        quiet_hours=tuple(quiet_window(q) for q in stored.get("quietHours", [])),
        **extra,
    )


def cap_rule(stored: dict[str, Any]) -> CapRule:
    return CapRule(
        id=stored["id"],
        limit=stored["limit"],
        amount=stored["per"]["amount"],
        unit=stored["per"]["unit"],
        channel=stored.get("channel"),
        topic=stored.get("topic"),
    )


def quiet_window(stored: dict[str, Any]) -> QuietHours:
    return QuietHours(
        time.fromisoformat(stored["start"]),
        time.fromisoformat(stored["end"]),
        frozenset(stored.get("channels") or ()),
    )


def route(conn: Connection, rows: Sequence[Any], now: datetime) -> list[Routed]:
    """Decide every message of a claim; messages without a contact pass through."""
    deciding = [row for row in rows if needs_policy(row)]
    contact_ids = sorted({row.contact_id for row in deciding})
    if contact_ids and conn.dialect.name == "postgresql":
        conn.execute(
            select(contacts.c.id)
            .where(contacts.c.id.in_(contact_ids))
            .order_by(contacts.c.id)
            .with_for_update()
        )
    # The claim read each person's row with their message: no second read.
    people = {row.contact_id: row for row in deciding}
    facts = _facts(conn, people, {row.id for row in rows}, now) if contact_ids else {}
    rules = {ws: rules_for(conn, ws) for ws in {row.workspace_id for row in deciding}}
    routed = []
    offers: Offers = {}
    asks: dict[tuple[Any, ...], Ask] = {}
    providers: dict[tuple[int, str], str] = {}  # one lookup per channel a claim chooses
    still_to_decide = Counter(row.contact_id for row in deciding)
    for row in rows:
        if not needs_policy(row):
            routed.append(Routed(row, None, row.channel, row.provider, row.to_address, row.content))
            continue
        still_to_decide[row.contact_id] -= 1
        contact, reach = facts[row.contact_id]
        ask = _ask(conn, row, offers, asks)
        decision = decide(ask, contact, rules[row.workspace_id], now)
        channel = decision.channel or row.channel
        provider, to_address, content = row.provider, row.to_address, row.content
        if decision.action == "send" and (channel != row.channel or not row.to_address):
            to_address, beside = reach.get(channel, ("", {}))
            if (row.workspace_id, channel) not in providers:
                providers[(row.workspace_id, channel)] = provider_for(
                    conn, row.workspace_id, channel
                )
            provider = providers[(row.workspace_id, channel)]
            content = {**_without_beside(row.content), **beside}
        if decision.action == "send" and row.counts and still_to_decide[row.contact_id]:
            # Their next message in this claim sees this send.
            at_topic = None if row.category == "transactional" else row.category
            updated = _newest_first([PastSend(now, channel, at_topic), *contact.history])
            facts[row.contact_id] = (dataclasses.replace(contact, history=updated), reach)
        routed.append(Routed(row, decision, channel, provider, to_address, content))
    return routed


def _newest_first(sends: list[PastSend]) -> list[PastSend]:
    # The policy counts a cap's window from the newest send back and stops at its start.
    return sorted(sends, key=lambda sent: sent.at, reverse=True)


def _without_beside(content: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in content.items() if k != "subscription_keys"}


# What a template offers a message's candidates: (channels with content, those whose content
# needs an open session), by (workspace, key, version, locale, candidates) — a campaign's
# messages ask the same question, so it is answered once per claim.
Offers = dict[tuple[Any, ...], tuple[frozenset[str], frozenset[str]]]


def _ask(conn: Connection, row: Any, offers: Offers, asks: dict[tuple[Any, ...], Ask]) -> Ask:
    """What the message asks of the policy. A campaign's messages all ask the same: one
    ``Ask`` per claim serves them (and the policy finds its plan for it by identity)."""
    content = row.content
    if "templateKey" not in content:
        return _new_ask(conn, row, offers)
    key = (
        row.workspace_id,
        row.channel,
        row.category,
        row.counts,
        content["templateKey"],
        content["templateVersion"],
        content.get("locale"),
        orjson.dumps(row.policy, option=orjson.OPT_SORT_KEYS),
    )
    if key not in asks:
        asks[key] = _new_ask(conn, row, offers)
    return asks[key]


def _new_ask(conn: Connection, row: Any, offers: Offers) -> Ask:
    policy = row.policy or {}
    candidates = tuple(policy.get("channels") or (row.channel,))
    content = row.content
    if "templateKey" in content:
        key = (
            row.workspace_id,
            content["templateKey"],
            content["templateVersion"],
            content.get("locale"),
            candidates,
        )
        if key not in offers:
            offers[key] = _template_channels(conn, row, candidates)
        offered, session_only = offers[key]
    else:
        offered = frozenset({row.channel})
        session_only = frozenset(
            channel
            for channel, needs in (("whatsapp", "template"), ("messenger", "tag"))
            if row.channel == channel and needs not in content
        )
    return Ask(
        candidates=candidates,
        category=row.category,
        content_channels=offered,
        session_only=session_only,
        ignore_caps=bool(policy.get("ignoreCaps")),
        counts=row.counts,
        quiet="drop" if policy.get("quietHours") == "drop" else "defer",
        exclude=frozenset(policy.get("tried", ())),
    )


def _template_channels(
    conn: Connection, row: Any, candidates: Sequence[str]
) -> tuple[frozenset[str], frozenset[str]]:
    """(candidates the template has content for, those whose content needs a session)."""
    content = row.content
    try:
        compiled = templates.load(
            conn, row.workspace_id, content["templateKey"], int(content["templateVersion"])
        )
    except NotFound:
        return frozenset(), frozenset()
    definition: TemplateDefinition = compiled.definition
    locale = content.get("locale")
    offered, session_only = set(), set()
    for channel in candidates:
        _, block = definition.block(channel, locale)
        if block is None:
            continue
        offered.add(channel)
        if channel == "whatsapp" and getattr(block, "template", None) is None:
            session_only.add(channel)
        if channel == "messenger" and getattr(block, "tag", None) is None:
            session_only.add(channel)
    return frozenset(offered), frozenset(session_only)


Reach = dict[str, tuple[str, dict[str, Any]]]  # channel -> (address, what goes beside it)


# Shared by everyone who has none: the policy only reads them.
_NONE: Mapping[Any, Any] = MappingProxyType({})
_NO_CHANNELS: frozenset[str] = frozenset()


class _Address(NamedTuple):
    value: str
    status: str
    details: Any  # as the driver gives it: read only for the kinds that use it


def _rank(address: _Address) -> int:
    return _RANK.get(address.status, 9)


# The channels each kind of address serves (a phone: SMS, voice and WhatsApp).
_CHANNELS_OF: dict[str, tuple[str, ...]] = {
    str(kind): tuple(channel for channel, its in CHANNEL_ADDRESS.items() if its == kind)
    for kind in CHANNEL_ADDRESS.values()
    if kind is not None
}


def _facts(
    conn: Connection, people: dict[int, Any], claiming: set[int], now: datetime
) -> dict[int, tuple[ContactFacts, Reach]]:
    """Each person's reachability facts; ``people`` are their contact rows (``user_id``,
    ``timezone``, ``country``, ``traits``) by id."""
    contact_ids = list(people)
    statuses: dict[int, dict[str, str]] = defaultdict(dict)
    reach: dict[int, Reach] = defaultdict(dict)
    # Straight to the driver: these reads run for every claim, and SQLAlchemy's
    # statement and row handling cost more than SQLite's own work.
    raw = Raw(conn)
    by_kind: dict[int, dict[str, list[_Address]]] = defaultdict(lambda: defaultdict(list))
    for contact_id, kind, value, status, details in raw.rows_in(
        "SELECT contact_id, kind, value, status, details FROM addresses "
        "WHERE contact_id IN ({}) ORDER BY updated_at DESC, id DESC",
        contact_ids,
    ):
        by_kind[contact_id][kind].append(_Address(value, status, details))
    phone_country: dict[int, str] = {}
    for contact_id, kinds in by_kind.items():
        for kind, found_all in kinds.items():
            if kind == "phone":
                for phone in found_all:
                    country = (raw.read_json(phone.details) or {}).get("country")
                    if country:
                        phone_country[contact_id] = country
                        break
            # The newest of the best status, for every channel the kind of address serves.
            found = found_all[0] if len(found_all) == 1 else min(found_all, key=_rank)
            for channel in _CHANNELS_OF.get(kind, ()):
                statuses[contact_id][channel] = found.status
                # An unsubscribed address still takes what the policy lets through to it
                # (transactional mail); bounced and invalid ones take nothing.
                if found.status in ("active", "unverified", "unsubscribed"):
                    beside = {}
                    if channel == "web_push":
                        keys = (raw.read_json(found.details) or {}).get("keys", {})
                        beside = {"subscription_keys": keys}
                    reach[contact_id][channel] = (found.value, beside)
    for contact_id, person in people.items():
        for channel in ("in_app", "content_card"):
            reach[contact_id][channel] = (person.user_id or "", {})

    history: dict[int, list[PastSend]] = defaultdict(list)
    sent: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    month_ago = now - timedelta(days=31)
    # The status is checked here, not in SQL: given "status IN (…)", SQLite walks the
    # (status, due_at) index through every message sent in 90 days — the whole campaign so
    # far — instead of each person's own few by contact.
    for message_id, contact_id, channel, category, due_at, counts, status in raw.rows_in(
        "SELECT id, contact_id, channel, category, due_at, counts, status FROM messages "
        "WHERE due_at >= ? AND contact_id IN ({})",
        contact_ids,
        before=(raw.time(now - timedelta(days=90)),),
    ):
        if status not in COUNTED or message_id in claiming:
            continue
        sent[contact_id][channel] += 1
        went = raw.read_time(due_at)
        if counts and went is not None and went >= month_ago:
            topic = None if category == "transactional" else category
            history[contact_id].append(PastSend(went, channel, topic))

    engaged: dict[int, dict[str, set[Any]]] = defaultdict(lambda: defaultdict(set))
    sessions: dict[int, set[str]] = defaultdict(set)
    names = ", ".join(f"'{name}'" for name in (*ENGAGED, "message.received"))
    day_ago = now - timedelta(hours=24)
    for contact_id, name, properties, timestamp in raw.rows_in(
        "SELECT contact_id, name, properties, timestamp FROM events "
        f"WHERE name IN ({names}) AND timestamp >= ? AND contact_id IN ({{}})",
        contact_ids,
        before=(raw.time(now - timedelta(days=90)),),
    ):
        properties = raw.read_json(properties) or {}
        on = properties.get("channel")
        if name == "message.received":
            at = raw.read_time(timestamp)
            if on in SESSION_CHANNELS and at is not None and at >= day_ago:
                sessions[contact_id].add(on)
        elif on:  # a message opened and clicked is one engaged message
            engaged[contact_id][on].add(properties.get("messageId"))

    choices = preferences.choices_of(conn, contact_ids)
    facts: dict[int, tuple[ContactFacts, Reach]] = {}
    for contact_id, person in people.items():
        chosen = choices.get(contact_id)
        traits = person.traits or {}
        preferred = traits.get("preferred_channel")
        counted = sent.get(contact_id)
        facts[contact_id] = (
            ContactFacts(
                timezone=person.timezone,
                # The usual apps are those of the phone's country when no country is known.
                country=person.country or phone_country.get(contact_id),
                preferred_channel=preferred if isinstance(preferred, str) else None,
                addresses=statuses.get(contact_id, _NONE),
                # Most people have made no choices and have no engagement yet.
                opted_out=frozenset(
                    channel
                    for (topic, channel), opted_in in chosen.items()
                    if topic == preferences.EVERY_TOPIC and not opted_in
                )
                if chosen
                else _NO_CHANNELS,
                preferences={k: v for k, v in chosen.items() if k[0] != preferences.EVERY_TOPIC}
                if chosen
                else _NONE,
                engagement={
                    channel: (min(len(engaged[contact_id][channel]), count), count)
                    for channel, count in counted.items()
                }
                if counted
                else _NONE,
                open_sessions=frozenset(sessions[contact_id])
                if contact_id in sessions
                else _NO_CHANNELS,
                history=_newest_first(history[contact_id]) if contact_id in history else (),
            ),
            reach[contact_id],
        )
    return facts
