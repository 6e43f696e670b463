"""Provider callbacks: ``POST /hooks/{workspace_id}/{provider}``.

Providers cannot send a Junction API key; each callback is instead checked by the
provider's adapter (its signature scheme, with the workspace's credentials). Give providers
the URL ``{JUNCTION_PUBLIC_URL}/hooks/{workspace_id}/{provider}``; signatures that cover the
URL (Twilio's) are checked against that public form.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from junction.api.deps import Services, ServicesDep
from junction.api.responses import JSONAnswer
from junction.channels import registry
from junction.channels.base import Adapter, CallingBack, Receiving, Subscribing
from junction.errors import NotFound
from junction.store.callbacks import apply_updates
from junction.store.inbound import record_inbound
from junction.store.providers import config_of
from junction.threads import in_thread

router = APIRouter(prefix="/hooks", tags=["provider callbacks"])


def _public_url(svc: Services, request: Request) -> str:
    base = svc.settings.public_url
    if not base:
        return str(request.url)
    query = f"?{request.url.query}" if request.url.query else ""
    return base.rstrip("/") + request.url.path + query


@router.get("/{workspace_id}/{provider}", response_class=PlainTextResponse)
async def provider_handshake(
    workspace_id: int, provider: str, request: Request, svc: ServicesDep
) -> PlainTextResponse:
    """A provider checking the callback URL before using it (Meta's hub.challenge)."""
    adapter = await _adapter(svc, workspace_id, provider)
    try:
        if not isinstance(adapter, Subscribing):
            raise NotFound(f"{provider!r} has no subscription handshake")
        return PlainTextResponse(adapter.verify_subscription(dict(request.query_params)))
    finally:
        await adapter.aclose()


async def _adapter(svc: Services, workspace_id: int, provider: str) -> Adapter:
    def load(svc: Services) -> dict[str, Any] | None:
        with svc.database.read() as conn:
            return config_of(conn, workspace_id, provider) or None

    config = await in_thread(load, svc)
    if config is None:
        raise NotFound(f"workspace {workspace_id} has no {provider!r} provider configured")
    return registry.build(provider, config)


@router.post("/{workspace_id}/{provider}", response_class=JSONAnswer)
async def provider_callback(
    workspace_id: int, provider: str, request: Request, svc: ServicesDep
) -> JSONAnswer:
    """A delivery report (status callback, bounce) or what a person sent (an inbound SMS,
    a chat message), as the provider posts it."""

    adapter = await _adapter(svc, workspace_id, provider)
    try:
        if not isinstance(adapter, CallingBack | Receiving):
            raise NotFound(f"{provider!r} does not call back")
        body = await request.body()
        headers, url = dict(request.headers), _public_url(svc, request)
        updates = (
            adapter.parse_webhook(headers, body, url) if isinstance(adapter, CallingBack) else []
        )
        inbound = (
            adapter.parse_inbound(headers, body, url) if isinstance(adapter, Receiving) else []
        )
    finally:
        await adapter.aclose()

    def write(svc: Services) -> int:
        with svc.database.write() as conn:
            record_inbound(conn, workspace_id, inbound, svc.clock.now())
            return apply_updates(conn, workspace_id, provider, updates, svc.clock.now())

    applied = await in_thread(write, svc)
    return JSONAnswer({"received": len(updates), "applied": applied, "inbound": len(inbound)})
