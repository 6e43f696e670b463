"""The dev inbox: every message the capture provider stood in for, as each person would have
received it, per channel. Open ``/dev/inbox`` and sign in with a workspace API key as the
username (HTTP Basic). Works without JavaScript; email HTML is shown in a sandboxed frame."""

from __future__ import annotations

from html import escape
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from junction.api.deps import Services, ServicesDep, WorkspaceDep
from junction.domain.sending import SENDABLE_CHANNELS
from junction.store import sends
from junction.threads import in_thread

router = APIRouter(prefix="/dev", include_in_schema=False)

STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:12px 20px}header a{color:#9cc3ff}
nav{padding:10px 20px;display:flex;gap:12px;flex-wrap:wrap}
nav a{padding:4px 10px;border-radius:14px;background:#e4e8ef;color:#1d2330;text-decoration:none}
nav a[aria-current]{background:#2f6fde;color:#fff}
main{padding:0 20px 20px;display:grid;gap:12px;max-width:960px}
.why{color:#555;font-size:.9em;margin:.25em 0}
article{background:#fff;border-radius:8px;padding:12px 16px;box-shadow:0 1px 2px #0002}
.meta{color:#5b6577;font-size:13px}.channel{font-weight:600;text-transform:uppercase;font-size:12px}
iframe{width:100%;height:260px;border:1px solid #dde2ea;border-radius:6px;background:#fff}
pre{white-space:pre-wrap;margin:6px 0}
"""


def _body(message: dict[str, Any]) -> str:
    content = message["content"]
    channel = message["channel"]
    parts: list[str] = []
    if channel == "email":
        parts.append(f"<h3 class=subject>{escape(content.get('subject', ''))}</h3>")
        if content.get("html"):
            frame = escape(content["html"])
            parts.append(f'<iframe sandbox="" title="email body" srcdoc="{frame}"></iframe>')
        if content.get("text"):
            parts.append(f"<pre>{escape(content['text'])}</pre>")
    elif channel == "webhook":
        parts.append(f"<pre>{escape(str(content.get('data')))}</pre>")
    else:
        if content.get("title"):
            parts.append(f"<h3>{escape(str(content['title']))}</h3>")
        text = content.get("text") or content.get("body") or ""
        parts.append(f"<pre>{escape(str(text))}</pre>")
    return "".join(parts)


def _why(message: dict[str, Any]) -> str:
    """Why this channel, or why nothing went: the latest reachability decision."""
    decisions = message.get("decisions") or []
    if not decisions:
        return ""
    return f"<p class=why>{escape(decisions[-1].get('reason', ''))}</p>"


def _when(iso: str | None) -> str:
    return f"{iso[:19].replace('T', ' ')} UTC" if iso else ""


def render(messages: list[dict[str, Any]], channel: str | None) -> str:
    links = [
        '<a href="/dev/inbox"' + (" aria-current=page" if channel is None else "") + ">all</a>"
    ]
    for name in SENDABLE_CHANNELS:
        current = " aria-current=page" if name == channel else ""
        links.append(f'<a href="/dev/inbox?channel={name}"{current}>{name}</a>')
    cards = [
        f"""<article data-channel="{escape(m["channel"])}">
<div class=meta><span class=channel>{escape(m["channel"])}</span> to
<strong class=to>{escape(m["to"])}</strong>{" (" + escape(m["userId"]) + ")" if m["userId"] else ""}
· {escape(m["status"])} · {escape(m["createdAt"] or "")}</div>{_why(m)}{_body(m)}</article>"""
        for m in messages
    ]
    empty = (
        "<p>Nothing captured yet. Messages sent while a channel has no provider appear here.</p>"
    )
    return f"""<!doctype html><html lang=en><head><meta charset=utf-8>
<meta name=viewport content="width=device-width,initial-scale=1">
<title>Junction dev inbox</title><style>{STYLE}</style></head><body>
<header><strong>Junction</strong> dev inbox — what each person would have received</header>
<nav>{"".join(links)}</nav><main>{"".join(cards) or empty}</main></body></html>"""


@router.get("/inbox", response_class=HTMLResponse)
async def dev_inbox(
    svc: ServicesDep,
    workspace_id: WorkspaceDep,
    channel: Annotated[str | None, Query()] = None,
) -> HTMLResponse:
    def read(svc: Services) -> list[dict[str, Any]]:
        with svc.database.read() as conn:
            return sends.captured(conn, workspace_id, channel)

    return HTMLResponse(render(await in_thread(read, svc), channel))
