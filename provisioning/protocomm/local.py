"""An in-process transport: a client talking to a device with no socket in between.

Useful for tests, fuzzing and benchmarks; it behaves like a real transport
(one session per transport, refusals surface as ``TransportError``).
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from provisioning.protocomm.device import ProtocommDevice
from provisioning.protocomm.errors import RequestRejected, TransportError


class LocalTransport:
    """One in-process "connection" to a :class:`ProtocommDevice`."""

    def __init__(self, device: ProtocommDevice) -> None:
        self._device = device
        self.session_id = device.new_session_id()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Drop the session, as a closed connection would."""
        self._device.close_session(self.session_id)

    async def request(self, endpoint: str, data: bytes) -> bytes:
        """Hand the request to the device and return its answer."""
        try:
            return await self._device.handle(self.session_id, endpoint, data)
        except RequestRejected as err:
            raise TransportError(f"{endpoint}: refused ({err})") from err
