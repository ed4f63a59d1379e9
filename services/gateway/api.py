"""The gateway: Flowline's one public HTTP API and its web page.

Writes (start, complete, control) become Kafka events; reads and inbox actions pass through to
the definitions and tasks services. Specific routes are declared before the pass-through ones,
so `POST /v1/instances/{id}/cancel` is produced here while `GET /v1/instances/{id}` is proxied.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Header, Request, Response
from fastapi.responses import HTMLResponse

from schemas.messages import InstanceAction
from services.common import metrics as common_metrics
from services.common.errors import install_error_handlers
from services.common.http import FiniteJsonRoute
from services.common.kafka import EventProducer
from services.common.settings import Settings
from services.gateway.intake import CompletionBody, ControlBody, Intake, ResumeBody, StartBody
from services.gateway.migrate import Migrations
from services.gateway.migrate import router as migrate_router
from services.gateway.proxy import Peer
from services.gateway.work_orders import WorkOrders
from services.gateway.work_orders import router as work_orders_router

PAGE = Path(__file__).parent / "static" / "index.html"
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
TENANT_HEADER = "X-Flowline-Tenant"


def create_app(settings: Settings) -> FastAPI:
    """The gateway app; its lifespan owns the Kafka producer and the peers' HTTP client."""
    peers: dict[str, Peer] = {}
    intake: dict[str, Intake] = {}  # filled by the lifespan: the producer needs a running loop

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        producer = EventProducer(settings, "gateway")
        await producer.start()
        client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=2.0))
        peers["definitions"] = Peer("definitions", settings.definitions_url, client)
        peers["tasks"] = Peer("tasks", settings.tasks_url, client)
        intake["kafka"] = Intake(producer)
        try:
            yield
        finally:
            await client.aclose()
            await producer.stop()

    app = FastAPI(title="Flowline", version="1", lifespan=lifespan)
    app.router.route_class = FiniteJsonRoute  # before any route is added
    install_error_handlers(app)
    page = PAGE.read_text(encoding="utf-8")

    @app.post("/v1/instances", status_code=202)
    async def start_instance(
        body: StartBody, tenant: str = Header("default", alias=TENANT_HEADER)
    ) -> dict[str, str]:
        """Start an instance of a process for a subject; the router binds the version."""
        return await intake["kafka"].start(body, tenant or "default")

    @app.post("/v1/instances/{instance_id:path}/completions", status_code=202)
    async def complete_step(instance_id: str, body: CompletionBody) -> dict[str, str]:
        """Report a step done (by equipment or a person); `event_id` makes retries safe."""
        return await intake["kafka"].complete(instance_id, body)

    def control(action: InstanceAction) -> Callable[..., Awaitable[dict[str, str]]]:
        async def handler(instance_id: str, body: ControlBody | None = None) -> dict[str, str]:
            return await intake["kafka"].control(instance_id, action, body or ControlBody())

        handler.__doc__ = f"Ask the router to {action.value} the instance."
        return handler

    app.state.migrations = Migrations(peers, intake)
    app.include_router(migrate_router)  # before the pass-through routes
    app.state.work_orders = WorkOrders(peers, intake)
    app.include_router(work_orders_router)

    for action in (InstanceAction.CANCEL, InstanceAction.HOLD):
        app.post(f"/v1/instances/{{instance_id:path}}/{action.value}", status_code=202,
                 name=f"{action.value}_instance")(control(action))

    @app.post("/v1/instances/{instance_id:path}/resume", status_code=202, name="resume_instance")
    async def resume_instance(instance_id: str,
                              body: ResumeBody | None = None) -> dict[str, str]:
        """Ask the router to resume the instance; `drop_held` drops the steps a routing hold
        kept (e.g. a second branch that reached an active step) instead of retrying them."""
        return await intake["kafka"].control(instance_id, InstanceAction.RESUME,
                                             body or ResumeBody())

    def passthrough(peer: str) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            return await peers[peer].forward(request)

        return handler

    routes: list[tuple[str, str, list[str]]] = [
        ("/v1/processes", "definitions", ALL_METHODS),
        ("/v1/templates", "definitions", ALL_METHODS),
        ("/v1/tasks", "tasks", ALL_METHODS),
        ("/v1/instances", "tasks", ["GET"]),
        ("/v1/analytics", "tasks", ["GET"]),
        ("/v1/jobs", "tasks", ["GET", "POST"]),  # workers claim and finish jobs here too
        ("/v1/timers", "tasks", ["GET"]),
        ("/v1/analyses", "tasks", ["GET", "POST"]),  # seed 003: submit data, status, results
    ]
    for prefix, peer, methods in routes:
        app.api_route(prefix, methods=methods, include_in_schema=False)(passthrough(peer))
        app.api_route(prefix + "/{rest:path}", methods=methods,
                      include_in_schema=False)(passthrough(peer))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """The gateway is up; `peers` says whether the services behind it answer."""
        names = list(peers)
        states = await asyncio.gather(*(peers[n].health() for n in names))
        peer_states = dict(zip(names, states, strict=True))
        status = "ok" if all(s == "ok" for s in states) else "degraded"
        return {"status": status, "service": "gateway", "peers": peer_states}

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        body, content_type = common_metrics.render()
        return Response(body, media_type=content_type)

    return app
