"""The outbox: send intents as rows, claimed by workers in batches, outcomes recorded on them.

Claiming is the one dialect-specific query in Junction: on PostgreSQL, ``FOR UPDATE SKIP
LOCKED`` lets any number of workers on any number of machines take disjoint batches; on
SQLite one worker claims, and ``BEGIN IMMEDIATE`` makes the claim atomic.

A claim sets ``status='sending'``, counts the attempt and takes a lease. A worker that dies
mid-batch leaves its rows ``sending``; when the lease runs out they are claimed again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, select, update

from junction.store import routing
from junction.store.lifecycle import Change, record_changes
from junction.store.namespaces import contact_namespace
from junction.store.raw import Raw
from junction.store.sql import driver_json, driver_time, insert_rows_fast
from junction.store.tables import message_attempts, messages

QUEUED = "queued"
SENDING = "sending"
RETRYING = "retrying"
SENT = "sent"
SUPPRESSED = "suppressed"  # decided not to send: the reason is in last_error
# An outcome, never a stored status: this channel failed for good, try the policy's next.
FALLBACK = "fallback"
REROUTED = "rerouted"  # the lifecycle event of a message moving on to its next channel
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
    # How reachability treats it (junction.store.routing): "best of" candidates, caps and
    # quiet-hours options; {"reply": true} for the one answer a keyword requires.
    policy: dict[str, Any] | None = None
    counts: bool = True  # toward frequency caps


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
    policy: dict[str, Any] | None = None  # what the message asked of reachability

    def rendered_as(self, content: dict[str, Any], links: tuple[str, ...]) -> Claimed:
        """This message with its template rendered (``dataclasses.replace``, without its
        per-field introspection: this runs for every templated message)."""
        return Claimed(
            id=self.id,
            workspace_id=self.workspace_id,
            idempotency_key=self.idempotency_key,
            channel=self.channel,
            provider=self.provider,
            to_address=self.to_address,
            content=content,
            category=self.category,
            contact_id=self.contact_id,
            attempts=self.attempts,
            locale=self.locale,
            contact=self.contact,
            links=links,
            rendered=True,
            policy=self.policy,
        )


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
    fallback_at: datetime | None = None  # SENT: try the next channel if not delivered by then
    channel: str | None = None  # FALLBACK: the channel that failed


_ENQUEUED = (
    "workspace_id",
    "contact_id",
    "idempotency_key",
    "channel",
    "provider",
    "to_address",
    "category",
    "content",
    "policy",
    "counts",
    "status",
    "attempts",
    "due_at",
    "created_at",
    "updated_at",
)


def enqueue(conn: Connection, intents: Sequence[Intent], now: datetime) -> dict[str, int]:
    """Store send intents (an intent whose key is already stored is kept as it was);
    returns the message id of every key."""
    if not intents:
        return {}
    time = driver_time(conn)
    queued_at = time(now)
    # A campaign's intents share their content and policy: each is written as JSON once.
    json_of: dict[int, str | None] = {}

    def as_json(value: Any) -> str | None:
        if id(value) not in json_of:  # the intents hold every value: no id is reused here
            json_of[id(value)] = driver_json(value)
        return json_of[id(value)]

    # Straight to the driver: a campaign queues a whole round at once, and SQLAlchemy's
    # per-value processing was two thirds of the cost.
    insert_rows_fast(
        conn,
        messages,
        _ENQUEUED,
        [
            (
                i.workspace_id,
                i.contact_id,
                i.idempotency_key,
                i.channel,
                i.provider,
                i.to_address,
                i.category,
                as_json(i.content),
                as_json(i.policy),
                i.counts,
                QUEUED,
                0,
                queued_at,
                queued_at,
                queued_at,
            )
            for i in intents
        ],
        on=("workspace_id", "idempotency_key"),
    )
    found: dict[str, int] = {}
    raw = Raw(conn)
    for workspace_id in {i.workspace_id for i in intents}:
        keys = [i.idempotency_key for i in intents if i.workspace_id == workspace_id]
        found.update(
            raw.rows_in(
                "SELECT idempotency_key, id FROM messages "
                "WHERE workspace_id = ? AND idempotency_key IN ({})",
                keys,
                before=(workspace_id,),
            )
        )
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


class _ClaimRow(NamedTuple):
    """What a claim reads of each message and its contact: what routing and sending use, not
    the whole row."""

    id: int
    workspace_id: int
    contact_id: int | None
    idempotency_key: str
    channel: str
    provider: str
    to_address: str
    category: str
    content: dict[str, Any]
    status: str
    attempts: int
    due_at: datetime
    policy: dict[str, Any] | None
    decisions: list[dict[str, Any]] | None
    counts: bool
    locale: str | None
    user_id: str | None
    traits: dict[str, Any] | None
    timezone: str | None
    country: str | None


# Straight to the driver: a claim reads hundreds of rows a round, and SQLAlchemy's per-value
# result processing cost more than the query. Oldest due first; on PostgreSQL, rows another
# worker holds are skipped, not waited for.
_CLAIM = (
    "SELECT m.id, m.workspace_id, m.contact_id, m.idempotency_key, m.channel, m.provider, "
    "m.to_address, m.category, m.content, m.status, m.attempts, m.due_at, m.policy, "
    "m.decisions, m.counts, c.locale, c.user_id, c.traits, c.timezone, c.country "
    "FROM messages m LEFT OUTER JOIN contacts c ON c.id = m.contact_id "
    f"WHERE (m.status IN ('{QUEUED}', '{RETRYING}') AND m.due_at <= ?) "
    f"OR (m.status = '{SENDING}' AND m.lease_until < ?) "
    "ORDER BY m.due_at, m.id LIMIT ?"
)


def claim(conn: Connection, now: datetime, limit: int, lease: timedelta) -> list[Claimed]:
    """Take up to ``limit`` due messages for this worker, oldest due first."""
    return claim_batch(conn, now, limit, lease)[0]


def claim_batch(
    conn: Connection, now: datetime, limit: int, lease: timedelta
) -> tuple[list[Claimed], int]:
    """(the messages to send now, how many more the policy held: deferred or suppressed)."""
    raw = Raw(conn)
    at = raw.time(now)
    statement = _CLAIM + (" FOR UPDATE OF m SKIP LOCKED" if raw.postgres else "")
    read_json, read_time = raw.read_json, raw.read_time
    rows = [
        _ClaimRow._make(
            (
                *row[:8],
                read_json(row[8]),  # content
                row[9],
                row[10],
                read_time(row[11]),  # due_at
                read_json(row[12]),  # policy
                read_json(row[13]),  # decisions
                bool(row[14]),  # counts
                *row[15:17],
                read_json(row[17]),  # traits
                *row[18:],
            )
        )
        for row in raw.rows(statement, (at, at, limit))
    ]
    if not rows:
        return [], 0
    routed = routing.route(conn, rows, now)
    sending = [r for r in routed if r.decision is None or r.decision.action == "send"]
    claimed = {
        "status": SENDING,
        "lease_until": now + lease,
        "attempts": messages.c.attempts + 1,
        # A send in flight counts toward caps from now, when it goes: left at an old due
        # time (a backlog), it would fall outside a cap's window for the workers deciding
        # beside this one.
        "due_at": now,
        "updated_at": now,
    }
    as_queued = [r.row.id for r in sending if r.decision is None]
    if as_queued:  # no policy applied: one statement for all
        conn.execute(update(messages).where(messages.c.id.in_(as_queued)).values(**claimed))
    decided = [r for r in sending if r.decision is not None]
    if decided:  # one row each, straight to the driver: this runs for every message
        until = raw.time(now + lease)
        # People alike share one decision (the policy remembers it): a message's first
        # decisions are written as JSON once per decision.
        first: dict[int, str | None] = {}

        def decisions(r: routing.Routed) -> str | None:
            if r.row.decisions:
                return driver_json(_decided(r, now))
            if id(r.decision) not in first:
                first[id(r.decision)] = driver_json(_decided(r, now))
            return first[id(r.decision)]

        raw.many(
            f"UPDATE messages SET status = '{SENDING}', lease_until = ?, attempts = attempts + 1, "
            "due_at = ?, updated_at = ?, channel = ?, provider = ?, to_address = ?, "
            "content = ?, decisions = ? WHERE id = ?",
            [
                (
                    until,
                    at,
                    at,
                    r.channel,
                    r.provider,
                    r.to_address,
                    driver_json(r.content),
                    decisions(r),
                    r.row.id,
                )
                for r in decided
            ],
        )
    held = [r for r in routed if r.decision is not None and r.decision.action != "send"]
    _hold(conn, held, now)
    return [
        Claimed(
            id=r.row.id,
            workspace_id=r.row.workspace_id,
            idempotency_key=r.row.idempotency_key,
            channel=r.channel,
            provider=r.provider,
            to_address=r.to_address,
            content=r.content,
            category=r.row.category,
            contact_id=r.row.contact_id,
            attempts=r.row.attempts + 1,
            locale=r.row.locale,
            contact=contact_namespace(r.row) if r.row.contact_id is not None else None,
            policy=r.row.policy,
        )
        for r in sending
    ], len(held)


def _decided(routed: routing.Routed, now: datetime) -> list[dict[str, Any]] | None:
    """The message's decisions with this one added."""
    earlier = list(routed.row.decisions or [])
    if routed.decision is None:
        return earlier or None
    return [*earlier, {**routed.decision.as_dict(), "at": now.isoformat()}]


