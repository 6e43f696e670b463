"""Campaigns over HTTP: save a draft, list, read with live progress, schedule, send now,
pause, resume, cancel. Bad definitions answer 422 naming each field; moves a campaign's
state does not allow answer 409."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field

from junction.api.deps import ServicesDep, WorkspaceDep, in_read, in_write
from junction.api.responses import JSONAnswer
from junction.domain.campaigns import CampaignDefinition
from junction.store import campaigns
from junction.threads import in_thread

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])


@router.get("/schema", response_class=JSONAnswer)
async def campaign_schema() -> JSONAnswer:
    """The JSON Schema of a campaign definition."""
    return JSONAnswer(CampaignDefinition.model_json_schema(by_alias=True))


@router.post("", response_class=JSONAnswer)
async def save_campaign(
    svc: ServicesDep,
    workspace_id: WorkspaceDep,
    definition: Annotated[dict[str, Any], Body(description="a campaign definition")],
) -> JSONAnswer:
    """201 for a new draft, 200 for a changed or unchanged one; 422 naming each problem,
    nothing saved; 409 when the campaign is no longer a draft."""
    saved = await in_thread(
        in_write, svc, campaigns.save, workspace_id, definition, svc.clock.now()
    )
    return JSONAnswer(saved, status_code=201 if saved["created"] else 200)


@router.get("", response_class=JSONAnswer)
async def list_campaigns(svc: ServicesDep, workspace_id: WorkspaceDep) -> JSONAnswer:
    return JSONAnswer(
        {"campaigns": await in_thread(in_read, svc, campaigns.list_campaigns, workspace_id)}
    )


@router.get("/{key}", response_class=JSONAnswer)
async def get_campaign(key: str, svc: ServicesDep, workspace_id: WorkspaceDep) -> JSONAnswer:
    """Its status, definition and progress: audience, pending, queued, control, skipped; per
    variant recipients, sent, delivered, opened, clicked, converted."""
    return JSONAnswer(await in_thread(in_read, svc, campaigns.status, workspace_id, key))


class ScheduleAt(BaseModel):
    model_config = ConfigDict(extra="forbid")
    at: datetime | None = Field(default=None, description="instead of the definition's time")


@router.post("/{key}/schedule", response_class=JSONAnswer)
async def schedule_campaign(
    key: str,
    svc: ServicesDep,
    workspace_id: WorkspaceDep,
    body: Annotated[ScheduleAt | None, Body()] = None,
) -> JSONAnswer:
    """Draft → scheduled; 422 for a time in the past or an empty audience."""
    at = body.at if body else None
    return JSONAnswer(
        await in_thread(in_write, svc, campaigns.schedule, workspace_id, key, svc.clock.now(), at)
    )


@router.post("/{key}/send", response_class=JSONAnswer)
async def send_campaign(key: str, svc: ServicesDep, workspace_id: WorkspaceDep) -> JSONAnswer:
    """Start sending now: the audience is frozen; 422 when it is empty."""
    return JSONAnswer(
        await in_thread(in_write, svc, campaigns.send, workspace_id, key, svc.clock.now())
    )


@router.post("/{key}/{action}", response_class=JSONAnswer)
async def move_campaign(
    key: str,
    action: Literal["pause", "resume", "cancel"],
    svc: ServicesDep,
    workspace_id: WorkspaceDep,
) -> JSONAnswer:
    """Pause, resume or cancel; 409 when the campaign's state does not allow it."""
    return JSONAnswer(
        await in_thread(in_write, svc, campaigns.move, workspace_id, key, action, svc.clock.now())
    )
