"""Which provider carries each channel of the workspace, and its credentials.

Configurations are validated by the provider's own schema; secret fields are never shown in
clear. A channel with no provider goes to the capture provider (nothing leaves Junction).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict

from junction.api.deps import Services, ServicesDep, WorkspaceDep
from junction.api.responses import JSONAnswer
from junction.channels import registry
from junction.channels.base import Channel
from junction.errors import FieldError, InvalidInput
from junction.store import providers
from junction.threads import in_thread

router = APIRouter(prefix="/v1/channels", tags=["channels"])


class ProviderChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    provider: str
    config: dict[str, Any] = {}


def _view(channel: str, provider: str, config: dict[str, Any]) -> dict[str, Any]:
    return {"channel": channel, "provider": provider, "config": registry.masked(provider, config)}


@router.get("", response_class=JSONAnswer)
async def list_channels(svc: ServicesDep, workspace_id: WorkspaceDep) -> JSONAnswer:
    def read(svc: Services) -> list[tuple[str, str, dict[str, Any]]]:
        with svc.database.read() as conn:
            return providers.channel_providers(conn, workspace_id)

    return JSONAnswer({"channels": [_view(*row) for row in await in_thread(read, svc)]})


@router.put("/{channel}", response_class=JSONAnswer)
async def set_channel(
    channel: Channel, choice: ProviderChoice, svc: ServicesDep, workspace_id: WorkspaceDep
) -> JSONAnswer:
    """Send this channel through ``provider``, configured with ``config``."""
    cls = registry.adapter_class(choice.provider)
    if channel not in cls.channels:
        carried = ", ".join(sorted(c.value for c in cls.channels))
        raise InvalidInput(
            FieldError(
                "provider", f"{choice.provider} does not carry {channel}; it carries {carried}"
            )
        )

    def stored(svc: Services) -> dict[str, Any]:
        with svc.database.read() as conn:
            return providers.config_of(conn, workspace_id, choice.provider)

    given = registry.unmasked(choice.provider, choice.config, await in_thread(stored, svc))
    parsed = registry.validate_config(choice.provider, given)
    config = parsed.model_dump(mode="json", exclude_unset=True)  # what was given, normalised

    def write(svc: Services) -> None:
        with svc.database.write() as conn:
            providers.set_channel_provider(
                conn, workspace_id, channel.value, choice.provider, config, svc.clock.now()
            )

    await in_thread(write, svc)
    return JSONAnswer(_view(channel.value, choice.provider, config))


@router.delete("/{channel}", status_code=204)
async def reset_channel(channel: Channel, svc: ServicesDep, workspace_id: WorkspaceDep) -> Response:
    """Back to the capture provider."""

    def write(svc: Services) -> None:
        with svc.database.write() as conn:
            providers.remove_channel_provider(conn, workspace_id, channel.value)

    await in_thread(write, svc)
    return Response(status_code=204)
