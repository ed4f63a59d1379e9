"""The definitions service's FastAPI app: ``create_app(settings)`` builds everything at start-up.

Nothing is created at import: the engine, tables and outbox publisher live in the lifespan,
so importing this module needs neither a database nor a broker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request, Response
from sqlalchemy import text

from services.common import migrate
from services.common.db import make_engine, make_sessionmaker
from services.common.errors import install_error_handlers
from services.common.http import FiniteJsonRoute
from services.common.metrics import render
from services.common.settings import Settings
from services.definitions.publisher import OutboxPublisher, ProducerFactory, default_producer
from services.definitions.repository import Repository
from services.definitions.routes import Runtime, router
from services.definitions.routes_catalog import match_router, templates_router
from services.definitions.routes_design import router as design_router


def create_app(settings: Settings, *, publish_wait: float = 5.0,
               producer_factory: ProducerFactory = default_producer) -> FastAPI:
    """The app; ``publish_wait`` bounds how long approve/lifecycle calls wait for Kafka."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await migrate.upgrade(settings.db_url("definitions"), "definitions")
        engine = make_engine(settings.db_url("definitions"))
        sessions = make_sessionmaker(engine)
        publisher = OutboxPublisher(settings, sessions, producer_factory=producer_factory)
        app.state.runtime = Runtime(Repository(sessions, settings.definitions_topic), publisher,
                                    publish_wait)
        app.state.engine = engine
        task = asyncio.create_task(publisher.run(), name="definitions-outbox")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await publisher.close()
            await engine.dispose()

    app = FastAPI(title="Flowline definitions", version="1", lifespan=lifespan)
    app.router.route_class = FiniteJsonRoute  # before any route is added
    install_error_handlers(app)
    # The match route first: otherwise GET /v1/processes/{key} would take "match" as a key.
    app.include_router(match_router)
    app.include_router(router)
    app.include_router(design_router)
    app.include_router(templates_router)

    @app.get("/healthz")
    async def healthz(request: Request) -> dict[str, Any]:
        async with request.app.state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics() -> Response:
        body, content_type = render()
        return Response(body, media_type=content_type)

    return app
