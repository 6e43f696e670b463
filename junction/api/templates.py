"""Templates: save (a new version when changed), read, list, archive, preview; workspace
constants; the published JSON Schema."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, ConfigDict, Field

from junction.api.deps import ServicesDep, WorkspaceDep, in_read, in_write
from junction.api.responses import JSONAnswer
from junction.domain.templates import TemplateDefinition
from junction.engine.personalising import links_from
from junction.store import templates as store
from junction.threads import in_thread

router = APIRouter(tags=["templates"])


@router.get("/v1/templates/schema", response_class=JSONAnswer)
async def template_schema() -> JSONAnswer:
    """The JSON Schema of a template definition (what `junction apply` and POST take)."""
    return JSONAnswer(TemplateDefinition.model_json_schema(by_alias=True))


@router.post("/v1/templates", response_class=JSONAnswer)
async def save_template(
    svc: ServicesDep,
    workspace_id: WorkspaceDep,
    definition: Annotated[dict[str, Any], Body(description="a template definition")],
) -> JSONAnswer:
    """Save a template: 201 with its new version, or 200 when nothing changed. Every problem
    (shape, Liquid syntax with line and column, content that cannot fit its channel) is a 422
    naming the field, and nothing is saved."""
    saved = await in_thread(in_write, svc, store.save, workspace_id, definition, svc.clock.now())
    return JSONAnswer(saved, status_code=201 if saved["created"] else 200)


@router.get("/v1/templates", response_class=JSONAnswer)
async def list_templates(svc: ServicesDep, workspace_id: WorkspaceDep) -> JSONAnswer:
    return JSONAnswer(
        {"templates": await in_thread(in_read, svc, store.list_templates, workspace_id)}
    )


@router.get("/v1/templates/{key}", response_class=JSONAnswer)
async def get_template(
    key: str,
    svc: ServicesDep,
    workspace_id: WorkspaceDep,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> JSONAnswer:
    """A template's definition (the current version, or the one asked for) and its versions."""
    return JSONAnswer(await in_thread(in_read, svc, store.get, workspace_id, key, version))


@router.delete("/v1/templates/{key}", response_class=JSONAnswer)
async def archive_template(key: str, svc: ServicesDep, workspace_id: WorkspaceDep) -> JSONAnswer:
    """Archive: new sends refuse it; messages already queued still render their version."""
    return JSONAnswer(
        await in_thread(in_write, svc, store.archive, workspace_id, key, svc.clock.now())
    )


class Preview(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    version: int | None = Field(default=None, ge=1)
    user_id: str | None = Field(default=None, alias="userId", description="a stored contact")
    contact: dict[str, Any] | None = Field(
        default=None, description="traits to use (over the stored contact's, if any)"
    )
    data: dict[str, Any] | None = None
    event: dict[str, Any] | None = Field(default=None, description="a sample triggering event")
    channels: list[str] | None = None
    locale: str | None = Field(default=None, max_length=35)


@router.post("/v1/templates/{key}/preview", response_class=JSONAnswer)
async def preview_template(
    key: str, body: Preview, svc: ServicesDep, workspace_id: WorkspaceDep
) -> JSONAnswer:
    """The template rendered for a contact, per channel, with SMS segments and encoding."""
    request = store.PreviewRequest(
        version=body.version,
        user_id=body.user_id,
        contact=body.contact,
        data=body.data,
        event=body.event,
        channels=body.channels,
        locale=body.locale,
    )
    links = links_from(svc.settings)
    return JSONAnswer(
        await in_thread(in_read, svc, store.preview, workspace_id, key, request, links)
    )


@router.get("/v1/constants", response_class=JSONAnswer)
async def get_constants(svc: ServicesDep, workspace_id: WorkspaceDep) -> JSONAnswer:
    """Workspace constants: `{{ workspace.NAME }}` in every template."""
    return JSONAnswer(await in_thread(in_read, svc, store.constants, workspace_id))


@router.put("/v1/constants", response_class=JSONAnswer)
async def set_constants(
    svc: ServicesDep,
    workspace_id: WorkspaceDep,
    values: Annotated[dict[str, Any], Body(description="the whole set of constants")],
) -> JSONAnswer:
    return JSONAnswer(
        await in_thread(in_write, svc, store.set_constants, workspace_id, values, svc.clock.now())
    )
