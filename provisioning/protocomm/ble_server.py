"""The device-side GATT server for protocomm, on a bumble ``Device``.

Each BLE connection is one protocomm session; the session closes when the
connection does. A write runs the request and keeps the answer for that
connection and characteristic; the following read returns it (read-blob reads
of a long answer return slices of the same bytes).
"""

from __future__ import annotations

import logging

from bumble import att, gatt
from bumble.att import Attribute
from bumble.device import Connection, Device

from provisioning.protocomm.ble import ESPRESSIF_SERVICE_UUID, MAX_RESPONSE_LEN, endpoint_uuid
from provisioning.protocomm.device import Endpoint, ProtocommDevice
from provisioning.protocomm.endpoints import PROV_SESSION
from provisioning.protocomm.errors import RequestRejected

_LOGGER = logging.getLogger(__name__)

# ATT "unlikely error": the request was understood but could not be served.
_ATT_REQUEST_REFUSED = 0x0E


class ProtocommGattServer:
    """Expose a :class:`ProtocommDevice` as a GATT service on a bumble device.

    The characteristics are built from the endpoints registered when this object
    is created: register custom endpoints first.
    """

    def __init__(
        self, device: ProtocommDevice, *, service_uuid: str = ESPRESSIF_SERVICE_UUID
    ) -> None:
        self._device = device
        self.service_uuid = service_uuid
        self._sessions: dict[int, int] = {}  # connection handle -> session id
        self._answers: dict[tuple[int, str], bytes] = {}
        self.service = gatt.Service(
            service_uuid, [self._characteristic(ep) for ep in device.endpoints]
        )

    def _characteristic(self, endpoint: Endpoint) -> gatt.Characteristic[bytes]:
        async def write(connection: Connection, value: bytes) -> None:
            await self._on_write(connection, endpoint.name, value)

        def read(connection: Connection) -> bytes:
            return self._answers.get((connection.handle, endpoint.name), b"")

        description = gatt.Descriptor(
            gatt.GATT_CHARACTERISTIC_USER_DESCRIPTION_DESCRIPTOR,
            Attribute.READABLE,
            endpoint.name.encode(),
        )
        return gatt.Characteristic(
            endpoint_uuid(self.service_uuid, endpoint.uuid16),
            gatt.Characteristic.Properties.READ | gatt.Characteristic.Properties.WRITE,
            Attribute.READABLE | Attribute.WRITEABLE,
            gatt.CharacteristicValue(read=read, write=write),
            descriptors=[description],
        )

    def attach(self, device: Device) -> None:
        """Add the service to a bumble device and track its connections."""
        device.add_service(self.service)
        device.on(device.EVENT_CONNECTION, self._on_connection)

    def _on_connection(self, connection: Connection) -> None:
        handle = connection.handle
        self._sessions[handle] = self._device.new_session_id()

        def on_disconnection(*_: object) -> None:
            session_id = self._sessions.pop(handle, None)
            if session_id is not None:
                self._device.close_session(session_id)
            for key in [k for k in self._answers if k[0] == handle]:
                del self._answers[key]

        connection.on(connection.EVENT_DISCONNECTION, on_disconnection)

    async def _on_write(self, connection: Connection, endpoint: str, value: bytes) -> None:
        session_id = self._sessions.get(connection.handle)
        self._answers.pop((connection.handle, endpoint), None)
        if session_id is None:
            raise att.ATT_Error(error_code=_ATT_REQUEST_REFUSED)
        try:
            answer = await self._device.handle(session_id, endpoint, bytes(value))
        except RequestRejected as err:
            _LOGGER.debug("BLE %s refused: %s", endpoint, err)
            raise att.ATT_Error(error_code=_ATT_REQUEST_REFUSED) from err
        # SRP's B alone is 384 bytes, so only non-handshake answers must fit the budget.
        if len(answer) > MAX_RESPONSE_LEN and endpoint != PROV_SESSION:
            _LOGGER.warning(
                "BLE %s answer is %d bytes, over the %d-byte budget",
                endpoint,
                len(answer),
                MAX_RESPONSE_LEN,
            )
        self._answers[(connection.handle, endpoint)] = answer
