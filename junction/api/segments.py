"""Segments over HTTP: save (evaluated at once), list, read, page through members,
evaluate again now, archive."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from junction.api.deps import ServicesDep, WorkspaceDep, in_read, in_write
from junction.api.responses import JSONAnswer
from junction.domain.segments import SegmentDefinition
from junction.store import segments
from junction.threads import in_thread

router = APIRouter(prefix="/v1/segments", tags=["segments"])


@router.get("/schema", response_class=JSONAnswer)
async def segment_schema() -> JSONAnswer:
    """The JSON Schema of a segment definition."""
    return JSONAnswer(SegmentDefinition.json_schema())


@router.post("", response_class=JSONAnswer)
async def save_segment(
    svc: ServicesDep,
    workspace_id: WorkspaceDep,
    definition: Annotated[dict[str, Any], Body(description="a segment definition")],
) -> JSONAnswer:
    """Save and evaluate: 201 with the member count when the definition is new or changed,
    200 when nothing changed, 422 naming each problem; nothing is saved unless all is valid."""
    saved = await in_thread(in_write, svc, segments.save, workspace_id, definition, svc.clock.now())
    return JSONAnswer(saved, status_code=201 if saved["created"] else 200)


@router.post("/preview", response_class=JSONAnswer)
async def preview_segment(
    svc: ServicesDep,
    workspace_id: WorkspaceDep,
    definition: Annotated[dict[str, Any], Body(description="a segment definition")],
) -> JSONAnswer:
    """How many people a definition would hold now, and a few of their userIds, decided
    from the stored events; nothing is saved. 422 names each problem."""
    found = await in_thread(
        in_read, svc, segments.preview, workspace_id, definition, svc.clock.now()
    )
    return JSONAnswer({"members": found["members"], "sample": found["sample"]})


@router.get("", response_class=JSONAnswer)
async def list_segments(svc: ServicesDep, workspace_id: WorkspaceDep) -> JSONAnswer:
    return JSONAnswer(
        {"segments": await in_thread(in_read, svc, segments.list_segments, workspace_id)}
    )


@router.get("/{key}", response_class=JSONAnswer)
async def get_segment(key: str, svc: ServicesDep, workspace_id: WorkspaceDep) -> JSONAnswer:
    return JSONAnswer(await in_thread(in_read, svc, segments.get, workspace_id, key))


@router.get("/{key}/members", response_class=JSONAnswer)
async def segment_members(
    key: str,
    svc: ServicesDep,
    workspace_id: WorkspaceDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[int, Query(ge=0, description="the `next` of the previous page")] = 0,
) -> JSONAnswer:
    """The people in the segment now, in pages."""
    return JSONAnswer(
        await in_thread(in_read, svc, segments.members, workspace_id, key, limit, after)
    )


@router.post("/{key}/evaluate", response_class=JSONAnswer)
async def evaluate_segment(key: str, svc: ServicesDep, workspace_id: WorkspaceDep) -> JSONAnswer:
    """Evaluate the whole segment again now (it is kept current as events arrive; this is
    for after a bulk import that bypassed the event stream)."""
    return JSONAnswer(
        await in_thread(in_write, svc, segments.reevaluate, workspace_id, key, svc.clock.now())
    )


@router.post("/{key}/archive", response_class=JSONAnswer)
async def archive_segment(key: str, svc: ServicesDep, workspace_id: WorkspaceDep) -> JSONAnswer:
    return JSONAnswer(
        await in_thread(in_write, svc, segments.archive, workspace_id, key, svc.clock.now())
    )
