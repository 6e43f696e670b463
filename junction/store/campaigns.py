"""Campaigns stored: definitions saved as drafts, moved through their states, their audience
frozen when they start, and their recipients queued batch by batch.

Rules kept here:
- a definition is checked whole before anything is written (its shape; its templates and
  segment exist; a schedule not in the past): every problem names its field, and nothing is
  saved unless all is well. Only a draft can be changed;
- states: draft → scheduled → sending → completed; ``send`` goes from draft (or scheduled)
  straight to sending; sending or scheduled ↔ paused; anything unfinished → cancelled. A move
  its state does not allow is a ``Conflict`` that says which moves it allows;
- the audience is frozen when sending starts, in one transaction: who is in the segment then
  gets a recipient row (variant, control group, due time), and nobody else is added later —
  a person who joins the segment afterwards is not sent this campaign. Scheduling and
  sending refuse an audience that is empty at that moment;
- each round queues a batch of due, pending recipients: their messages go into the outbox
  and the recipients become ``queued`` with their message's id, in the same transaction. A
  crash between rounds repeats nothing and skips nobody; on PostgreSQL the batch is claimed
  ``FOR UPDATE SKIP LOCKED``, so workers share a campaign;
- the engine feeds the outbox no faster than it is drained: a round queues only while fewer
  than a few thousand messages wait there to be claimed (the dispatcher's claim slows down
  as the queue grows, and a paused campaign's queued messages still go);
- a message's key is ``campaign:{campaign id}:{contact id}`` (``…:pull`` for the in-app
  message or content card paired with it): the outbox keeps one message per key;
- every main message asks reachability for the best of its channels (one channel is a best
  of one): the channel, the address, preferences, caps and quiet hours are decided when it
  is sent. The pull message goes to Junction's own inbox, does not count toward caps and is
  not held back by them: it is the same touch as the push it continues;
- held recipients of an A/B test (those outside the test group) fall due when the test
  period ends; the winner is chosen then, once, from the test group's counts so far;
- a campaign with nobody pending any more is completed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, String, and_, bindparam, cast, func, literal, select

from junction.domain import campaigns as domain
from junction.domain.campaigns import CampaignDefinition, VariantScore
from junction.errors import Conflict, FieldError, InvalidInput, NotFound
from junction.store import outbox, templates
from junction.store.definitions import validated
from junction.store.providers import provider_for
from junction.store.raw import Raw
from junction.store.segments import audience
from junction.store.sql import driver_time, insert_rows_fast
from junction.store.tables import (
    campaign_recipients,
    campaigns,
    contacts,
    events,
    messages,
    segments,
)

DRAFT, SCHEDULED, SENDING = "draft", "scheduled", "sending"
PAUSED, COMPLETED, CANCELLED = "paused", "completed", "cancelled"
PENDING, QUEUED, CONTROL, SKIPPED = "pending", "queued", "control", "skipped"
FINISHED = (COMPLETED, CANCELLED)
SENT_STATUSES = ("sent", "delivered", "read")
DELIVERED_STATUSES = ("delivered", "read")
_CHUNK = 5000  # recipient rows per executemany when freezing


# ---------------------------------------------------------------------------- definitions


def parse(raw: Any) -> CampaignDefinition:
    return validated(CampaignDefinition, raw, "campaign", lambda location: _where(raw, location))


def _where(raw: dict[str, Any], location: Sequence[Any]) -> str:
    """The field's path as the user wrote it: a variant named by its key, and pydantic's
    union members (``audience.SegmentAudience.segment``) left out."""
    parts = [str(p) for p in location if not _union_member(str(p))]
    if len(parts) >= 2 and parts[0] == "variants" and parts[1].isdigit():
        variants = raw.get("variants")
        index = int(parts[1])
        found = variants[index] if isinstance(variants, list) and index < len(variants) else None
        if isinstance(found, dict) and isinstance(found.get("key"), str):
            parts[1] = found["key"]
    return ".".join(parts)


def _union_member(part: str) -> bool:
    return part[:1].isupper() or "[" in part


def check(
    conn: Connection, workspace_id: int, definition: CampaignDefinition, now: datetime
) -> list[FieldError]:
    """What the database says is wrong: unknown templates or segment, templates without
    content for the channels, a schedule in the past."""
    errors = []
    for field, key in definition.templates():
        wanted = (
            [definition.pull.channel]
            if field == "pull.template" and definition.pull
            else definition.message.candidates()
        )
        try:
            compiled = templates.load(
                conn, workspace_id, key, templates.current_version(conn, workspace_id, key)
            )
        except NotFound:
            errors.append(FieldError(field, f"no template {key!r} in this workspace"))
            continue
        if not any(compiled.definition.block(channel, None)[1] for channel in wanted):
            offered = ", ".join(compiled.definition.channel_names()) or "none"
            errors.append(
                FieldError(
                    field,
                    f"template {key!r} has no {' or '.join(wanted)} content (it has: {offered})",
                )
            )
    segment = definition.segment
    if segment is not None and not _segment_exists(conn, workspace_id, segment):
        errors.append(FieldError("audience.segment", f"no segment {segment!r} in this workspace"))
    last = domain.last_due(definition)
    if last is not None and last <= now:
        errors.append(
            FieldError("schedule.at", f"{_iso(last)} has passed; give a time in the future")
        )
    return errors


def _segment_exists(conn: Connection, workspace_id: int, key: str) -> bool:
    found = conn.scalar(
        select(segments.c.id).where(
            segments.c.workspace_id == workspace_id,
            segments.c.key == key,
            segments.c.status == "active",
        )
    )
    return found is not None


def _digest(stored: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(stored, option=orjson.OPT_SORT_KEYS)).hexdigest()


def save(conn: Connection, workspace_id: int, raw: Any, now: datetime) -> dict[str, Any]:
    """Create or change a draft: ``created`` says which; unchanged, nothing is written."""
    definition = parse(raw)
    errors = check(conn, workspace_id, definition, now)
    if errors:
        raise InvalidInput(errors)
    stored = definition.model_dump(mode="json", by_alias=True, exclude_none=True)
    row = _find(conn, workspace_id, definition.key, missing_ok=True)
    if row is None:
        conn.execute(
            campaigns.insert().values(
                workspace_id=workspace_id,
                key=definition.key,
                name=definition.name,
                status=DRAFT,
                definition=stored,
                created_at=now,
                updated_at=now,
            )
        )
        return {"key": definition.key, "status": DRAFT, "created": True, "changed": True}
    if _digest(row.definition) == _digest(stored):
        return {"key": definition.key, "status": row.status, "created": False, "changed": False}
    if row.status != DRAFT:
        raise Conflict(
            f"campaign {definition.key!r} is {row.status}; only a draft can change "
            "(use a new key for another campaign)"
        )
    conn.execute(
        campaigns.update()
        .where(campaigns.c.id == row.id)
        .values(name=definition.name, definition=stored, updated_at=now)
    )
    return {"key": definition.key, "status": DRAFT, "created": False, "changed": True}


def _find(conn: Connection, workspace_id: int, key: str, missing_ok: bool = False) -> Any:
    row = conn.execute(
        select(campaigns).where(campaigns.c.workspace_id == workspace_id, campaigns.c.key == key)
    ).first()
    if row is None and not missing_ok:
        raise NotFound(f"no campaign {key!r} in this workspace")
    return row


def _locked(conn: Connection, workspace_id: int, key: str) -> Any:
    """The campaign's row, locked on PostgreSQL so a state change and a round take turns."""
    query = select(campaigns).where(
        campaigns.c.workspace_id == workspace_id, campaigns.c.key == key
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"no campaign {key!r} in this workspace")
    return row


