"""The hosted preference center: ``/p/{token}``, where a person chooses topics by channels.

Rules kept here:
- the signed, expiring token in the URL is the only key (``Links.preferences_token``); a
  token that does not check, has expired or names a contact that is gone shows an "invalid
  or expired link" page and nothing is written;
- the page runs no JavaScript: one plain form, posted back to the same URL; the answer
  redirects to ``?saved=1`` (post/redirect/get), so reloading never posts again;
- a post saves exactly what the form said, and only about what the page showed (the hidden
  ``shown`` fields): a ticked box is opted in, an unticked one opted out; a ticked "all
  marketing" box opts the channel out of every topic (topic ``*``);
- a browser that says the post comes from another site (``Sec-Fetch-Site: cross-site`` or
  ``same-site``, or an ``Origin`` that is not this server) is refused with 403.
"""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from junction.api.deps import Services, ServicesDep
from junction.api.preferences import contact_locale, in_channel_order, preference_view
from junction.errors import NotFound
from junction.render.personalise import Links
from junction.store import preferences as store
from junction.threads import in_thread
from junction.web import strings
from junction.web.strings import text

router = APIRouter(include_in_schema=False)

MAX_FORM_BYTES = 64 * 1024


def page(lang: str, title: str, body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(
        strings.shell(lang, title, body), status_code=status_code, headers=strings.PAGE_HEADERS
    )


def refusal(lang: str, kind: str, status_code: int) -> HTMLResponse:
    """The page for an invalid or expired link (``invalid``) or a cross-site post."""
    title = text(lang, f"{kind}.title")
    return page(lang, title, f"<h1>{title}</h1><p>{text(lang, f'{kind}.body')}</p>", status_code)


def _links(svc: Services) -> Links:
    return Links(svc.secret.encode(), "")


def _holder(svc: Services, token: str) -> tuple[int, int] | None:
    return _links(svc).read_preferences_token(token, int(svc.clock.now().timestamp()))


def global_channels(view: dict[str, Any]) -> list[str]:
    """The channels offered an "all marketing" opt-out: every channel a topic shows on, and
    any already opted out."""
    found = set(view["optedOut"])
    for topic in view["topics"]:
        found.update(topic["channels"])
    return in_channel_order(found)


def render(view: dict[str, Any], lang: str, saved: bool) -> str:
    title = text(lang, "center.title")
    parts = [f"<h1>{title}</h1>"]
    if saved:
        parts.append(f'<p class="notice" role="status">{text(lang, "center.saved")}</p>')
    parts.append(f"<p>{text(lang, 'center.intro')}</p>")
    shown = [t for t in view["topics"] if t["channels"]]
    channels = global_channels(view)
    if not shown and not channels:
        parts.append(f"<p>{text(lang, 'center.none')}</p>")
        return "".join(parts)
    parts.append('<form method="post">')
    for topic in shown:
        key = escape(topic["key"])
        parts.append(f'<fieldset class="topic" data-topic="{key}"><legend>')
        parts.append(f"{escape(topic['name'])}</legend>")
        if topic["description"]:
            parts.append(f'<p class="description">{escape(topic["description"])}</p>')
        for channel, opted_in in topic["channels"].items():
            pair = f"{key}:{escape(channel)}"
            checked = " checked" if opted_in else ""
            parts.append(
                f'<input type="hidden" name="shown" value="{pair}">'
                f'<label><input type="checkbox" name="in" value="{pair}"{checked}>'
                f"{escape(strings.channel_name(lang, channel))}</label>"
            )
        parts.append("</fieldset>")
    if channels:
        parts.append(f'<fieldset class="global"><legend>{text(lang, "center.global")}</legend>')
        for channel in channels:
            checked = " checked" if channel in view["optedOut"] else ""
            label = text(lang, "center.global_on", channel=strings.channel_name(lang, channel))
            parts.append(
                f'<input type="hidden" name="shown" value="*:{escape(channel)}">'
                f'<label><input type="checkbox" name="stop" value="{escape(channel)}"{checked}>'
                f"{label}</label>"
            )
        parts.append("</fieldset>")
    parts.append(f'<button type="submit">{text(lang, "center.save")}</button></form>')
    return "".join(parts)


def _show(svc: Services, workspace_id: int, contact_id: int) -> tuple[dict[str, Any], str | None]:
    with svc.database.read() as conn:
        locale = contact_locale(conn, workspace_id, contact_id)
        return preference_view(conn, workspace_id, contact_id), locale


def choices_from(view: dict[str, Any], form: list[tuple[str, str]]) -> list[store.Choice]:
    """What the form says about what the page showed (and still would): anything else in it
    is ignored."""
    showable = {(t["key"], c) for t in view["topics"] for c in t["channels"]}
    showable |= {(store.EVERY_TOPIC, c) for c in global_channels(view)}
    ticked = {value for name, value in form if name == "in"}
    stopped = {value for name, value in form if name == "stop"}
    choices: dict[tuple[str, str], store.Choice] = {}
    for name, value in form:
        topic, _, channel = value.partition(":")
        if name != "shown" or (topic, channel) not in showable:
            continue
        if topic == store.EVERY_TOPIC:
            choices[(topic, channel)] = store.Choice(topic, channel, channel not in stopped)
        else:
            choices[(topic, channel)] = store.Choice(topic, channel, value in ticked)
    return list(choices.values())


def _save(svc: Services, workspace_id: int, contact_id: int, form: list[tuple[str, str]]) -> None:
    with svc.database.write() as conn:
        contact_locale(conn, workspace_id, contact_id)  # NotFound when the contact is gone
        choices = choices_from(preference_view(conn, workspace_id, contact_id), form)
        store.set_choices(
            conn, workspace_id, contact_id, choices, "preference_center", svc.clock.now()
        )


def cross_site(request: Request, public_url: str | None) -> bool:
    """Whether the browser says this request comes from another site. Clients that send
    neither header (not browsers) are let through: the secret token is their key."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return True
    origin = request.headers.get("origin")
    if origin is None or origin == "null":  # "null" tells nothing; Sec-Fetch-Site decides
        return False
    ours = {request.headers.get("host", "")}
    if public_url:
        ours.add(urlsplit(public_url).netloc)
    return urlsplit(origin).netloc not in ours


@router.get("/p/{token}")
async def show_center(token: str, request: Request, svc: ServicesDep) -> Response:
    browser_lang = request.headers.get("accept-language")
    holder = _holder(svc, token)
    if holder is None:
        return refusal(strings.language(None, browser_lang), "invalid", 404)
    try:
        view, locale = await in_thread(_show, svc, *holder)
    except NotFound:
        return refusal(strings.language(None, browser_lang), "invalid", 404)
    lang = strings.language(locale, browser_lang)
    saved = request.query_params.get("saved") == "1"
    return page(lang, text(lang, "center.title"), render(view, lang, saved))


@router.post("/p/{token}")
async def save_center(token: str, request: Request, svc: ServicesDep) -> Response:
    browser_lang = request.headers.get("accept-language")
    holder = _holder(svc, token)
    if holder is None:
        return refusal(strings.language(None, browser_lang), "invalid", 404)
    if cross_site(request, svc.settings.public_url):
        return refusal(strings.language(None, browser_lang), "cross_site", 403)
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return Response(status_code=413)
    form = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    try:
        await in_thread(_save, svc, *holder, form)
    except NotFound:
        return refusal(strings.language(None, browser_lang), "invalid", 404)
    # Relative: back to this very page, whatever prefix a proxy serves it under.
    return RedirectResponse("?saved=1", status_code=303, headers={"Cache-Control": "no-store"})
