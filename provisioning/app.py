"""The application factory: the one place that wires the HTTP API together."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

from aiohttp import web

from provisioning.api import auth, devices, health, me, ops, privacy, registry, wifi
from provisioning.api.keys import OPENAPI_KEY, SERVICES_KEY
from provisioning.api.middleware import error_middleware
from provisioning.api.openapi import build_openapi
from provisioning.api.routing import Auth, Authenticator, Endpoint, Routes, add_routes
from provisioning.api.session import authenticate_user
from provisioning.config import Secrets, Settings
from provisioning.domain.retention import retention_worker
from provisioning.errors import Unauthenticated
from provisioning.services import Services, open_services

API_TITLE = "Zanuo Cloud"
API_VERSION = "1.0.0"

ROUTE_GROUPS: tuple[Routes, ...] = (
    health.routes,
    auth.routes,
    me.routes,
    devices.routes,
    registry.routes,
    privacy.routes,
    ops.routes,
    wifi.routes,
)


def all_endpoints(extra: tuple[Routes, ...] = ()) -> list[Endpoint]:
    """Return every declared endpoint."""
    return [ep for group in (*ROUTE_GROUPS, *extra) for ep in group.endpoints]


async def authenticate_ops(request: web.Request, token: str) -> str:
    """Accept only the operations token from the secrets file."""
    expected = request.app[SERVICES_KEY].secrets.ops_token.get_secret_value()
    if not expected or not hmac.compare_digest(expected.encode(), token.encode()):
        raise Unauthenticated()
    return "ops"


AUTHENTICATORS: dict[Auth, Authenticator] = {"user": authenticate_user, "ops": authenticate_ops}

ServicesFactory = Callable[[], AbstractAsyncContextManager[Services]]


def create_app(
    settings: Settings,
    secrets: Secrets,
    *,
    services: ServicesFactory | None = None,
    extra_routes: tuple[Routes, ...] = (),
) -> web.Application:
    """Build the aiohttp application; resources open in its cleanup contexts."""

    async def services_ctx(app: web.Application) -> AsyncIterator[None]:
        factory = services or (lambda: open_services(settings, secrets))
        async with (
            factory() as opened,
            retention_worker(opened.retention, settings.retention.interval_seconds),
        ):
            app[SERVICES_KEY] = opened
            yield

    app = web.Application(
        client_max_size=settings.server.max_body_bytes, middlewares=[error_middleware]
    )
    endpoints = all_endpoints(extra_routes)
    app[OPENAPI_KEY] = build_openapi(endpoints, title=API_TITLE, version=API_VERSION)
    app.cleanup_ctx.append(services_ctx)
    add_routes(app, endpoints, AUTHENTICATORS)
    return app