# ---------------------------------------------------------------------------- state moves

# Which states each move may start from.
_FROM = {
    "schedule": (DRAFT,),
    "send": (DRAFT, SCHEDULED),
    "pause": (SCHEDULED, SENDING),
    "resume": (PAUSED,),
    "cancel": (DRAFT, SCHEDULED, SENDING, PAUSED),
}


def _allowed(row: Any, move: str) -> None:
    if row.status not in _FROM[move]:
        can = [name for name, starts in _FROM.items() if row.status in starts]
        hint = f"; it can: {', '.join(can)}" if can else ""
        raise Conflict(
            f"campaign {row.key!r} is {row.status}: it cannot {move}{hint}"
            if row.status not in FINISHED
            else f"campaign {row.key!r} is {row.status}: nothing more can happen to it"
        )


def schedule(
    conn: Connection, workspace_id: int, key: str, now: datetime, at: datetime | None = None
) -> dict[str, Any]:
    """Draft → scheduled, at the definition's time (or ``at``, which becomes it)."""
    row = _locked(conn, workspace_id, key)
    _allowed(row, "schedule")
    stored = dict(row.definition)
    if at is not None:
        stored["schedule"] = {**stored.get("schedule", {}), "at": at.isoformat()}
    definition = parse(stored)
    if definition.schedule is None:
        raise InvalidInput(FieldError("schedule.at", "give a time to schedule it at (or send it)"))
    errors = check(conn, workspace_id, definition, now)
    if not audience(conn, workspace_id, definition.segment, now):
        errors.append(_empty_audience(definition))
    if errors:
        raise InvalidInput(errors)
    conn.execute(
        campaigns.update()
        .where(campaigns.c.id == row.id)
        .values(
            status=SCHEDULED,
            definition=definition.model_dump(mode="json", by_alias=True, exclude_none=True),
            scheduled_at=domain.first_due(definition),
            updated_at=now,
        )
    )
    return status(conn, workspace_id, key)


