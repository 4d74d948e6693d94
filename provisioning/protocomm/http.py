"""Protocomm over HTTP (SoftAP): an aiohttp device server and an aiohttp client transport.

Each endpoint is ``POST /<name>`` with a raw protobuf body. The session is tied
to the TCP connection (Espressif's client keeps one connection alive and ignores
cookies); a new session also sets a ``session=<u32>`` cookie, and a client that
echoes it may resume the session on a new connection once the old one closed.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import Self

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web

from provisioning.protocomm.device import ProtocommDevice
from provisioning.protocomm.endpoints import MAX_REQUEST_LEN
from provisioning.protocomm.errors import RequestRejected, TransportError
from provisioning.protocomm.proto import constants_pb2

_LOGGER = logging.getLogger(__name__)

SESSION_COOKIE = "session"
DEFAULT_RESUME_GRACE = 30.0
IDLE_CONNECTION_KEEP = 3600.0
_CLIENT_HEADERS = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "text/plain"}


class _ConnectionSessions:
    """Maps live TCP connections to protocomm session ids.

    A session ends with its connection, except for a client that has echoed the
    ``session`` cookie back (Espressif's client never does): its session is
    kept detached for ``resume_grace`` seconds so it can resume on a new
    connection by presenting the cookie.
    """

    def __init__(self, device: ProtocommDevice, resume_grace: float) -> None:
        self._device = device
        self._resume_grace = resume_grace
        self._by_transport: dict[asyncio.BaseTransport, int] = {}
        self._cookie_aware: set[int] = set()
        self._detached: dict[int, float] = {}

    def _end(self, session_id: int) -> None:
        self._cookie_aware.discard(session_id)
        self._detached.pop(session_id, None)
        self._device.close_session(session_id)

    def sweep(self) -> None:
        """Close (or detach) the sessions of connections that have gone away."""
        now = asyncio.get_running_loop().time()
        for transport, session_id in list(self._by_transport.items()):
            if transport.is_closing():
                del self._by_transport[transport]
                if session_id in self._cookie_aware:
                    self._detached[session_id] = now
                else:
                    self._end(session_id)
        for session_id, since in list(self._detached.items()):
            if now - since > self._resume_grace:
                self._end(session_id)

    def close_all(self) -> None:
        """Close every session (server shutdown)."""
        for session_id in [*self._by_transport.values(), *self._detached]:
            self._end(session_id)
        self._by_transport.clear()

    def session_for(self, request: web.Request) -> tuple[int, bool]:
        """Return the session id of the request's connection and whether it is new."""
        transport = request.transport
        if transport is None:
            raise web.HTTPBadRequest(text="connection closed")
        self.sweep()
        cookie = request.cookies.get(SESSION_COOKIE, "")
        cookie_id = int(cookie) if cookie.isdigit() else None
        known = self._by_transport.get(transport)
        if known is not None:
            if cookie_id == known:
                self._cookie_aware.add(known)
            return known, False
        if cookie_id is not None and cookie_id in self._detached:
            del self._detached[cookie_id]
            self._by_transport[transport] = cookie_id
            return cookie_id, False
        session_id = self._device.new_session_id()
        self._by_transport[transport] = session_id
        return session_id, True


_DEVICE = web.AppKey("protocomm_device", ProtocommDevice)
_SESSIONS = web.AppKey("protocomm_sessions", _ConnectionSessions)


async def _handle(request: web.Request) -> web.Response:
    device = request.app[_DEVICE]
    sessions = request.app[_SESSIONS]
    endpoint = request.match_info["endpoint"]
    if not device.has_endpoint(endpoint):
        raise web.HTTPNotFound(text="no such endpoint")
    if request.content_length is not None and request.content_length > MAX_REQUEST_LEN:
        raise web.HTTPRequestEntityTooLarge(
            max_size=MAX_REQUEST_LEN, actual_size=request.content_length
        )
    body = await request.read()
    session_id, new = sessions.session_for(request)
    try:
        answer = await device.handle(session_id, endpoint, body)
    except RequestRejected as err:
        if err.status == constants_pb2.InternalError:
            raise web.HTTPInternalServerError(text=constants_pb2.Status.Name(err.status)) from err
        raise web.HTTPBadRequest(text=constants_pb2.Status.Name(err.status)) from err
    response = web.Response(body=answer, content_type="application/octet-stream")
    if new:
        response.set_cookie(SESSION_COOKIE, str(session_id))
    return response


def create_protocomm_app(
    device: ProtocommDevice, *, resume_grace: float = DEFAULT_RESUME_GRACE
) -> web.Application:
    """Build the aiohttp application serving a device's endpoints."""
    app = web.Application(client_max_size=MAX_REQUEST_LEN)
    app[_DEVICE] = device
    app[_SESSIONS] = _ConnectionSessions(device, resume_grace)

    async def close_sessions(app: web.Application) -> None:
        app[_SESSIONS].close_all()

    app.on_shutdown.append(close_sessions)
    app.router.add_post("/{endpoint}", _handle)
    return app


class ProtocommHttpServer:
    """Run a device's HTTP endpoints on ``host:port`` (port 0 picks a free one)."""

    def __init__(self, device: ProtocommDevice, host: str = "127.0.0.1", port: int = 0) -> None:
        self._runner = web.AppRunner(create_protocomm_app(device), access_log=None)
        self._host = host
        self._port = port
        self.url = ""

    async def __aenter__(self) -> Self:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{self._host}:{port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._runner.cleanup()


class HttpTransport:
    """Client transport: one kept-alive connection to ``base_url``, one POST per request."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._session: ClientSession | None = None

    async def __aenter__(self) -> Self:
        # limit=1 keeps every request on the same TCP connection, which carries the
        # session; aiohttp would drop an idle connection after 15 s, and with it the
        # session, while a person types the Wi-Fi password.
        self._session = ClientSession(
            connector=TCPConnector(limit=1, keepalive_timeout=IDLE_CONNECTION_KEEP),
            timeout=ClientTimeout(total=self._timeout),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection (the device drops the session)."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def request(self, endpoint: str, data: bytes) -> bytes:
        """POST ``data`` to ``/<endpoint>`` and return the raw answer."""
        if self._session is None:
            raise TransportError("HTTP transport is not open")
        url = f"{self._base_url}/{endpoint}"
        try:
            async with self._session.post(url, data=data, headers=_CLIENT_HEADERS) as response:
                body = await response.read()
                if response.status != 200:
                    raise TransportError(
                        f"{endpoint}: HTTP {response.status} {body.decode(errors='replace')}"
                    )
                return body
        except (ClientError, TimeoutError) as err:
            raise TransportError(f"{endpoint}: {err}") from err
