"""Accepting a send request: resolve the recipient, check the content, enqueue — with
Stripe's Idempotency-Key semantics (the same key and body replay the first answer; the same
key with another body is refused)."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, select

from junction.domain.addresses import InvalidAddress, normalize_email, normalize_phone
from junction.domain.sending import (
    CHANNEL_ADDRESS,
    DEVICE_CHANNELS,
    check_category,
    check_content,
)
from junction.domain.sessions import WINDOW_HOURS, check_session
from junction.errors import Conflict, FieldError, InvalidInput, NotFound
from junction.store import outbox, templates
from junction.store.identity import find_contact_id
from junction.store.providers import provider_for
from junction.store.sql import insert_ignoring_conflicts
from junction.store.tables import (
    addresses,
    api_requests,
    contacts,
    events,
    message_attempts,
    messages,
)


@dataclass(frozen=True, slots=True)
class SendRequest:
    channel: str
    to: dict[str, str]
    content: dict[str, Any] | None
    category: str = "transactional"
    template: str | None = None  # a template's key, instead of literal content
    template_version: int | None = None  # default: the current version
    locale: str | None = None  # default: the contact's
    data: dict[str, Any] | None = None  # {{ data.* }} in the template
    event: dict[str, Any] | None = None  # {{ event.* }}: what triggered it (journeys)
    # Reachability: "best of" candidates (decided when sent), caps and quiet-hours options.
    channels: tuple[str, ...] = ()
    ignore_caps: bool = False
    counts: bool = True
    quiet_hours: str = "defer"
    fallback_after_seconds: int | None = None

    def policy(self) -> dict[str, Any] | None:
        policy: dict[str, Any] = {}
        if self.channels:
            policy["channels"] = list(self.channels)
        if self.ignore_caps:
            policy["ignoreCaps"] = True
        if self.quiet_hours != "defer":
            policy["quietHours"] = self.quiet_hours
        if self.fallback_after_seconds:
            policy["fallbackAfterSeconds"] = self.fallback_after_seconds
        return policy or None

    def fingerprint(self) -> str:
        body = {
            "channel": self.channel,
            "to": self.to,
            "content": self.content,
            "category": self.category,
            "template": [
                self.template,
                self.template_version,
                self.locale,
                self.data,
                self.event,
            ],
            "policy": [self.policy(), self.counts],
        }
        return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True, slots=True)
class Answer:
    status_code: int
    body: dict[str, Any]
    replayed: bool = False


def _recipients(
    conn: Connection, workspace_id: int, request: SendRequest
) -> tuple[int | None, list[tuple[str, dict[str, Any]]]]:
    """(contact id, [(address, what the provider needs beside it)]) for the request's channel:
    one address, or every active device for push and web push."""
    to, channel = request.to, request.channel
    if channel == "webhook":
        url = to.get("url", "")
        if not url.startswith(("https://", "http://")):
            raise InvalidInput(FieldError("to.url", "a webhook needs the http(s) URL to call"))
        return None, [(url, {})]
    if "userId" in to:
        contact_id = find_contact_id(conn, workspace_id, to["userId"])
        if contact_id is None:
            raise InvalidInput(
                FieldError("to.userId", f"no contact {to['userId']!r} in this workspace")
            )
        kind = CHANNEL_ADDRESS[channel]
        if kind is None:  # in-app and content cards are pulled by the contact's app
            return contact_id, [(to["userId"], {})]
        rows = conn.execute(
            select(addresses.c.value, addresses.c.details)
            .where(
                addresses.c.contact_id == contact_id,
                addresses.c.kind == kind,
                addresses.c.status == "active",
            )
            .order_by(addresses.c.updated_at.desc(), addresses.c.id.desc())
        ).all()
        if not rows:
            raise InvalidInput(
                FieldError("to.userId", f"contact {to['userId']!r} has no active {kind} address")
            )
        if channel not in DEVICE_CHANNELS:
            rows = rows[:1]
        return contact_id, [(row.value, _beside(channel, row.details)) for row in rows]
    try:
        if channel == "email" and "email" in to:
            return None, [(normalize_email(to["email"]), {})]
        if channel in ("sms", "voice", "whatsapp") and "phone" in to:
            return None, [(normalize_phone(to["phone"]).e164, {})]
    except InvalidAddress as error:
        field = "to.email" if channel == "email" else "to.phone"
        raise InvalidInput(FieldError(field, str(error))) from None
    if channel == "telegram" and to.get("chatId"):
        return None, [(to["chatId"], {})]
    if channel == "messenger" and to.get("psid"):
        return None, [(to["psid"], {})]
    wanted = {
        "email": "userId or email",
        "sms": "userId or phone",
        "voice": "userId or phone",
        "telegram": "userId or chatId",
    }
    raise InvalidInput(
        FieldError("to", f"a {channel} message needs {wanted.get(channel, 'userId')}")
    )


def last_inbound(
    conn: Connection, workspace_id: int, contact_id: int | None, address: str, channel: str
) -> datetime | None:
    """When the person last wrote to us on ``channel`` (the session window's clock)."""
    if contact_id is None:  # a raw number: whoever has it
        contact_id = conn.execute(
            select(addresses.c.contact_id)
            .where(addresses.c.workspace_id == workspace_id, addresses.c.value == address)
            .limit(1)
        ).scalar_one_or_none()
        if contact_id is None:
            return None
    received = conn.execute(
        select(events.c.timestamp, events.c.properties)
        .where(events.c.contact_id == contact_id, events.c.name == "message.received")
        .order_by(events.c.timestamp.desc())
        .limit(200)
    )
    return next(
        (row.timestamp for row in received if row.properties.get("channel") == channel), None
    )


def _template_reference(
    conn: Connection,
    workspace_id: int,
    request: SendRequest,
    contact_id: int | None,
    any_of: Sequence[str] = (),
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what the message stores: the template's key, version and data; the shape of the
    channel's block, for the session-window check)."""
    assert request.template is not None
    try:
        version = request.template_version or templates.current_version(
            conn, workspace_id, request.template
        )
        compiled = templates.load(conn, workspace_id, request.template, version)
    except NotFound as error:
        raise InvalidInput(FieldError("template", error.message)) from None
    if compiled.definition.kind != "message":
        raise InvalidInput(
            FieldError("template", f"{request.template!r} is a landing page; SMS links to it")
        )
    locale = request.locale
    if locale is None and contact_id is not None:
        locale = conn.execute(
            select(contacts.c.locale).where(contacts.c.id == contact_id)
        ).scalar_one_or_none()
    wanted = list(any_of) or [request.channel]
    blocks = [compiled.definition.block(channel, locale)[1] for channel in wanted]
    block = next((b for b in blocks if b is not None), None)
    if block is None:
        offered = ", ".join(compiled.definition.channel_names())
        raise InvalidInput(
            FieldError(
                "channel",
                f"template {request.template!r} has no {' or '.join(wanted)} content "
                f"(it has: {offered})",
            )
        )
    content: dict[str, Any] = {"templateKey": request.template, "templateVersion": version}
    if request.data:
        content["data"] = request.data
    if request.event:
        content["event"] = request.event
    if request.locale:
        content["locale"] = request.locale
    return content, block.model_dump(by_alias=True, exclude_none=True)


def _beside(channel: str, details: dict[str, Any] | None) -> dict[str, Any]:
    """What a provider needs besides the address: a web-push subscription's keys."""
    if channel == "web_push" and details:
        return {"subscription_keys": details.get("keys", {})}
    return {}


def accept(
    conn: Connection,
    workspace_id: int,
    request: SendRequest,
    now: datetime,
    idempotency_key: str | None = None,
) -> Answer:
    fingerprint = request.fingerprint()
    if idempotency_key is not None:
        earlier = conn.execute(
            select(api_requests).where(
                api_requests.c.workspace_id == workspace_id,
                api_requests.c.idempotency_key == idempotency_key,
            )
        ).first()
        if earlier is not None:
            if earlier.request_hash != fingerprint:
                raise InvalidInput(
                    FieldError(
                        "Idempotency-Key",
                        "was already used with a different body; use a new key for a new message",
                    )
                )
            return Answer(earlier.status_code, dict(earlier.response), replayed=True)

    key = f"api:{idempotency_key}" if idempotency_key else f"api:{uuid.uuid4()}"
    ids, keys = queue(conn, workspace_id, request, key, now)
    body: dict[str, Any] = {"id": ids[key], "status": outbox.QUEUED}
    if request.channel in DEVICE_CHANNELS and not request.channels:
        body["ids"] = [ids[message_key] for message_key in keys]
    return _answered(conn, workspace_id, idempotency_key, fingerprint, body, now)


def queue(
    conn: Connection, workspace_id: int, request: SendRequest, key: str, now: datetime
) -> tuple[dict[str, int], list[str]]:
    """Check a send and put it in the outbox under ``key`` (a device channel's other
    messages get ``key:1``, ``key:2``…): (message id by key, the keys). What API sends and
    journey steps share; ``InvalidInput`` names what is wrong, and nothing is queued."""
    errors = check_category(request.category)
    if request.template is None:
        if request.content is None:
            errors.append(FieldError("content", "give the content, or a template's key"))
        else:
            errors += check_content(request.channel, request.content)
    elif request.content is not None:
        errors.append(FieldError("content", "give either content or a template, not both"))
    if request.channels:
        errors += _check_best_of(request)
    if errors:
        raise InvalidInput(errors)
    if request.channels:
        return _queue_best_of(conn, workspace_id, request, key, now), [key]
    contact_id, targets = _recipients(conn, workspace_id, request)
    content, shape = (
        (request.content, request.content)
        if request.content is not None
        else _template_reference(conn, workspace_id, request, contact_id)
    )
    if request.channel in WINDOW_HOURS:
        last = last_inbound(conn, workspace_id, contact_id, targets[0][0], request.channel)
        errors = check_session(request.channel, shape, last, now)
        if errors:
            raise InvalidInput(errors)
    provider = provider_for(conn, workspace_id, request.channel)
    # One message per device; the first keeps the request's key, so a single-address
    # channel's message key is exactly the Idempotency-Key.
    keys = [key] + [f"{key}:{index}" for index in range(1, len(targets))]
    ids = outbox.enqueue(
        conn,
        [
            outbox.Intent(
                workspace_id=workspace_id,
                idempotency_key=message_key,
                channel=request.channel,
                provider=provider,
                to_address=address,
                content={**content, **beside},
                contact_id=contact_id,
                category=request.category,
                policy=request.policy(),
                counts=request.counts,
            )
            for message_key, (address, beside) in zip(keys, targets, strict=True)
        ],
        now,
    )
    return ids, keys


def _answered(
    conn: Connection,
    workspace_id: int,
    idempotency_key: str | None,
    fingerprint: str,
    body: dict[str, Any],
    now: datetime,
) -> Answer:
    """The 202, kept for replay when the request had an Idempotency-Key."""
    answer = Answer(202, body)
    if idempotency_key is not None:
        insert_ignoring_conflicts(
            conn,
            api_requests,
            [
                {
                    "workspace_id": workspace_id,
                    "idempotency_key": idempotency_key,
                    "request_hash": fingerprint,
                    "status_code": answer.status_code,
                    "response": answer.body,
                    "created_at": now,
                }
            ],
            on=("workspace_id", "idempotency_key"),
        )
    return answer


def _check_best_of(request: SendRequest) -> list[FieldError]:
    errors = []
    if request.template is None:
        errors.append(
            FieldError(
                "template", "a send over several channels needs a template with a block per channel"
            )
        )
    if "userId" not in request.to:
        errors.append(FieldError("to.userId", "a send over several channels needs a contact"))
    unknown = [c for c in request.channels if c not in CHANNEL_ADDRESS or c == "webhook"]
    if unknown:
        errors.append(FieldError("channels", f"{unknown[0]!r} is not a channel Junction sends on"))
    return errors


def _queue_best_of(
    conn: Connection, workspace_id: int, request: SendRequest, key: str, now: datetime
) -> dict[str, int]:
    """One message; its channel and address are chosen when it is sent."""
    contact_id = find_contact_id(conn, workspace_id, request.to["userId"])
    if contact_id is None:
        raise InvalidInput(
            FieldError("to.userId", f"no contact {request.to['userId']!r} in this workspace")
        )
    first = request.channels[0]
    content, _ = _template_reference(
        conn,
        workspace_id,
        dataclasses.replace(request, channel=first, channels=()),
        contact_id,
        any_of=request.channels,
    )
    return outbox.enqueue(
        conn,
        [
            outbox.Intent(
                workspace_id=workspace_id,
                idempotency_key=key,
                channel=first,
                provider=provider_for(conn, workspace_id, first),
                to_address="",  # chosen with the channel
                content=content,
                contact_id=contact_id,
                category=request.category,
                policy=request.policy(),
                counts=request.counts,
            )
        ],
        now,
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "channel": row.channel,
        "provider": row.provider,
        "to": row.to_address,
        "category": row.category,
        "content": row.content,
        "status": row.status,
        "attempts": row.attempts,
        "providerMessageId": row.provider_message_id,
        "lastError": row.last_error,
        "details": row.details,
        "policy": row.policy,
        "countsTowardCaps": row.counts,
        "decisions": row.decisions or [],
        "dueAt": _iso(row.due_at),
        "createdAt": _iso(row.created_at),
        "updatedAt": _iso(row.updated_at),
    }


def get_message(conn: Connection, workspace_id: int, message_id: int) -> dict[str, Any]:
    row = conn.execute(
        select(messages).where(messages.c.id == message_id, messages.c.workspace_id == workspace_id)
    ).first()
    if row is None:
        raise NotFound(f"no message {message_id} in this workspace")
    history = conn.execute(
        select(message_attempts)
        .where(message_attempts.c.message_id == message_id)
        .order_by(message_attempts.c.number)
    )
    return {
        **_view(row),
        "history": [
            {
                "attempt": a.number,
                "outcome": a.outcome,
                "error": a.error,
                "startedAt": _iso(a.started_at),
                "finishedAt": _iso(a.finished_at),
                "retryAt": _iso(a.retry_after),
            }
            for a in history
        ],
    }


def list_messages(
    conn: Connection, workspace_id: int, user_id: str, limit: int = 50
) -> list[dict[str, Any]]:
    contact_id = find_contact_id(conn, workspace_id, user_id)
    if contact_id is None:
        raise NotFound(f"no contact with userId {user_id!r} in this workspace")
    rows = conn.execute(
        select(messages)
        .where(messages.c.contact_id == contact_id)
        .order_by(messages.c.created_at.desc(), messages.c.id.desc())
        .limit(limit)
    )
    return [_view(row) for row in rows]


def captured(
    conn: Connection, workspace_id: int, channel: str | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    """What the capture provider stood in for, and what went to in-app inboxes, newest first,
    with the contact each was for."""

    query = (
        select(messages, contacts.c.user_id)
        .outerjoin(contacts, contacts.c.id == messages.c.contact_id)
        .where(
            messages.c.workspace_id == workspace_id, messages.c.provider.in_(["capture", "inbox"])
        )
        .order_by(messages.c.id.desc())
        .limit(limit)
    )
    if channel is not None:
        query = query.where(messages.c.channel == channel)
    return [
        {
            **_view(row),
            "content": (row.details or {}).get("rendered", row.content),
            "userId": row.user_id,
        }
        for row in conn.execute(query)
    ]


def replay(conn: Connection, workspace_id: int, message_id: int, now: datetime) -> dict[str, Any]:
    """Queue a dead or failed message again (after fixing what made it fail)."""
    row = conn.execute(
        select(messages.c.status).where(
            messages.c.id == message_id, messages.c.workspace_id == workspace_id
        )
    ).first()
    if row is None:
        raise NotFound(f"no message {message_id} in this workspace")
    if row.status not in (outbox.DEAD, outbox.FAILED):
        raise Conflict(
            f"message {message_id} is {row.status}; only dead or failed messages can be replayed"
        )
    conn.execute(
        messages.update()
        .where(messages.c.id == message_id)
        .values(status=outbox.QUEUED, due_at=now, lease_until=None, updated_at=now)
    )
    return {"id": message_id, "status": outbox.QUEUED}
