"""Where tracked links and open pixels lead: public routes, no key (the code is signed).

``GET /l/{code}`` records the click and redirects to the link's target, or shows the landing
page an SMS linked to; ``GET /o/{code}.gif`` records the open and answers a 1x1 GIF. A code
that does not check answers 404 and records nothing.
"""

from __future__ import annotations

import base64
import html
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from junction.api.deps import Services, ServicesDep
from junction.render.liquid import RenderFailed
from junction.render.personalise import LANDING, Links
from junction.store import engagement, templates
from junction.threads import in_thread

router = APIRouter(include_in_schema=False)

_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_NO_STORE = {"Cache-Control": "no-store, private"}
# Landing pages are Junction's origin: no script runs on them, whatever a template holds.
_PAGE_HEADERS = {
    **_NO_STORE,
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "img-src https: data:; form-action https:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
_SHELL = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>body{{font-family:system-ui,-apple-system,sans-serif;margin:0 auto;max-width:40rem;
padding:1rem 1.25rem;line-height:1.5;color:#1b1b1b;overflow-wrap:anywhere}}
img{{max-width:100%;height:auto}}
a.button,button{{display:inline-block;padding:.75rem 1.25rem;border-radius:.5rem;
background:#1f4fd1;color:#fff;text-decoration:none}}</style>
</head><body>
{body}
</body></html>
"""


def _links(svc: Services) -> Links:
    return Links(svc.secret.encode(), "")


def _not_found() -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><title>Link not found</title><p>This link is not valid.</p>",
        status_code=404,
        headers=_NO_STORE,
    )


def _follow(svc: Services, message_id: int, index: int) -> tuple[str, Any] | None:
    """Record the click; ('redirect', url) or ('page', {title, html, lang})."""
    with svc.database.write() as conn:
        message = engagement.find(conn, message_id)
        if message is None or index >= len(message.links):
            return None
        target = message.links[index]
        engagement.clicked(conn, message, index, target, svc.clock.now())
        if not target.startswith(LANDING):
            return "redirect", target
        key = target.removeprefix(LANDING)
        page = templates.landing_page(
            conn, message.workspace_id, key, message.contact_id, message.content
        )
        lang = templates.contact_of(conn, message.workspace_id, message.contact_id).get("locale")
        return "page", {**page, "lang": lang or "en"}


@router.get("/l/{code}")
async def follow_link(code: str, svc: ServicesDep) -> Response:
    found = _links(svc).read(code)
    if found is None:
        return _not_found()
    try:
        followed = await in_thread(_follow, svc, *found)
    except RenderFailed:
        followed = None
    if followed is None:
        return _not_found()
    kind, value = followed
    if kind == "redirect":
        return RedirectResponse(value, status_code=302, headers=_NO_STORE)
    body = _SHELL.format(
        lang=html.escape(value["lang"]), title=html.escape(value["title"]), body=value["html"]
    )
    return HTMLResponse(body, headers=_PAGE_HEADERS)


def _open(svc: Services, message_id: int) -> None:
    with svc.database.write() as conn:
        message = engagement.find(conn, message_id)
        if message is not None:
            engagement.opened(conn, message, svc.clock.now())


@router.get("/o/{code}.gif")
async def open_pixel(code: str, request: Request, svc: ServicesDep) -> Response:
    found = _links(svc).read(code, purpose="open")
    if found is None:
        return Response(status_code=404)
    await in_thread(_open, svc, found[0])
    return Response(_GIF, media_type="image/gif", headers=_NO_STORE)
