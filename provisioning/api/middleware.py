"""The one error middleware, request metrics and a body-free access log."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest

from provisioning.api.keys import SERVICES_KEY
from provisioning.api.routing import ROUTE_NAME_KEY
from provisioning.errors import (
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    TooManyAttempts,
    ZanuoError,
)
from provisioning.metrics import Metrics

_LOGGER = logging.getLogger(__name__)

HandlerT = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(error: ZanuoError) -> web.Response:
    """Render an error in the JSON error shape."""
    response = web.json_response(error.to_dict(), status=error.status)
    if isinstance(error, TooManyAttempts):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


def _from_http_exception(exc: web.HTTPException) -> ZanuoError:
    if exc.status == 404:
        return NotFound("no such route")
    if exc.status == 405:
        return MethodNotAllowed()
    if exc.status == 413:
        return PayloadTooLarge()
    error = ZanuoError(exc.reason)
    error.status = exc.status  # type: ignore[misc]  # keep aiohttp's own status for the rest
    return error


@web.middleware
async def error_middleware(request: web.Request, handler: HandlerT) -> web.StreamResponse:
    """Map every failure to the JSON error shape and count the request."""
    started = time.perf_counter()
    try:
        response = await handler(request)
    except ZanuoError as err:
        response = error_response(err)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(_from_http_exception(exc))
    except Exception:
        # The traceback goes to the log; never the body, never the headers.
        _LOGGER.exception("unhandled error in %s %s", request.method, request.path)
        response = error_response(ZanuoError())
    metrics: Metrics = request.app[SERVICES_KEY].metrics
    route = request.get(ROUTE_NAME_KEY, "unmatched")
    metrics.http_requests.labels(route, f"{response.status // 100}xx").inc()
    metrics.http_latency.labels(route).observe(time.perf_counter() - started)
    return response


class AccessLogger(AbstractAccessLogger):
    """Logs method, path without query, status and time: never bodies or headers."""

    def log(self, request: BaseRequest, response: web.StreamResponse, time: float) -> None:
        """Write one access-log line."""
        self.logger.info(
            "%s %s %s %.1fms", request.method, request.rel_url.path, response.status, time * 1000
        )