def _hold(conn: Connection, held: Sequence[routing.Routed], now: datetime) -> None:
    """Messages the policy does not send now: deferred to a time, or suppressed."""
    if not held:
        return
    conn.execute(
        update(messages)
        .where(messages.c.id == bindparam("mid"))
        .values(
            status=bindparam("new_status"),
            due_at=bindparam("new_due"),
            last_error=bindparam("reason"),
            decisions=bindparam("new_decisions"),
            updated_at=now,
        ),
        [
            {
                "mid": r.row.id,
                "new_status": SUPPRESSED if r.decision.action == "suppress" else r.row.status,
                "new_due": r.decision.until or r.row.due_at,
                "reason": r.decision.reason[:1000],
                "new_decisions": _decided(r, now),
            }
            for r in held
            if r.decision is not None
        ],
    )
    record_changes(
        conn,
        [
            Change(
                r.row.workspace_id,
                r.row.contact_id,
                r.row.id,
                r.channel,
                SUPPRESSED,
                now,
                r.decision.reason,
            )
            for r in held
            if r.decision is not None and r.decision.action == "suppress"
        ],
        now,
    )


def record(conn: Connection, outcomes: Sequence[Outcome], now: datetime) -> None:
    """Write what happened to each claimed message, and the attempt's history row.

    Both statements go to the driver as they are (values already in driver form): this runs
    once per message sent, and SQLAlchemy's per-value processing was most of its cost."""
    if not outcomes:
        return
    time = driver_time(conn)
    at = time(now)
    raw = Raw(conn)
    # A message being sent has no fallback time (it is cleared whenever a message goes back
    # to the queue), so only the outcomes that set one name the column: naming an indexed
    # column in SET rewrites its index entry, whatever the value.
    for with_fallback in (False, True):
        raw.many(
            "UPDATE messages SET status = ?, due_at = ?, lease_until = NULL, last_error = ?, "
            "provider_message_id = ?, details = ?, updated_at = ?"
            + (", fallback_at = ?" if with_fallback else "")
            + f" WHERE id = ? AND status = '{SENDING}'",
            [
                (
                    QUEUED if o.status == FALLBACK else o.status,
                    time(o.due_at or o.finished_at),
                    o.error[:1000] if o.error else None,
                    o.provider_message_id,
                    driver_json(o.details),
                    at,
                    *((time(o.fallback_at),) if with_fallback else ()),
                    o.message_id,
                )
                for o in outcomes
                if (o.fallback_at is not None) is with_fallback
            ],
        )
    _tried(conn, {o.message_id: o.channel for o in outcomes if o.status == FALLBACK and o.channel})
    insert_rows_fast(
        conn,
        message_attempts,
        ("message_id", "number", "started_at", "finished_at", "outcome", "error", "retry_after"),
        [
            (
                o.message_id,
                o.attempt,
                time(o.started_at),
                time(o.finished_at),
                FAILED if o.status == FALLBACK else o.status,
                o.error[:1000] if o.error else None,
                time(o.due_at) if o.status == RETRYING else None,
            )
            for o in outcomes
        ],
    )