def _empty_audience(definition: CampaignDefinition) -> FieldError:
    who = f"segment {definition.segment!r}" if definition.segment else "this workspace"
    return FieldError("audience", f"nobody is in {who}: the campaign would send to no one")


def send(conn: Connection, workspace_id: int, key: str, now: datetime) -> dict[str, Any]:
    """Start sending now: the audience is frozen in this transaction."""
    row = _locked(conn, workspace_id, key)
    _allowed(row, "send")
    definition = parse(row.definition)
    errors = [e for e in check(conn, workspace_id, definition, now) if e.field != "schedule.at"]
    if errors:
        raise InvalidInput(errors)
    if not _freeze(conn, row, definition, now, now_only=True):
        raise InvalidInput(_empty_audience(definition))
    return status(conn, workspace_id, key)


def move(conn: Connection, workspace_id: int, key: str, action: str, now: datetime) -> Any:
    """pause, resume or cancel."""
    row = _locked(conn, workspace_id, key)
    _allowed(row, action)
    values: dict[str, Any] = {"updated_at": now}
    if action == "pause":
        values["status"] = PAUSED
    elif action == "resume":
        values["status"] = SENDING if row.started_at is not None else SCHEDULED
    else:
        values.update(status=CANCELLED, finished_at=now)
        # Nobody left waiting: those not queued yet never will be.
        conn.execute(
            campaign_recipients.update()
            .where(
                campaign_recipients.c.campaign_id == row.id,
                campaign_recipients.c.status == PENDING,
            )
            .values(status=SKIPPED, reason="cancelled")
        )
    conn.execute(campaigns.update().where(campaigns.c.id == row.id).values(**values))
    return status(conn, workspace_id, key)


