"""Protocomm over BLE GATT: UUID derivation and the bleak-based client transport.

One primary service; each endpoint is a read/write characteristic whose UUID
is the service UUID with bytes 2-3 replaced by the endpoint's 16-bit id, and
whose User Description descriptor (0x2901) names the endpoint. A request is a
write-with-response followed by a read of the same characteristic. The bleak
backend is a parameter: the platform one for real radios, or
``provisioning.protocomm.bumble_backend`` for a virtual link in tests.
"""

from __future__ import annotations

import logging
import uuid
from types import TracebackType
from typing import Self

from bleak import BleakClient
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError

from provisioning.protocomm.errors import TransportError

_LOGGER = logging.getLogger(__name__)

ESPRESSIF_SERVICE_UUID = "021a9004-0382-4aea-bff4-6b3f1c5adfb4"
USER_DESCRIPTION_UUID = "00002901-0000-1000-8000-00805f9b34fb"
MAX_RESPONSE_LEN = 256


def endpoint_uuid(service_uuid: str, uuid16: int) -> str:
    """Return the characteristic UUID: ``service_uuid`` with bytes 2-3 set to ``uuid16``."""
    raw = bytearray(uuid.UUID(service_uuid).bytes)
    raw[2:4] = uuid16.to_bytes(2, "big")
    return str(uuid.UUID(bytes=bytes(raw)))


class BleTransport:
    """Client transport over GATT through bleak; endpoints are found by their 0x2901 names."""

    def __init__(
        self,
        address_or_device: str | BLEDevice,
        *,
        service_uuid: str = ESPRESSIF_SERVICE_UUID,
        backend: type[BaseBleakClient] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._client = BleakClient(
            address_or_device, services=[service_uuid], timeout=timeout, backend=backend
        )
        self._service_uuid = service_uuid.lower()
        self._characteristics: dict[str, BleakGATTCharacteristic] = {}

    async def __aenter__(self) -> Self:
        try:
            await self._client.connect()
            await self._map_endpoints()
        except BleakError as err:
            await self._client.disconnect()
            raise TransportError(f"BLE connect failed: {err}") from err
        except BaseException:
            await self._client.disconnect()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Disconnect (the device drops the session)."""
        try:
            await self._client.disconnect()
        except BleakError as err:
            raise TransportError(f"BLE disconnect failed: {err}") from err

    async def _map_endpoints(self) -> None:
        service = self._client.services.get_service(self._service_uuid)
        if service is None:
            raise TransportError("the device does not offer the provisioning service")
        for characteristic in service.characteristics:
            descriptor = characteristic.get_descriptor(USER_DESCRIPTION_UUID)
            if descriptor is None:
                continue
            name = bytes(await self._client.read_gatt_descriptor(descriptor.handle)).decode(
                errors="replace"
            )
            self._characteristics[name] = characteristic
        _LOGGER.debug("BLE endpoints: %s", sorted(self._characteristics))

    @property
    def endpoint_names(self) -> tuple[str, ...]:
        """Return the endpoint names the device announced."""
        return tuple(self._characteristics)

    async def request(self, endpoint: str, data: bytes) -> bytes:
        """Write ``data`` with response to the endpoint's characteristic, then read the answer."""
        characteristic = self._characteristics.get(endpoint)
        if characteristic is None:
            raise TransportError(f"the device has no endpoint {endpoint!r}")
        try:
            await self._client.write_gatt_char(characteristic, data, response=True)
            return bytes(await self._client.read_gatt_char(characteristic))
        except BleakError as err:
            raise TransportError(f"{endpoint}: {err}") from err
