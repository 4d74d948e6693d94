"""The BLE GATT layout: derived UUIDs and 0x2901 names, as seen by a bleak client."""

from __future__ import annotations

from bleak import BleakClient, BleakScanner

from provisioning.protocomm.ble import (
    ESPRESSIF_SERVICE_UUID,
    USER_DESCRIPTION_UUID,
    BleTransport,
    endpoint_uuid,
)
from provisioning.protocomm.ble_server import ProtocommGattServer
from provisioning.protocomm.bumble_backend import (
    VirtualBleLink,
    bleak_backend,
    bleak_scanner_backend,
)
from provisioning.protocomm.client import Credentials, ProvisioningClient
from provisioning.protocomm.security import Sec1Config
from provisioning.protocomm.service import ProvisioningDevice
from simulators.wifi_world import WifiWorld

from .conftest import POP


def test_endpoint_uuid_replaces_bytes_two_and_three_of_the_service_uuid() -> None:
    assert endpoint_uuid(ESPRESSIF_SERVICE_UUID, 0xFF51) == "021aff51-0382-4aea-bff4-6b3f1c5adfb4"
    assert endpoint_uuid("12345678-9abc-def0-1234-56789abcdef0", 0xFF54) == (
        "1234ff54-9abc-def0-1234-56789abcdef0"
    )


async def test_bleak_sees_one_named_characteristic_per_endpoint(wifi_world: WifiWorld) -> None:
    device = ProvisioningDevice(Sec1Config(pop=POP), wifi_world.station("cam"))

    async def echo(session_id: int, data: bytes) -> bytes:
        return data

    device.add_endpoint("custom-echo", echo)
    async with device, VirtualBleLink() as link:
        peripheral = await link.add_peripheral("cam")
        ProtocommGattServer(device.protocomm).attach(peripheral)
        central = await link.add_central()
        async with BleakClient(
            str(peripheral.random_address), backend=bleak_backend(central)
        ) as client:
            service = client.services.get_service(ESPRESSIF_SERVICE_UUID)
            assert service is not None
            names = {}
            for char in service.characteristics:
                descriptor = char.get_descriptor(USER_DESCRIPTION_UUID)
                assert descriptor is not None
                names[bytes(await client.read_gatt_descriptor(descriptor.handle)).decode()] = char
    assert {name: char.uuid for name, char in names.items()} == {
        "proto-ver": "021aff53-0382-4aea-bff4-6b3f1c5adfb4",
        "prov-session": "021aff51-0382-4aea-bff4-6b3f1c5adfb4",
        "prov-config": "021aff52-0382-4aea-bff4-6b3f1c5adfb4",
        "prov-scan": "021aff50-0382-4aea-bff4-6b3f1c5adfb4",
        "prov-ctrl": "021aff4f-0382-4aea-bff4-6b3f1c5adfb4",
        "custom-echo": "021aff54-0382-4aea-bff4-6b3f1c5adfb4",
    }
    assert all({"read", "write"} <= set(c.properties) for c in names.values())


async def test_bleak_scanner_finds_the_device_by_service_and_connects_to_it(
    wifi_world: WifiWorld,
) -> None:
    device = ProvisioningDevice(Sec1Config(pop=POP), wifi_world.station("lock"))
    async with device, VirtualBleLink() as link:
        await link.add_peripheral("bystander")  # advertises, but not our service
        lock = await link.add_peripheral("zn-lock-42", service_uuid=ESPRESSIF_SERVICE_UUID)
        ProtocommGattServer(device.protocomm).attach(lock)
        central = await link.add_central()
        found = await BleakScanner.find_device_by_filter(
            lambda _device, adv: adv.local_name == "zn-lock-42",
            timeout=5,
            service_uuids=[ESPRESSIF_SERVICE_UUID],
            backend=bleak_scanner_backend(central),
        )
        assert found is not None
        async with BleTransport(found, backend=bleak_backend(central)) as transport:
            client = ProvisioningClient(transport)
            await client.establish_session(Credentials(pop=POP))
            version = await client.get_version()
    assert found.address == str(lock.random_address)
    assert version.sec_ver == 1
