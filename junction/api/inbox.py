"""The app's side of in-app messages and content cards: the inbox, a live stream of new
items (Server-Sent Events), and what the person did with each item.

The stream polls the database once a second for the contact's new items, so it works
whichever process delivered them (API, ``junction worker`` on another machine). It resumes
after a reconnect from the browser's ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Header, Query, Request
from sse_starlette.sse import EventSourceResponse

from junction.api.deps import Services, ServicesDep, WorkspaceDep, in_read
from junction.api.responses import JSONAnswer
from junction.store import inbox
from junction.threads import in_thread

router = APIRouter(prefix="/v1/contacts/{user_id}/inbox", tags=["in-app"])
POLL_SECONDS = 1.0


@router.get("", response_class=JSONAnswer)
async def get_inbox(
    user_id: str,
    svc: ServicesDep,
    workspace_id: WorkspaceDep,
    kind: Annotated[Literal["in_app", "content_card"] | None, Query()] = None,
) -> JSONAnswer:
    """The contact's current items (pinned first, then newest) and the unread count."""
    now = svc.clock.now()
    return JSONAnswer(
        await in_thread(in_read, svc, inbox.list_inbox, workspace_id, user_id, now, kind)
    )


@router.get("/stream")
async def stream_inbox(
    user_id: str,
    request: Request,
    svc: ServicesDep,
    workspace_id: WorkspaceDep,
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventSourceResponse:
    """New items as they arrive: one ``item`` event each, its id the item id."""
    after = (
        int(last_event_id)
        if last_event_id and last_event_id.isdigit()
        else await in_thread(in_read, svc, inbox.latest_id, workspace_id, user_id)
    )

    async def events() -> AsyncIterator[dict[str, str]]:
        nonlocal after
        while not await request.is_disconnected():
            fresh = await in_thread(
                in_read, svc, inbox.items_after, workspace_id, user_id, after, svc.clock.now()
            )
            for item in fresh:
                after = item["id"]
                yield {"event": "item", "id": str(item["id"]), "data": orjson.dumps(item).decode()}
            await asyncio.sleep(POLL_SECONDS)

    return EventSourceResponse(events(), ping=15)


@router.post("/{item_id}/{action}", response_class=JSONAnswer)
async def act_on_item(
    user_id: str,
    item_id: int,
    action: Literal["read", "clicked", "dismissed"],
    svc: ServicesDep,
    workspace_id: WorkspaceDep,
) -> JSONAnswer:
    """Report that the person read, clicked or dismissed an item (recorded once)."""

    def write(svc: Services) -> bool:
        with svc.database.write() as conn:
            return inbox.mark(conn, workspace_id, user_id, item_id, action, svc.clock.now())

    return JSONAnswer({"recorded": await in_thread(write, svc)})
