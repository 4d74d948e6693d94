"""A bleak client backend that runs on bumble, and a virtual BLE link to run it on.

``VirtualBleLink`` puts bumble controllers on one in-process ``LocalLink``: no
radio, but real HCI, advertising, L2CAP, ATT and GATT encoding.
``bleak_backend(central)`` and ``bleak_scanner_backend(central)`` return
``BaseBleakClient`` / ``BaseBleakScanner`` subclasses bound to a bumble central,
so the ordinary ``BleakClient(address, backend=...)`` and
``BleakScanner(backend=...)`` code paths run against simulated peripherals
(devices, locks, hubs). Needs the ``bumble`` test extra.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Self

from bleak.args import SizedBuffer
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError
from bumble import att, core, hci
from bumble.controller import Controller
from bumble.core import AdvertisingData
from bumble.device import (
    Advertisement,
    AdvertisingEventProperties,
    AdvertisingParameters,
    AdvertisingSet,
    Connection,
    Device,
    Peer,
)
from bumble.gatt_client import CharacteristicProxy
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

from provisioning.protocomm.ble import ESPRESSIF_SERVICE_UUID
from provisioning.protocomm.ble_server import ProtocommGattServer
from provisioning.protocomm.device import ProtocommDevice

_LOGGER = logging.getLogger(__name__)

ATT_MTU = 517
_PROPERTY_NAMES = {
    0x02: "read",
    0x04: "write-without-response",
    0x08: "write",
    0x10: "notify",
    0x20: "indicate",
}


def _uuid_str(value: core.UUID) -> str:
    # bumble keeps UUIDs little-endian; bleak wants the canonical lower-case text.
    return str(uuid.UUID(bytes=bytes(reversed(value.to_bytes(force_128=True)))))


class BumbleBleakClient(BaseBleakClient):
    """``BaseBleakClient`` over a bumble central; use :func:`bleak_backend` to bind one."""

    central: ClassVar[Device | None] = None

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None = None,
        timeout: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout
        )
        self._connection: Connection | None = None
        self._peer: Peer | None = None
        self._mtu = 23

    @property
    def name(self) -> str:
        """Return the peer address (the virtual link has no names)."""
        return self.address

    @property
    def mtu_size(self) -> int:
        """Return the negotiated ATT MTU."""
        return self._mtu

    @property
    def is_connected(self) -> bool:
        """Return whether the link is up."""
        return self._connection is not None

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        """Connect, exchange the MTU and discover services, characteristics and descriptors."""
        central = type(self).central
        if central is None:
            raise BleakError("no bumble central bound: use bleak_backend(central)")
        try:
            connection = await central.connect(hci.Address(self.address), timeout=self._timeout)
        except (core.BaseBumbleError, TimeoutError) as err:
            raise BleakError(f"connect to {self.address} failed: {err}") from err
        self._connection = connection
        connection.on(connection.EVENT_DISCONNECTION, self._on_disconnection)
        self._peer = Peer(connection)
        try:
            self._mtu = await self._peer.request_mtu(ATT_MTU)
            self.services = await self._discover(self._peer)
        except (core.BaseBumbleError, att.ATT_Error) as err:
            await self.disconnect()
            raise BleakError(f"GATT discovery failed: {err}") from err

    async def _discover(self, peer: Peer) -> BleakGATTServiceCollection:
        collection = BleakGATTServiceCollection()
        for service in await peer.discover_services():
            bleak_service = BleakGATTService(service, service.handle, _uuid_str(service.uuid))
            collection.add_service(bleak_service)
            for char in await peer.discover_characteristics(service=service):
                properties = [n for bit, n in _PROPERTY_NAMES.items() if char.properties & bit]
                bleak_char = BleakGATTCharacteristic(
                    char,
                    char.handle,
                    _uuid_str(char.uuid),
                    properties,  # type: ignore[arg-type]  # names come from bleak's own literal set
                    lambda: self._mtu - 3,
                    bleak_service,
                )
                collection.add_characteristic(bleak_char)
                for desc in await peer.discover_descriptors(characteristic=char):
                    collection.add_descriptor(
                        BleakGATTDescriptor(desc, desc.handle, _uuid_str(desc.type), bleak_char)
                    )
        return collection

    def _on_disconnection(self, *_: object) -> None:
        self._connection = None
        self._peer = None
        if self._disconnected_callback is not None:
            self._disconnected_callback()

    async def disconnect(self) -> None:
        """Disconnect if connected."""
        connection = self._connection
        if connection is None:
            return
        self._disconnected_callback = None  # only unsolicited disconnects are reported
        try:
            await connection.disconnect()
        except core.BaseBumbleError as err:
            raise BleakError(f"disconnect failed: {err}") from err

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        """Pairing is not needed on the virtual link."""
        raise NotImplementedError("pairing is not supported by the bumble backend")

    async def unpair(self) -> None:
        """Pairing is not needed on the virtual link."""
        raise NotImplementedError("pairing is not supported by the bumble backend")

    def _require_peer(self) -> Peer:
        if self._peer is None:
            raise BleakError("not connected")
        return self._peer

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        """Read a characteristic value (long reads use Read Blob)."""
        try:
            return bytearray(await self._require_peer().read_value(characteristic.handle))
        except att.ATT_Error as err:
            raise BleakError(f"read failed: ATT error {err.error_code}") from err

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        """Read a descriptor value."""
        try:
            return bytearray(await self._require_peer().read_value(descriptor.handle))
        except att.ATT_Error as err:
            raise BleakError(f"read failed: ATT error {err.error_code}") from err

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
    ) -> None:
        """Write a characteristic value (long writes use Prepare/Execute Write)."""
        try:
            await self._require_peer().write_value(
                characteristic.handle, bytes(data), with_response=response
            )
        except att.ATT_Error as err:
            raise BleakError(f"write failed: ATT error {err.error_code}") from err

    async def write_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, data: SizedBuffer
    ) -> None:
        """Write a descriptor value."""
        try:
            await self._require_peer().write_value(
                descriptor.handle, bytes(data), with_response=True
            )
        except att.ATT_Error as err:
            raise BleakError(f"write failed: ATT error {err.error_code}") from err

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        """Subscribe to notifications or indications."""
        proxy = characteristic.obj
        assert isinstance(proxy, CharacteristicProxy)
        await self._require_peer().subscribe(proxy, lambda value: callback(bytearray(value)))

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        """Unsubscribe."""
        proxy = characteristic.obj
        assert isinstance(proxy, CharacteristicProxy)
        await self._require_peer().unsubscribe(proxy)


def bleak_backend(central: Device) -> type[BaseBleakClient]:
    """Return a bleak client backend class that connects through ``central``."""
    return type("BoundBumbleBleakClient", (BumbleBleakClient,), {"central": central})


_UUID_LISTS = (
    AdvertisingData.Type.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
    AdvertisingData.Type.INCOMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
    AdvertisingData.Type.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
    AdvertisingData.Type.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
)


class BumbleBleakScanner(BaseBleakScanner):
    """``BaseBleakScanner`` over a bumble central; use :func:`bleak_scanner_backend` to bind one."""

    central: ClassVar[Device | None] = None

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._active = scanning_mode == "active"

    def _central(self) -> Device:
        central = type(self).central
        if central is None:
            raise BleakError("no bumble central bound: use bleak_scanner_backend(central)")
        return central

    async def start(self) -> None:
        """Start scanning on the virtual link."""
        central = self._central()
        self.seen_devices = {}
        central.on(central.EVENT_ADVERTISEMENT, self._on_advertisement)
        await central.start_scanning(active=self._active, filter_duplicates=False)

    async def stop(self) -> None:
        """Stop scanning."""
        central = self._central()
        await central.stop_scanning()
        central.remove_listener(central.EVENT_ADVERTISEMENT, self._on_advertisement)

    def _on_advertisement(self, advertisement: Advertisement) -> None:
        data = advertisement.data
        uuids: list[str] = []
        for kind in _UUID_LISTS:
            found = data.get(kind)
            if isinstance(found, list):
                uuids.extend(_uuid_str(u) for u in found if isinstance(u, core.UUID))
        name = data.get(AdvertisingData.Type.COMPLETE_LOCAL_NAME) or data.get(
            AdvertisingData.Type.SHORTENED_LOCAL_NAME
        )
        address = str(advertisement.address).removesuffix("/P")
        seen = self.seen_devices.get(address)
        if seen is not None:
            # Merge a scan response into what the advertisement said.
            uuids = sorted(set(uuids) | set(seen[1].service_uuids))
            name = name or seen[1].local_name
        if not self.is_allowed_uuid(uuids):
            return
        adv = AdvertisementData(
            local_name=name if isinstance(name, str) else None,
            manufacturer_data={},
            service_data={},
            service_uuids=uuids,
            tx_power=None,
            rssi=advertisement.rssi,
            platform_data=(advertisement,),
        )
        device = self.create_or_update_device(address, address, adv.local_name, advertisement, adv)
        self.call_detection_callbacks(device, adv)


def bleak_scanner_backend(central: Device) -> type[BaseBleakScanner]:
    """Return a bleak scanner backend class that listens through ``central``."""
    return type("BoundBumbleBleakScanner", (BumbleBleakScanner,), {"central": central})


def advertising_payload(name: str, service_uuid: str) -> bytes:
    """Return advertising data: flags, the provisioning service UUID and the complete name."""
    data = AdvertisingData(
        [
            (AdvertisingData.Type.FLAGS, bytes([0x06])),  # LE general discoverable, no BR/EDR
            (
                AdvertisingData.Type.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
                bytes(core.UUID(service_uuid).to_bytes()),
            ),
            (AdvertisingData.Type.COMPLETE_LOCAL_NAME, name.encode()),
        ]
    )
    return bytes(data)


class VirtualBleLink:
    """An in-process BLE link: add bumble devices, connect to them with bleak."""

    def __init__(self) -> None:
        self.link = LocalLink()  # type: ignore[no-untyped-call]  # bumble leaves it unannotated
        self._devices: list[Device] = []
        self._count = 0

    def _new_device(self, address: str, name: str) -> Device:
        controller = Controller(name, link=self.link, public_address=address)
        device = Device(
            name=name,
            address=hci.Address(address),
            host=Host(controller, AsyncPipeSink(controller)),
        )
        self._devices.append(device)
        return device

    def next_address(self) -> str:
        """Return a fresh static random address for a new device."""
        self._count += 1
        return f"F0:00:00:00:{self._count >> 8:02X}:{self._count & 0xFF:02X}"

    async def add_peripheral(
        self, name: str, *, address: str | None = None, service_uuid: str | None = None
    ) -> Device:
        """Add a powered-on, connectable peripheral, advertising ``service_uuid`` if given."""
        device = self._new_device(address or self.next_address(), name)
        await device.power_on()
        if service_uuid is not None:
            await self.advertise(device, name, service_uuid)
        else:
            await device.start_advertising(auto_restart=True, advertising_interval_min=20.0)
        return device

    async def advertise(self, device: Device, name: str, service_uuid: str) -> AdvertisingSet:
        """Advertise the provisioning service and name (pairing mode) until the set is stopped."""
        # An extended (non-legacy) set carries service UUID and name in one PDU: bumble's
        # virtual controller answers legacy scan requests with the advertising data, so a
        # name in a legacy scan response would never reach the scanner.
        parameters = AdvertisingParameters(
            advertising_event_properties=AdvertisingEventProperties(is_connectable=True),
            primary_advertising_interval_min=20.0,
            primary_advertising_interval_max=20.0,
        )
        return await device.create_advertising_set(
            advertising_parameters=parameters,
            advertising_data=advertising_payload(name, service_uuid),
            auto_restart=True,
        )

    async def add_central(self, name: str = "central") -> Device:
        """Add a powered-on central to connect from."""
        device = self._new_device(self.next_address(), name)
        await device.power_on()
        return device

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for device in reversed(self._devices):
            for connection in list(device.connections.values()):
                try:
                    await connection.disconnect()
                except core.BaseBumbleError:
                    _LOGGER.debug("connection already gone at shutdown")
            await device.power_off()
        self._devices.clear()


@dataclass(frozen=True, slots=True)
class BleDeviceLink:
    """A protocomm device served on a virtual link, and what a bleak client needs to reach it."""

    link: VirtualBleLink
    peripheral: Device
    central: Device
    address: str
    client_backend: type[BaseBleakClient]
    scanner_backend: type[BaseBleakScanner]


@asynccontextmanager
async def serve_over_virtual_ble(
    device: ProtocommDevice,
    *,
    name: str = "zanuo-device",
    service_uuid: str = ESPRESSIF_SERVICE_UUID,
) -> AsyncIterator[BleDeviceLink]:
    """Serve ``device`` as an advertising GATT peripheral on a fresh virtual link."""
    async with VirtualBleLink() as link:
        peripheral = await link.add_peripheral(name, service_uuid=service_uuid)
        ProtocommGattServer(device, service_uuid=service_uuid).attach(peripheral)
        central = await link.add_central()
        yield BleDeviceLink(
            link,
            peripheral,
            central,
            str(peripheral.random_address),
            bleak_backend(central),
            bleak_scanner_backend(central),
        )
