"""Journeys over HTTP: save (a new version when changed), list, read with per-step counts,
activate, pause, resume, archive, and enter a person by API call."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field

from junction.api.deps import Services, ServicesDep, WorkspaceDep, in_read, in_write
from junction.api.responses import JSONAnswer
from junction.domain.journeys import JourneyDefinition
from junction.errors import FieldError, InvalidInput
from junction.store import journey_runs, journeys
from junction.store.identity import find_contact_id
from junction.threads import in_thread

router = APIRouter(prefix="/v1/journeys", tags=["journeys"])


@router.get("/schema", response_class=JSONAnswer)
async def journey_schema() -> JSONAnswer:
    """The JSON Schema of a journey definition."""
    return JSONAnswer(JourneyDefinition.model_json_schema(by_alias=True))


@router.post("", response_class=JSONAnswer)
async def save_journey(
    svc: ServicesDep,
    workspace_id: WorkspaceDep,
    definition: Annotated[dict[str, Any], Body(description="a journey definition")],
) -> JSONAnswer:
    """201 with the new version, 200 when nothing changed, 422 naming each problem (and the
    step it is in); nothing is saved unless everything is valid. New journeys are drafts."""
    saved = await in_thread(in_write, svc, journeys.save, workspace_id, definition, svc.clock.now())
    return JSONAnswer(saved, status_code=201 if saved["created"] else 200)


@router.get("", response_class=JSONAnswer)
async def list_journeys(svc: ServicesDep, workspace_id: WorkspaceDep) -> JSONAnswer:
    return JSONAnswer(
        {"journeys": await in_thread(in_read, svc, journeys.list_journeys, workspace_id)}
    )


@router.get("/{key}", response_class=JSONAnswer)
async def get_journey(key: str, svc: ServicesDep, workspace_id: WorkspaceDep) -> JSONAnswer:
    """The journey, its current definition, its runs by status, and per step: entered,
    waiting, sent, failed, converted, exited."""
    return JSONAnswer(await in_thread(in_read, svc, journeys.get, workspace_id, key))


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    user_id: str = Field(alias="userId", min_length=1, max_length=255)
    context: dict[str, Any] = Field(default_factory=dict, description="{{ data.* }} in its sends")


@router.post("/{key}/entries", status_code=202, response_class=JSONAnswer)
async def enter(key: str, entry: Entry, svc: ServicesDep, workspace_id: WorkspaceDep) -> JSONAnswer:
    """Enter a person now. 202 with the run's id; 200 with ``entered: false`` when the
    journey's entry rules keep them out; 409 when the journey is not active."""

    def write(svc: Services) -> int | None:
        with svc.database.write() as conn:
            contact_id = find_contact_id(conn, workspace_id, entry.user_id)
            if contact_id is None:
                raise InvalidInput(
                    FieldError("userId", f"no contact {entry.user_id!r} in this workspace")
                )
            return journey_runs.enter_by_api(
                conn, workspace_id, key, contact_id, entry.context, svc.clock.now()
            )

    run_id = await in_thread(write, svc)
    if run_id is None:
        return JSONAnswer(
            {"entered": False, "reason": "the journey's entry rules keep this person out"},
            status_code=200,
        )
    return JSONAnswer({"entered": True, "runId": run_id}, status_code=202)


@router.post("/{key}/{action}", response_class=JSONAnswer)
async def move_journey(
    key: str,
    action: Literal["activate", "pause", "resume", "archive"],
    svc: ServicesDep,
    workspace_id: WorkspaceDep,
) -> JSONAnswer:
    """Change a journey's status; 409 when its status does not allow it."""
    return JSONAnswer(
        await in_thread(in_write, svc, journeys.move, workspace_id, key, action, svc.clock.now())
    )
