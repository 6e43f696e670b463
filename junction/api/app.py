"""The FastAPI application, built from values (settings, database, clock) and nothing global."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from junction import __version__
from junction.api import (
    campaigns,
    channels,
    contacts,
    hooks,
    inbox,
    ingest,
    journeys,
    links,
    messages,
    policies,
    preferences,
    problems,
    segments,
    templates,
)
from junction.api.deps import Services
from junction.api.responses import JSONAnswer
from junction.clock import Clock, SystemClock
from junction.domain import tracking
from junction.settings import Settings
from junction.store.database import Database
from junction.web import dev_inbox, preference_center, unsubscribe


def create_app(
    settings: Settings,
    database: Database | None = None,
    clock: Clock | None = None,
    *,
    run_dispatcher: bool = False,
) -> FastAPI:
    """The API; with ``run_dispatcher`` it also sends what it queues, in the same process
    (the embedded set-up). Scale-out runs the dispatcher in ``junction worker`` instead."""
    database = database or Database(settings.database_url)
    clock = clock or SystemClock()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if not run_dispatcher:
            yield
            return
        from junction.engine.dispatcher import Dispatcher, settings_from
        from junction.engine.personalising import links_from

        stop = asyncio.Event()
        dispatcher = Dispatcher(
            database, clock, settings_from(settings), links=links_from(settings)
        )
        task = asyncio.create_task(dispatcher.run(stop))
        try:
            yield
        finally:
            stop.set()
            await task

    app = FastAPI(
        lifespan=lifespan,
        title="Junction",
        version=__version__,
        description="Cross-channel customer messaging. Every /v1 route needs a workspace API "
        "key: `Authorization: Bearer KEY`, or HTTP Basic with the key as username.",
        default_response_class=JSONAnswer,
    )
    app.state.services = Services(
        settings=settings,
        database=database,
        clock=clock,
        secret=settings.resolved_secret_key(),
    )
    problems.install(app)
    app.include_router(ingest.router)
    app.include_router(contacts.router)
    app.include_router(messages.router)
    app.include_router(channels.router)
    app.include_router(hooks.router)
    app.include_router(inbox.router)
    app.include_router(templates.router)
    app.include_router(journeys.router)
    app.include_router(segments.router)
    app.include_router(campaigns.router)
    app.include_router(links.router)
    app.include_router(dev_inbox.router)
    app.include_router(preferences.router)
    app.include_router(policies.router)
    app.include_router(preference_center.router)
    app.include_router(unsubscribe.router)

    @app.get("/healthz", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schema.setdefault("components", {}).setdefault("schemas", {}).update(
                tracking.openapi_components()
            )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