def _tried(conn: Connection, failed: dict[int, str]) -> None:
    """Add each message's failed channel to the channels its policy has tried."""
    if not failed:
        return
    rows = conn.execute(
        select(messages.c.id, messages.c.policy, messages.c.decisions, messages.c.last_error).where(
            messages.c.id.in_(list(failed))
        )
    )
    conn.execute(
        update(messages)
        .where(messages.c.id == bindparam("mid"))
        .values(policy=bindparam("p"), decisions=bindparam("d")),
        [
            {
                "mid": row.id,
                "p": {
                    **(row.policy or {}),
                    "tried": [*(row.policy or {}).get("tried", []), failed[row.id]],
                },
                "d": [
                    *(row.decisions or []),
                    {"action": "reroute", "channel": failed[row.id], "reason": row.last_error},
                ],
            }
            for row in rows
        ],
    )


def undelivered_due(conn: Connection, now: datetime) -> bool:
    found = conn.execute(select(messages.c.id).where(messages.c.fallback_at <= now).limit(1))
    return found.first() is not None


def reroute_undelivered(conn: Connection, now: datetime) -> int:
    """Messages whose delivery was not confirmed in time go on to their next channel; returns
    how many did."""
    rows = conn.execute(
        select(
            messages.c.id,
            messages.c.workspace_id,
            messages.c.contact_id,
            messages.c.channel,
            messages.c.status,
            messages.c.policy,
            messages.c.decisions,
        ).where(messages.c.fallback_at <= now)
    ).all()
    if not rows:
        return 0
    conn.execute(
        update(messages)
        .where(messages.c.id.in_([row.id for row in rows if row.status != SENT]))
        .values(fallback_at=None)
    )
    late = [row for row in rows if row.status == SENT]
    return move_on(
        conn,
        late,
        now,
        lambda row: (
            f"{row.channel}: delivery not confirmed within "
            f"{row.policy.get('fallbackAfterSeconds')} seconds"
        ),
    )


