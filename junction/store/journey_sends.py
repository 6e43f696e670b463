"""A batch of journey sends, queued together: one address lookup for every recipient, each
template and provider looked up once, one ``outbox.enqueue`` for all.

Rules kept here (the same as the single-send path, ``junction.store.sends.queue``):
- a send's message key is its intent's key; on a device channel (push) every active device
  gets a message, the first keeping the key and the others ``key:1``, ``key:2``…;
- an address is the contact's latest active one of the channel's kind;
- a send the batch cannot decide alone — a channel outside the simple ones, a best-of, an
  inline content, a template whose default locale lacks the channel — goes through the
  single-send path, in a savepoint: refused, it writes nothing;
- a send that cannot be made (no address, no such template) is ``failed``, the others
  ``sent``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import structlog
from sqlalchemy import Connection

from junction.domain.journeys import SendIntent
from junction.domain.sending import DEVICE_CHANNELS, check_category
from junction.errors import InvalidInput, NotFound
from junction.store import outbox, sends, templates
from junction.store.providers import provider_for
from junction.store.raw import Raw

log = structlog.get_logger(__name__)
# Channels whose template sends are queued for a whole batch at once, and the address kind
# each reaches. Others (chat windows, web push keys, "best of") take the single-send path.
BATCHED_CHANNELS = {"email": "email", "sms": "phone", "voice": "phone", "push": "push"}


@dataclass(slots=True)  # not frozen: a batch builds thousands, and changes none
class PendingSend:
    workspace_id: int
    contact_id: int
    intent: SendIntent
    event: dict[str, Any] | None


def simple(intent: SendIntent) -> bool:
    """Whether the send can be queued with the batch's others."""
    if intent.channel not in BATCHED_CHANNELS or intent.template is None or intent.channels:
        return False
    return _valid_category(intent.category)


@lru_cache(maxsize=1024)  # a journey's steps use a few categories: each checked once
def _valid_category(category: str) -> bool:
    return check_category(category) == []


def queue_together(
    conn: Connection,
    raw: Raw,
    pending: Sequence[PendingSend],
    single: Callable[[int], str],
    now: datetime,
) -> list[str]:
    """Queue the simple sends of a batch; ``sent`` or ``failed`` for each, in order.
    ``single(i)`` queues the i-th alone, when the batch cannot decide it (see the rules)."""
    kinds = {BATCHED_CHANNELS[str(p.intent.channel)] for p in pending}
    found = _addresses(raw, sorted({p.contact_id for p in pending}), sorted(kinds))
    plans: dict[tuple[int, str, str], _Plan | None] = {}
    intents: list[outbox.Intent] = []
    outcomes: list[str] = []
    for position, item in enumerate(pending):
        intent = item.intent
        channel = str(intent.channel)
        targets = found.get((item.contact_id, BATCHED_CHANNELS[channel]))
        plan_key = (item.workspace_id, str(intent.template), channel)
        if plan_key not in plans:
            plans[plan_key] = _plan(conn, *plan_key)
        plan = plans[plan_key]
        if not targets or plan is None:
            outcomes.append("failed")
            continue
        if plan.provider is None:  # only some locales have the channel: check fully
            outcomes.append(single(position))
            continue
        content: dict[str, Any] = {"templateKey": intent.template, "templateVersion": plan.version}
        if intent.data:
            content["data"] = intent.data
        if item.event:
            content["event"] = item.event
        if channel not in DEVICE_CHANNELS:
            targets = targets[:1]
        for index, address in enumerate(targets):
            intents.append(
                outbox.Intent(
                    workspace_id=item.workspace_id,
                    idempotency_key=f"{intent.key}:{index}" if index else intent.key,
                    channel=channel,
                    provider=plan.provider,
                    to_address=address,
                    content=content,
                    contact_id=item.contact_id,
                    category=intent.category,
                )
            )
        outcomes.append("sent")
    outbox.enqueue(conn, intents, now)
    return outcomes


def _addresses(
    raw: Raw, contact_ids: list[int], kinds: list[str]
) -> dict[tuple[int, str], list[str]]:
    """Each contact's active addresses of each kind, latest first."""
    found: dict[tuple[int, str], list[str]] = {}
    marks = ", ".join("?" * len(kinds))
    rows = raw.rows_in(
        "SELECT contact_id, kind, value FROM addresses "
        f"WHERE status = 'active' AND kind IN ({marks}) AND contact_id IN ({{}}) "
        "ORDER BY updated_at DESC, id DESC",
        contact_ids,
        before=kinds,
    )
    for contact_id, kind, value in rows:
        found.setdefault((contact_id, kind), []).append(value)
    return found


@dataclass(frozen=True, slots=True)
class _Plan:
    """How a batch sends one template on one channel: the template's version and the
    provider, or no provider when only the single-send path can tell."""

    version: int
    provider: str | None


def _plan(conn: Connection, workspace_id: int, template: str, channel: str) -> _Plan | None:
    """None when there is no such template to send."""
    try:
        version = templates.current_version(conn, workspace_id, template)
        compiled = templates.load(conn, workspace_id, template, version)
    except NotFound:
        return None
    if compiled.block(channel, None) is None:
        return _Plan(compiled.version, None)
    return _Plan(compiled.version, provider_for(conn, workspace_id, channel))


def send_alone(
    conn: Connection,
    workspace_id: int,
    run_id: int,
    user_id: str | None,
    intent: SendIntent,
    event: dict[str, Any] | None,
    now: datetime,
) -> str:
    """Queue one send through the API's single-send path, in a savepoint: ``sent``, or
    ``failed`` when it is refused (it then writes nothing)."""
    if user_id is None:
        return "failed"  # an anonymous contact has no one to send to yet
    request = sends.SendRequest(
        channel=intent.channel or (intent.channels or ("email",))[0],
        to={"userId": user_id},
        content=intent.content,
        template=intent.template,
        data=intent.data or None,
        event=event,
        category=intent.category,
        channels=tuple(intent.channels or ()),
    )
    try:
        with conn.begin_nested():  # a refused send writes nothing, and the run goes on
            sends.queue(conn, workspace_id, request, intent.key, now)
    except InvalidInput as error:
        log.info("journey send not made", run=run_id, step=intent.step, reason=error.message)
        return "failed"
    return "sent"
