"""One-click unsubscribe (RFC 8058): ``/u/{code}``, the ``List-Unsubscribe`` target of a
message.

Rules kept here:
- GET only asks (a page with one button): mail scanners and link previews fetch every URL in
  a message, and must not unsubscribe anyone;
- POST unsubscribes at once: the mailbox provider's ``List-Unsubscribe=One-Click`` body, or
  the page's own button. It opts the contact out of the message's topic on the message's
  channel, or of every marketing topic on that channel (topic ``*``) when the message's
  category is not a topic (transactional, or a topic since deleted);
- it is idempotent: a second POST writes nothing and answers the same page;
- no Origin check here: providers POST from their servers, webmail may POST from its own
  site; the signed code is the key, and the worst a replay can do is what was asked;
- a code that does not check, or names a message or contact that is gone, answers 404 and
  writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import Connection, select

from junction.api.deps import Services, ServicesDep
from junction.api.preferences import contact_locale
from junction.errors import NotFound
from junction.render.personalise import Links
from junction.store import preferences as store
from junction.store.lifecycle import Change, record_changes
from junction.store.tables import messages, topics
from junction.threads import in_thread
from junction.web import strings
from junction.web.preference_center import page, refusal
from junction.web.strings import text

router = APIRouter(include_in_schema=False)

PREFERENCE_LINK_DAYS = 30


@dataclass(frozen=True, slots=True)
class Target:
    """What a message's unsubscribe link opts its contact out of."""

    workspace_id: int
    contact_id: int
    message_id: int
    channel: str
    topic: str  # a topic key, or store.EVERY_TOPIC
    topic_name: str | None
    locale: str | None


def _links(svc: Services) -> Links:
    # Relative links: the page is served by Junction, whatever its public address.
    return Links(svc.secret.encode(), "")


def target_of(conn: Connection, message_id: int) -> Target:
    message = conn.execute(
        select(
            messages.c.workspace_id,
            messages.c.contact_id,
            messages.c.channel,
            messages.c.category,
        ).where(messages.c.id == message_id)
    ).first()
    if message is None or message.contact_id is None:
        raise NotFound("no such message")
    name = conn.execute(
        select(topics.c.name).where(
            topics.c.workspace_id == message.workspace_id, topics.c.key == message.category
        )
    ).scalar_one_or_none()
    return Target(
        workspace_id=message.workspace_id,
        contact_id=message.contact_id,
        message_id=message_id,
        channel=message.channel,
        topic=message.category if name is not None else store.EVERY_TOPIC,
        topic_name=name,
        locale=contact_locale(conn, message.workspace_id, message.contact_id),
    )


def _look(svc: Services, message_id: int) -> Target:
    with svc.database.read() as conn:
        return target_of(conn, message_id)


def _unsubscribe(svc: Services, message_id: int) -> Target:
    now = svc.clock.now()
    with svc.database.write() as conn:
        target = target_of(conn, message_id)
        stored = store.choices_of(conn, [target.contact_id]).get(target.contact_id, {})
        if stored.get((target.topic, target.channel)) is not False:
            choice = store.Choice(target.topic, target.channel, opted_in=False)
            store.set_choices(
                conn, target.workspace_id, target.contact_id, [choice], "unsubscribe", now
            )
            change = Change(
                target.workspace_id,
                target.contact_id,
                message_id,
                target.channel,
                "unsubscribed",
                now,
                properties={"topic": target.topic},
            )
            record_changes(conn, [change], now)
        return target


def _what(target: Target, lang: str, key: str) -> str:
    messages_word = strings.messages_on(lang, target.channel)
    if target.topic_name is None:
        return text(lang, f"{key}_all", messages=messages_word)
    return text(lang, key, topic=target.topic_name, messages=messages_word)


def _manage_link(svc: Services, target: Target, lang: str) -> str:
    expires = svc.clock.now() + timedelta(days=PREFERENCE_LINK_DAYS)
    url = _links(svc).preferences_url(
        target.workspace_id, target.contact_id, int(expires.timestamp())
    )
    return f'<p><a href="{escape(url)}">{text(lang, "unsubscribe.manage")}</a></p>'


def _read(svc: Services, code: str) -> int | None:
    found = _links(svc).read(code, purpose="unsubscribe")
    return None if found is None else found[0]


@router.get("/u/{code}")
async def confirm(code: str, request: Request, svc: ServicesDep) -> Response:
    """Ask first: this GET changes nothing."""
    browser_lang = request.headers.get("accept-language")
    message_id = _read(svc, code)
    try:
        if message_id is None:
            raise NotFound()
        target = await in_thread(_look, svc, message_id)
    except NotFound:
        return refusal(strings.language(None, browser_lang), "invalid", 404)
    lang = strings.language(target.locale, browser_lang)
    title = text(lang, "unsubscribe.title")
    body = (
        f"<h1>{title}</h1><p>{_what(target, lang, 'unsubscribe.ask')}</p>"
        '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
        f'<button type="submit">{text(lang, "unsubscribe.button")}</button></form>'
        + _manage_link(svc, target, lang)
    )
    return page(lang, title, body)


@router.post("/u/{code}")
async def unsubscribe(code: str, request: Request, svc: ServicesDep) -> Response:
    """RFC 8058: unsubscribe at once, whatever the body (the provider sends
    ``List-Unsubscribe=One-Click``; the confirmation page's button sends the same)."""
    browser_lang = request.headers.get("accept-language")
    message_id = _read(svc, code)
    try:
        if message_id is None:
            raise NotFound()
        target = await in_thread(_unsubscribe, svc, message_id)
    except NotFound:
        return refusal(strings.language(None, browser_lang), "invalid", 404)
    lang = strings.language(target.locale, browser_lang)
    title = text(lang, "unsubscribe.title")
    body = (
        f'<h1>{title}</h1><p class="notice" role="status">'
        f"{_what(target, lang, 'unsubscribe.done')}</p>" + _manage_link(svc, target, lang)
    )
    return page(lang, title, body)