def _freeze(
    conn: Connection, row: Any, definition: CampaignDefinition, now: datetime, now_only: bool
) -> int:
    """Read the audience, write a recipient row for each person, and start sending; how
    many there are (0: nothing written)."""
    people = audience(conn, row.workspace_id, definition.segment, now)
    if not people:
        return 0
    zones: dict[int, str | None] = {}
    if definition.schedule is not None and definition.schedule.local_time and not now_only:
        zones = dict(
            conn.execute(
                select(contacts.c.id, contacts.c.timezone).where(
                    contacts.c.workspace_id == row.workspace_id
                )
            ).all()
        )
    test = definition.ab_test
    test_ends = now + test.after.delta() if test else now
    within = definition.goal.within.delta() if definition.goal else None
    time = driver_time(conn)
    batch: list[tuple[Any, ...]] = []
    for contact_id in people:
        due = now if now_only else domain.due_at(definition, zones.get(contact_id), now)
        placed = domain.assign(definition, contact_id)
        state = CONTROL if placed.group == "control" else PENDING
        if placed.group == "held":
            due = max(due, test_ends)
        convert_by = time(due + within) if within else None
        batch.append((row.id, contact_id, placed.variant, state, time(due), convert_by))
        if len(batch) >= _CHUNK:
            _insert_recipients(conn, batch)
            batch = []
    _insert_recipients(conn, batch)
    conn.execute(
        campaigns.update()
        .where(campaigns.c.id == row.id)
        .values(status=SENDING, started_at=now, audience_size=len(people), updated_at=now)
    )
    return len(people)