def has_next_channel(policy: dict[str, Any] | None, channel: str) -> bool:
    policy = policy or {}
    return bool(set(policy.get("channels") or ()) - {*policy.get("tried", ()), channel})


def move_on(conn: Connection, rows: Sequence[Any], now: datetime, why: Callable[[Any], str]) -> int:
    """Send each message (a row with id, workspace_id, contact_id, channel, policy,
    decisions) again at once on its policy's next channel; returns how many."""
    if not rows:
        return 0
    conn.execute(
        update(messages)
        .where(messages.c.id == bindparam("mid"))
        .values(
            status=QUEUED,
            due_at=now,
            fallback_at=None,
            policy=bindparam("p"),
            decisions=bindparam("d"),
            last_error=bindparam("why"),
            updated_at=now,
        ),
        [
            {
                "mid": row.id,
                "p": {**row.policy, "tried": [*row.policy.get("tried", []), row.channel]},
                "d": [
                    *(row.decisions or []),
                    {
                        "action": "reroute",
                        "channel": row.channel,
                        "reason": why(row),
                        "at": now.isoformat(),
                    },
                ],
                "why": why(row)[:1000],
            }
            for row in rows
        ],
    )
    record_changes(
        conn,
        [
            Change(row.workspace_id, row.contact_id, row.id, row.channel, REROUTED, now, why(row))
            for row in rows
        ],
        now,
    )
    return len(rows)
