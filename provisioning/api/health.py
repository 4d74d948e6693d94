"""Liveness, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from provisioning.api.keys import OPENAPI_KEY, SERVICES_KEY
from provisioning.api.models import ResponseModel
from provisioning.api.routing import Routes
from provisioning.errors import ServiceUnavailable

routes = Routes(tag="ops")


class Health(ResponseModel):
    status: str


@routes.route("GET", "/healthz", summary="The process is alive", response=Health, auth="none")
async def healthz(request: web.Request) -> Health:
    """Answer while the process runs."""
    return Health(status="ok")


@routes.route(
    "GET",
    "/readyz",
    summary="The service can serve: database reachable",
    response=Health,
    auth="none",
    errors=(ServiceUnavailable,),
)
async def readyz(request: web.Request) -> Health:
    """Answer 200 only while the database answers."""
    await request.app[SERVICES_KEY].db.ping()
    return Health(status="ready")


@routes.route("GET", "/metrics", summary="Prometheus metrics (text format)", auth="none")
async def metrics(request: web.Request) -> web.Response:
    """Expose the process's metrics."""
    registry = request.app[SERVICES_KEY].metrics.registry
    return web.Response(
        body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


@routes.route("GET", "/openapi.json", summary="This API's OpenAPI 3.1 document", auth="none")
async def openapi(request: web.Request) -> web.Response:
    """Serve the generated OpenAPI document."""
    return web.json_response(request.app[OPENAPI_KEY])
