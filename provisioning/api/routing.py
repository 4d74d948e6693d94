"""Declared endpoints: one table feeds both the router and the OpenAPI document.

A handler is registered with its request model, response model and the errors
it may answer with; the wrapper parses and validates the body (refusing any
location field), authenticates the caller and serializes the response, so the
OpenAPI document cannot drift from what the server does.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from provisioning.errors import (
    BadRequest,
    BasicMode,
    LocationNotAccepted,
    PayloadTooLarge,
    Unauthenticated,
    UnsupportedMediaType,
    ValidationFailed,
    ZanuoError,
)

Auth = Literal["none", "user", "ops"]
Handler = Callable[..., Awaitable[BaseModel | web.StreamResponse | None]]
Authenticator = Callable[[web.Request, str], Awaitable[Any]]
M = TypeVar("M", bound=BaseModel)

# Keys that would carry the phone's position. The service never accepts them,
# at any depth of any request body, rather than silently dropping them.
LOCATION_KEYS = frozenset(
    {
        "location",
        "latitude",
        "longitude",
        "lat",
        "lng",
        "lon",
        "long",
        "gps",
        "geo",
        "geolocation",
        "coordinates",
        "coords",
        "altitude",
        "accuracy",
    }
)

PRINCIPAL_KEY = web.RequestKey("principal", object)
ROUTE_NAME_KEY = web.RequestKey("route_name", str)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One declared HTTP endpoint."""

    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    body: type[BaseModel] | None
    response: type[BaseModel] | None
    status: int
    auth: Auth
    errors: tuple[type[ZanuoError], ...]
    query: type[BaseModel] | None = None
    basic_mode_ok: bool = False
    location_ok: bool = False

    @property
    def name(self) -> str:
        """Return the handler's name, used as operationId and metric label."""
        return self.handler.__name__


@dataclass
class Routes:
    """A collection of endpoints for one resource."""

    tag: str
    endpoints: list[Endpoint] = field(default_factory=list)

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        body: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        auth: Auth = "user",
        errors: tuple[type[ZanuoError], ...] = (),
        query: type[BaseModel] | None = None,
        basic_mode_ok: bool = False,
        location_ok: bool = False,
    ) -> Callable[[Handler], Handler]:
        """Declare an endpoint handled by the decorated coroutine.

        ``basic_mode_ok`` marks the few user endpoints an account in basic mode
        may still call (its rights, consents, sign-out); ``location_ok`` marks
        the one endpoint that takes a device location with consent.
        """

        def decorate(handler: Handler) -> Handler:
            self.endpoints.append(
                Endpoint(
                    method,
                    path,
                    handler,
                    summary,
                    self.tag,
                    body,
                    response,
                    status,
                    auth,
                    errors,
                    query,
                    basic_mode_ok,
                    location_ok,
                )
            )
            return handler

        return decorate


def find_location_key(value: Any, depth: int = 0) -> str | None:
    """Return the first location-like key anywhere in a JSON value."""
    if depth > 32:
        return None
    if isinstance(value, dict):
        for key, inner in value.items():
            if isinstance(key, str) and key.lower() in LOCATION_KEYS:
                return key
            found = find_location_key(inner, depth + 1)
            if found is not None:
                return found
    elif isinstance(value, list):
        for inner in value:
            found = find_location_key(inner, depth + 1)
            if found is not None:
                return found
    return None


def validation_details(err: ValidationError) -> list[dict[str, Any]]:
    """Describe validation errors without echoing the input (it may hold secrets)."""
    return [
        {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"], "type": e["type"]}
        for e in err.errors(include_url=False, include_input=False, include_context=False)
    ]


def parse_model(model: type[M], data: Any, *, location_ok: bool = False) -> M:
    """Validate JSON data against a request model, refusing location fields."""
    location_key = None if location_ok else find_location_key(data)
    if location_key is not None:
        raise LocationNotAccepted(field=location_key)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ValidationFailed(errors=validation_details(err)) from None


async def read_json(request: web.Request) -> Any:
    """Read a JSON request body within the configured size limit."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType()
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge() from None
    if not raw:
        raise BadRequest("the request body is empty")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("the request body is not valid JSON") from None


def bearer_token(request: web.Request) -> str:
    """Return the bearer token of a request or raise Unauthenticated."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated()
    return token.strip()


def wrap(
    endpoint: Endpoint, authenticators: dict[Auth, Authenticator]
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Turn a declared endpoint into an aiohttp handler."""

    async def handle(request: web.Request) -> web.StreamResponse:
        request[ROUTE_NAME_KEY] = endpoint.name
        if endpoint.auth != "none":
            principal = await authenticators[endpoint.auth](request, bearer_token(request))
            if getattr(principal, "basic_mode", False) and not endpoint.basic_mode_ok:
                raise BasicMode()
            request[PRINCIPAL_KEY] = principal
        args: list[Any] = [request]
        if endpoint.body is not None:
            body = await read_json(request)
            args.append(parse_model(endpoint.body, body, location_ok=endpoint.location_ok))
        if endpoint.query is not None:
            args.append(parse_model(endpoint.query, dict(request.query)))
        result = await endpoint.handler(*args)
        if isinstance(result, web.StreamResponse):
            return result
        if result is None:
            return web.Response(status=endpoint.status)
        return web.json_response(text=result.model_dump_json(), status=endpoint.status)

    handle.__name__ = endpoint.name
    return handle


def add_routes(
    app: web.Application, endpoints: list[Endpoint], authenticators: dict[Auth, Authenticator]
) -> None:
    """Register declared endpoints on an application."""
    for endpoint in endpoints:
        app.router.add_route(
            endpoint.method, endpoint.path, wrap(endpoint, authenticators), name=endpoint.name
        )