def _insert_recipients(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    insert_rows_fast(
        conn,
        campaign_recipients,
        ("campaign_id", "contact_id", "variant", "status", "due_at", "convert_by"),
        rows,
        on=("campaign_id", "contact_id"),
    )


# ---------------------------------------------------------------------------- rounds


def due_work(conn: Connection, now: datetime) -> bool:
    """Whether any campaign may have something to do now (a cheap read)."""
    starting = conn.scalar(
        select(campaigns.c.id)
        .where(campaigns.c.status == SCHEDULED, campaigns.c.scheduled_at <= now)
        .limit(1)
    )
    return starting is not None or bool(sending_ids(conn, now))


def start_due(conn: Connection, now: datetime) -> int:
    """Freeze the audience of every scheduled campaign whose time has come; how many started."""
    query = select(campaigns).where(
        campaigns.c.status == SCHEDULED, campaigns.c.scheduled_at <= now
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    started = 0
    for row in conn.execute(query).all():
        definition = parse(row.definition)
        if not _freeze(conn, row, definition, now, now_only=False):
            # Scheduling refused an empty audience; it emptied since: nothing to send.
            conn.execute(
                campaigns.update()
                .where(campaigns.c.id == row.id)
                .values(
                    status=COMPLETED,
                    started_at=now,
                    finished_at=now,
                    audience_size=0,
                    updated_at=now,
                )
            )
        started += 1
    return started


def sending_ids(conn: Connection, now: datetime) -> list[int]:
    """The sending campaigns with work now: recipients due, or none pending (to complete).
    One waiting for its recipients' local times or a test's end costs no write."""
    r = campaign_recipients
    pending = select(r.c.contact_id).where(r.c.campaign_id == campaigns.c.id, r.c.status == PENDING)
    due = pending.where(r.c.due_at <= now)
    return list(
        conn.scalars(
            select(campaigns.c.id).where(
                campaigns.c.status == SENDING, due.exists() | ~pending.exists()
            )
        )
    )


def outbox_backlog(conn: Connection, now: datetime, bound: int) -> int:
    """How many messages wait in the outbox to be claimed now, counted up to ``bound``
    (an index range: cheap however long the queue)."""
    waiting = (
        select(messages.c.id)
        .where(messages.c.status == outbox.QUEUED, messages.c.due_at <= now)
        .limit(bound)
        .subquery()
    )
    return int(conn.scalar(select(func.count()).select_from(waiting)) or 0)


def run_round(
    conn: Connection,
    campaign_id: int,
    now: datetime,
    batch: int,
    outbox_bound: int | None = None,
) -> int:
    """Queue one batch of a sending campaign's due recipients; how many it handled. With
    ``outbox_bound``, only while fewer messages than that wait in the outbox: the campaign
    is fed to the outbox at the pace the dispatcher drains it (a claim's cost grows with
    the backlog, and a pause stops sends within a few batches)."""
    query = select(campaigns).where(campaigns.c.id == campaign_id, campaigns.c.status == SENDING)
    if conn.dialect.name == "postgresql":
        # FOR KEY SHARE: rounds of several workers run side by side (their recipients are
        # claimed with SKIP LOCKED); a state move (FOR UPDATE) waits for them, and they for it.
        query = query.with_for_update(read=True, key_share=True)
    row = conn.execute(query).first()
    if row is None:
        return 0  # paused, cancelled or finished since, or another worker holds it
    definition = parse(row.definition)
    limit = batch
    if outbox_bound is not None:
        limit = min(limit, outbox_bound - outbox_backlog(conn, now, outbox_bound))
        if limit <= 0:
            return 0
    if definition.throttle is not None:
        recent = conn.scalar(
            select(func.count())
            .select_from(campaign_recipients)
            .where(
                campaign_recipients.c.campaign_id == row.id,
                campaign_recipients.c.queued_at > now - timedelta(minutes=1),
            )
        )
        limit = min(limit, domain.allowance(definition.throttle.per_minute, recent or 0) or 0)
        if limit == 0:
            return 0
    claim = (
        select(campaign_recipients.c.contact_id, campaign_recipients.c.variant)
        .where(
            campaign_recipients.c.campaign_id == row.id,
            campaign_recipients.c.status == PENDING,
            campaign_recipients.c.due_at <= now,
        )
        .order_by(campaign_recipients.c.due_at, campaign_recipients.c.contact_id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        claim = claim.with_for_update(skip_locked=True)
    due = conn.execute(claim).all()
    if not due:
        _complete_if_done(conn, row, now)
        return 0
    winner = row.winner
    if winner is None and any(r.variant is None for r in due):
        winner = _choose_winner(conn, row, definition, now)
    _queue(conn, row, definition, [(r.contact_id, r.variant or str(winner)) for r in due], now)
    return len(due)


def _complete_if_done(conn: Connection, row: Any, now: datetime) -> None:
    left = conn.scalar(
        select(campaign_recipients.c.contact_id)
        .where(
            campaign_recipients.c.campaign_id == row.id,
            campaign_recipients.c.status == PENDING,
        )
        .limit(1)
    )
    if left is None:
        conn.execute(
            campaigns.update()
            .where(campaigns.c.id == row.id)
            .values(status=COMPLETED, finished_at=now, updated_at=now)
        )


def _choose_winner(
    conn: Connection, row: Any, definition: CampaignDefinition, now: datetime
) -> str:
    test = definition.ab_test
    assert test is not None
    stats = variant_stats(conn, row.id, definition)
    scores = {
        key: VariantScore(sent=counts["sent"], hits=counts[test.metric])
        for key, counts in stats.items()
    }
    chosen = domain.winner(definition.variant_keys(), scores)
    conn.execute(
        campaigns.update().where(campaigns.c.id == row.id).values(winner=chosen, updated_at=now)
    )
    return chosen


def _queue(
    conn: Connection,
    row: Any,
    definition: CampaignDefinition,
    due: Sequence[tuple[int, str]],
    now: datetime,
) -> None:
    """The batch's messages into the outbox, and its recipients marked queued with them."""
    workspace_id = row.workspace_id
    message = definition.message
    candidates = message.candidates()
    policy: dict[str, Any] = {"channels": candidates}
    if message.ignore_caps:
        policy["ignoreCaps"] = True
    if message.quiet_hours != "defer":
        policy["quietHours"] = message.quiet_hours
    provider = provider_for(conn, workspace_id, candidates[0])
    contents: dict[str, dict[str, Any] | None] = {}
    for variant in {v for _, v in due}:
        contents[variant] = _content(
            conn, workspace_id, definition.template_of(variant), definition.data_of(variant)
        )
    pull = definition.pull
    pull_content = (
        _content(conn, workspace_id, pull.template, {**message.data, **pull.data}) if pull else None
    )
    user_ids: dict[int, str | None] = {}
    if pull is not None:
        people = [contact_id for contact_id, _ in due]
        for chunk in range(0, len(people), 900):  # SQLite's bound-parameter limit
            user_ids.update(
                conn.execute(
                    select(contacts.c.id, contacts.c.user_id).where(
                        contacts.c.id.in_(people[chunk : chunk + 900])
                    )
                ).all()
            )
    intents: list[outbox.Intent] = []
    skipped: list[dict[str, Any]] = []
    for contact_id, variant in due:
        content = contents[variant]
        if content is None:
            reason = f"template {definition.template_of(variant)!r} is gone"
            skipped.append({"c": row.id, "p": contact_id, "s": SKIPPED, "r": reason})
            continue
        key = f"campaign:{row.id}:{contact_id}"
        intents.append(
            outbox.Intent(
                workspace_id=workspace_id,
                idempotency_key=key,
                channel=candidates[0],
                provider=provider,
                to_address="",  # chosen with the channel, when it is sent
                content=content,
                contact_id=contact_id,
                category=message.category,
                policy=policy,
            )
        )
        if pull is not None and pull_content is not None:
            intents.append(
                outbox.Intent(
                    workspace_id=workspace_id,
                    idempotency_key=f"{key}:pull",
                    channel=pull.channel,
                    provider="inbox",
                    to_address=user_ids.get(contact_id) or str(contact_id),
                    content=pull_content,
                    contact_id=contact_id,
                    category=message.category,
                    policy={"channels": [pull.channel], "ignoreCaps": True},
                    counts=False,
                )
            )
    ids = outbox.enqueue(conn, intents, now)
    queued_at = driver_time(conn)(now)
    queued = [
        (QUEUED, variant, ids[key], queued_at, row.id, contact_id)
        for contact_id, variant in due
        if (key := f"campaign:{row.id}:{contact_id}") in ids
    ]
    # One row per recipient, straight to the driver.
    Raw(conn).many(
        "UPDATE campaign_recipients SET status = ?, variant = ?, message_id = ?, queued_at = ? "
        "WHERE campaign_id = ? AND contact_id = ?",
        queued,
    )
    if skipped:
        conn.execute(
            campaign_recipients.update()
            .where(
                campaign_recipients.c.campaign_id == bindparam("c"),
                campaign_recipients.c.contact_id == bindparam("p"),
            )
            .values(status=bindparam("s"), reason=bindparam("r")),
            skipped,
        )


def _content(
    conn: Connection, workspace_id: int, key: str, data: dict[str, Any]
) -> dict[str, Any] | None:
    """What a message stores: the template's key and current version, and the data."""
    try:
        version = templates.current_version(conn, workspace_id, key)
    except NotFound:
        return None
    content: dict[str, Any] = {"templateKey": key, "templateVersion": version}
    if data:
        content["data"] = data
    return content


# ---------------------------------------------------------------------------- reading


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def variant_stats(
    conn: Connection, campaign_id: int, definition: CampaignDefinition
) -> dict[str, dict[str, int]]:
    """Per variant: recipients, sent, delivered, opened, clicked, converted (unique people);
    and ``control`` for the holdout (recipients and converted)."""
    r, m = campaign_recipients, messages
    stats = {
        key: {k: 0 for k in ("recipients", "sent", "delivered", "opened", "clicked", "converted")}
        for key in definition.variant_keys()
    }
    base = r.c.campaign_id == campaign_id
    for variant, message_status, amount in conn.execute(
        select(r.c.variant, m.c.status, func.count())
        .select_from(r.join(m, m.c.id == r.c.message_id))
        .where(base, r.c.status == QUEUED)
        .group_by(r.c.variant, m.c.status)
    ):
        counts = stats.setdefault(variant, dict.fromkeys(stats[next(iter(stats))], 0))
        counts["recipients"] += amount
        if message_status in SENT_STATUSES:
            counts["sent"] += amount
        if message_status in DELIVERED_STATUSES:
            counts["delivered"] += amount
    prefix = literal("junction:message:") + cast(r.c.message_id, String)
    for metric, name, pattern in (
        ("opened", "message.opened", prefix + literal(":opened")),
        ("clicked", "message.clicked", prefix + literal(":clicked:%")),
    ):
        matched = (
            events.c.contact_id == r.c.contact_id,
            events.c.name == name,
            events.c.message_id.like(pattern),
        )
        for variant, amount in conn.execute(
            select(r.c.variant, func.count(func.distinct(r.c.contact_id)))
            .select_from(r.join(events, and_(*matched)))
            .where(base, r.c.status == QUEUED)
            .group_by(r.c.variant)
        ):
            if variant in stats:
                stats[variant][metric] = amount
    if definition.goal is not None:
        converted = (
            events.c.contact_id == r.c.contact_id,
            events.c.name == definition.goal.event,
            events.c.timestamp >= r.c.due_at,
            events.c.timestamp <= r.c.convert_by,
        )
        for variant, state, amount in conn.execute(
            select(r.c.variant, r.c.status, func.count(func.distinct(r.c.contact_id)))
            .select_from(r.join(events, and_(*converted)))
            .where(base, r.c.status.in_([QUEUED, CONTROL]))
            .group_by(r.c.variant, r.c.status)
        ):
            if state == CONTROL:
                stats.setdefault(CONTROL, {"recipients": 0, "converted": 0})["converted"] = amount
            elif variant in stats:
                stats[variant]["converted"] = amount
    return stats


def status(conn: Connection, workspace_id: int, key: str, results: bool = True) -> dict[str, Any]:
    """The campaign, its definition, and its progress: audience, pending, queued, control,
    skipped, and (``results``) per variant what its messages achieved — which reads their
    messages and events, so a progress bar polling a large campaign leaves it out."""
    row = _find(conn, workspace_id, key)
    definition = parse(row.definition)
    by_status: dict[str, int] = dict(
        conn.execute(
            select(campaign_recipients.c.status, func.count())
            .where(campaign_recipients.c.campaign_id == row.id)
            .group_by(campaign_recipients.c.status)
        ).all()
    )
    held = conn.scalar(
        select(func.count())
        .select_from(campaign_recipients)
        .where(
            campaign_recipients.c.campaign_id == row.id,
            campaign_recipients.c.status == PENDING,
            campaign_recipients.c.variant.is_(None),
        )
    )
    stats = variant_stats(conn, row.id, definition) if results else {}
    control = stats.pop(CONTROL, {"converted": 0})
    return {
        "key": row.key,
        "name": row.name,
        "status": row.status,
        "scheduledAt": _iso(row.scheduled_at),
        "startedAt": _iso(row.started_at),
        "finishedAt": _iso(row.finished_at),
        "winner": row.winner,
        "progress": {
            "audience": row.audience_size or 0,
            "pending": by_status.get(PENDING, 0),
            "heldForWinner": held or 0,
            "queued": by_status.get(QUEUED, 0),
            "control": by_status.get(CONTROL, 0),
            "skipped": by_status.get(SKIPPED, 0),
        },
        "variants": stats,
        "controlGroup": {
            "recipients": by_status.get(CONTROL, 0),
            "converted": control["converted"],
        },
        "definition": row.definition,
    }


def list_campaigns(conn: Connection, workspace_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(campaigns).where(campaigns.c.workspace_id == workspace_id).order_by(campaigns.c.key)
    )
    return [
        {
            "key": row.key,
            "name": row.name,
            "status": row.status,
            "scheduledAt": _iso(row.scheduled_at),
            "startedAt": _iso(row.started_at),
            "finishedAt": _iso(row.finished_at),
            "audience": row.audience_size,
        }
        for row in rows
    ]


def recipients_of(conn: Connection, campaign_id: int) -> Iterable[Any]:
    """Every recipient row (tests and tools)."""
    return conn.execute(
        select(campaign_recipients)
        .where(campaign_recipients.c.campaign_id == campaign_id)
        .order_by(campaign_recipients.c.contact_id)
    ).all()
