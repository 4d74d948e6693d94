"""Device side of protocomm: the endpoint registry and the per-connection session table.

Transports (HTTP, BLE) give every client connection a session id, pass each
request to :meth:`ProtocommDevice.handle` and call
:meth:`ProtocommDevice.close_session` when the connection goes away. The table
holds only sessions that are mid-handshake or established: any failed
``prov-session`` message drops the session entirely, so a client can never leave
one half-open by sending garbage, and the number of sessions is bounded.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError

from provisioning.protocomm.endpoints import (
    FIRST_CUSTOM_UUID16,
    MAX_REQUEST_LEN,
    PROTO_VER,
    PROV_SESSION,
    STANDARD_UUID16,
    VersionInfo,
)
from provisioning.protocomm.errors import CryptoFailure, ProtocommError, RequestRejected
from provisioning.protocomm.proto import constants_pb2, session_pb2
from provisioning.protocomm.security import (
    Channel,
    DeviceHandshake,
    HandshakeOutcome,
    HandshakeStep,
    SecurityConfig,
    command_phase,
    executor_offload,
    failure_response,
    new_device_handshake,
)

_LOGGER = logging.getLogger(__name__)

EndpointHandler = Callable[[int, bytes], Awaitable[bytes]]
"""A secured endpoint: ``(session_id, plaintext request) -> plaintext response``."""

DEFAULT_MAX_SESSIONS = 4
DEFAULT_HANDSHAKE_TIMEOUT = 30.0


class SessionState(enum.Enum):
    """Where a connection's session stands."""

    NONE = "none"
    HANDSHAKING = "handshaking"
    ESTABLISHED = "established"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A registered endpoint: its name, BLE 16-bit id and whether it is encrypted."""

    name: str
    uuid16: int
    secured: bool
    handler: EndpointHandler | None = field(default=None, compare=False)


@dataclass(slots=True)
class _Session:
    started: float
    handshake: DeviceHandshake | None = None
    channel: Channel | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def state(self) -> SessionState:
        return SessionState.ESTABLISHED if self.channel is not None else SessionState.HANDSHAKING


class ProtocommDevice:
    """Endpoint registry + session state machine for one device (transport-agnostic)."""

    def __init__(
        self,
        security: SecurityConfig,
        *,
        version: VersionInfo | None = None,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        executor: Executor | None = None,
    ) -> None:
        self.security = security
        self.version = version or VersionInfo(
            sec_ver=security.version, sec_patch_ver=security.patch
        )
        self._max_sessions = max_sessions
        self._handshake_timeout = handshake_timeout
        self._offload = executor_offload(executor)
        self._sessions: dict[int, _Session] = {}
        self._endpoints: dict[str, Endpoint] = {
            PROTO_VER: Endpoint(PROTO_VER, STANDARD_UUID16[PROTO_VER], secured=False),
            PROV_SESSION: Endpoint(PROV_SESSION, STANDARD_UUID16[PROV_SESSION], secured=False),
        }

    # ----------------------------------------------------------------- registry

    def add_endpoint(
        self, name: str, handler: EndpointHandler, *, uuid16: int | None = None
    ) -> None:
        """Register an encrypted endpoint; custom ones get BLE ids from 0xFF54 upward."""
        if name in self._endpoints:
            raise ValueError(f"endpoint {name!r} already registered")
        if uuid16 is None:
            uuid16 = STANDARD_UUID16.get(name) or self._next_custom_uuid16()
        self._endpoints[name] = Endpoint(name, uuid16, secured=True, handler=handler)

    def _next_custom_uuid16(self) -> int:
        used = {e.uuid16 for e in self._endpoints.values()}
        candidate = FIRST_CUSTOM_UUID16
        while candidate in used:
            candidate += 1
        return candidate

    def has_endpoint(self, name: str) -> bool:
        """Return whether an endpoint called ``name`` is registered."""
        return name in self._endpoints

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """Return the registered endpoints in registration order."""
        return tuple(self._endpoints.values())

    # ----------------------------------------------------------------- sessions

    def new_session_id(self) -> int:
        """Return a fresh u32 session id for a new transport connection."""
        while True:
            candidate = secrets.randbits(32)
            if candidate not in self._sessions:
                return candidate

    def close_session(self, session_id: int) -> None:
        """Forget a session (its connection closed)."""
        if self._sessions.pop(session_id, None) is not None:
            _LOGGER.debug("session %08x closed", session_id)

    def session_state(self, session_id: int) -> SessionState:
        """Return the state of a session."""
        session = self._sessions.get(session_id)
        return session.state if session is not None else SessionState.NONE

    @property
    def session_count(self) -> int:
        """Return how many sessions are mid-handshake or established."""
        return len(self._sessions)

    def session_ids(self) -> Iterator[int]:
        """Iterate over the ids of live sessions."""
        return iter(tuple(self._sessions))

    def _reserve_slot(self) -> bool:
        if len(self._sessions) < self._max_sessions:
            return True
        # Evict the oldest handshake that has been pending too long; an
        # established session is never evicted for a newcomer.
        now = asyncio.get_running_loop().time()
        stale = [
            sid
            for sid, s in self._sessions.items()
            if s.channel is None and now - s.started > self._handshake_timeout
        ]
        if not stale:
            return False
        self.close_session(min(stale, key=lambda sid: self._sessions[sid].started))
        return True

    # ----------------------------------------------------------------- requests

    async def handle(self, session_id: int, endpoint: str, data: bytes) -> bytes:
        """Serve one request; raise ``RequestRejected`` when there is no answer to give."""
        spec = self._endpoints.get(endpoint)
        if spec is None:
            raise RequestRejected(f"no endpoint {endpoint!r}", constants_pb2.InvalidArgument)
        if not 0 < len(data) <= MAX_REQUEST_LEN:
            if endpoint == PROV_SESSION:
                self._abort(session_id, 0, constants_pb2.InvalidProto)
            raise RequestRejected("request body size out of range", constants_pb2.InvalidArgument)
        if endpoint == PROTO_VER:
            return self.version.to_json()
        if endpoint == PROV_SESSION:
            return await self._handle_session(session_id, data)
        return await self._handle_secured(session_id, spec, data)

    async def _handle_session(self, session_id: int, data: bytes) -> bytes:
        request = session_pb2.SessionData()
        try:
            request.ParseFromString(data)
        except DecodeError:
            return self._abort(session_id, 0, constants_pb2.InvalidProto)
        if request.sec_ver != self.security.version:
            return self._abort(session_id, 0, constants_pb2.InvalidSecScheme)
        phase = command_phase(self.security, request)
        if phase is None:
            return self._abort(session_id, 0, constants_pb2.InvalidProto)
        session = self._sessions.get(session_id)
        if phase == 0:
            # Command0 always starts over: a client may renegotiate on its connection.
            self._sessions.pop(session_id, None)
            if not self._reserve_slot():
                _LOGGER.info("refusing session %08x: too many sessions", session_id)
                return failure_response(
                    self.security, 0, constants_pb2.TooManySessions
                ).SerializeToString()
            session = _Session(started=asyncio.get_running_loop().time())
            session.handshake = new_device_handshake(self.security)
            self._sessions[session_id] = session
        elif session is None or session.handshake is None:
            return self._abort(session_id, phase, constants_pb2.InvalidSession)
        handshake = session.handshake
        async with session.lock:
            if session.handshake is not handshake:
                # A duplicate message raced this one and already moved the handshake on.
                return self._abort(session_id, phase, constants_pb2.InvalidSession)
            step = await self._run_step(handshake, request)
        if self._sessions.get(session_id) is not session:
            # The connection closed or restarted while the step ran.
            return failure_response(
                self.security, phase, constants_pb2.InvalidSession
            ).SerializeToString()
        if step.outcome is HandshakeOutcome.FAILED:
            self._sessions.pop(session_id, None)
            _LOGGER.info("session %08x handshake failed at phase %d", session_id, phase)
        elif step.outcome is HandshakeOutcome.ESTABLISHED:
            session.handshake = None
            session.channel = step.channel
            _LOGGER.debug("session %08x established", session_id)
        return step.response.SerializeToString()

    async def _run_step(
        self, handshake: DeviceHandshake, request: session_pb2.SessionData
    ) -> HandshakeStep:
        # SRP exponentiations and X25519 run in the executor, not on the loop. Python's
        # big-int pow holds the GIL, so pass a ProcessPoolExecutor to keep the loop free.
        return await handshake.step(request, self._offload)

    def _abort(self, session_id: int, phase: int, status: int) -> bytes:
        if self._sessions.pop(session_id, None) is not None:
            _LOGGER.info("session %08x dropped after a bad handshake message", session_id)
        return failure_response(self.security, phase, status).SerializeToString()

    async def _handle_secured(self, session_id: int, spec: Endpoint, data: bytes) -> bytes:
        session = self._sessions.get(session_id)
        if session is None or session.channel is None:
            raise RequestRejected(
                f"{spec.name}: no established session", constants_pb2.InvalidSession
            )
        assert spec.handler is not None
        async with session.lock:
            channel = session.channel
            try:
                plaintext = channel.decrypt(data)
            except CryptoFailure as err:
                raise RequestRejected(f"{spec.name}: {err}", constants_pb2.CryptoError) from err
            try:
                response = await spec.handler(session_id, plaintext)
            except RequestRejected:
                raise
            except ProtocommError as err:
                raise RequestRejected(f"{spec.name}: {err}", constants_pb2.InternalError) from err
            except Exception as err:
                # The device must outlive a faulty handler: log it and refuse the request.
                _LOGGER.exception("endpoint %s failed", spec.name)
                raise RequestRejected(
                    f"{spec.name}: internal error", constants_pb2.InternalError
                ) from err
            return channel.encrypt(response)
