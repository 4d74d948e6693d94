"""Simulated devices against a real Mosquitto (project config) and, where needed, the bridge."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from bumble.device import Device as BumbleDevice

from gateway.ble.agent import AgentOptions
from gateway.mqtt.bridge import MqttBridge
from gateway.mqtt.broker import ManagedMosquitto
from provisioning.clock import FrozenClock
from provisioning.domain.accounts import Principal
from provisioning.domain.consent import Purpose
from provisioning.protocomm import (
    BleTransport,
    Credentials,
    HttpTransport,
    ProvisioningClient,
    Transport,
)
from provisioning.protocomm.bumble_backend import VirtualBleLink, bleak_backend
from provisioning.services import Services
from simulators.camera import Camera, WifiDevice
from simulators.device_mqtt import SessionOptions
from simulators.flash import DeviceFlash, FactoryInfo
from simulators.wifi_world import AccessPoint, WifiWorld
from tests.bridge.conftest import running_bridge
from tests.fixtures.devices import MakeAccounts, RegisterDevice
from tests.fixtures.mosquitto import LocalPki

HOME_SSID = b"zanuo-home"
HOME_BSSID = bytes.fromhex("a0b1c2d3e4f5")
HOME_PASSWORD = b"home-canary-passphrase-7731"
OFFICE_SSID = b"zanuo-office"
OFFICE_PASSWORD = b"office-canary-passphrase-4417"
PUBLIC_BROKER = ("mqtt.zanuo.example", 8883)  # what the app tells devices; the test overrides it
WAIT_S = 30.0

FAST_SESSION = SessionOptions(
    connect_timeout_s=5.0,
    publish_timeout_s=5.0,
    backoff_initial_s=0.05,
    backoff_max_s=0.5,
    goodbye_timeout_s=1.0,
)
FAST_AGENT = AgentOptions(
    scan_timeout_s=5.0, connect_timeout_s=5.0, bind_timeout_s=15.0, backoff_initial_s=0.05
)


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], *, within: float = WAIT_S
) -> None:
    """Poll ``check`` until it holds; fail the test when it never does."""
    async with asyncio.timeout(within):
        while True:
            outcome = check()
            if outcome if isinstance(outcome, bool) else await outcome:
                return
            await asyncio.sleep(0.02)


@pytest.fixture
def world() -> WifiWorld:
    """Return the home network and the office network."""
    return WifiWorld(
        [
            AccessPoint(HOME_SSID, HOME_BSSID, channel=6, rssi=-40, password=HOME_PASSWORD),
            AccessPoint(
                OFFICE_SSID, bytes.fromhex("0a1b2c3d4e5f"), channel=1, password=OFFICE_PASSWORD
            ),
        ],
        join_delay=0.005,
        scan_delay=0.005,
    )


@pytest.fixture
async def ble_link() -> AsyncIterator[VirtualBleLink]:
    """Return an in-process BLE link (bumble controllers, no radio)."""
    async with VirtualBleLink() as link:
        yield link


@pytest.fixture
async def phone_radio(ble_link: VirtualBleLink) -> BumbleDevice:
    """Return the phone's BLE central."""
    return await ble_link.add_central("phone")


Manufacture = Callable[..., Awaitable[Path]]


@pytest.fixture
def manufacture(register_device: RegisterDevice, device_pki: LocalPki) -> Manufacture:
    """Return a function that registers a device and writes its full flash folder."""

    async def make(serial: str, device_type: str = "camera") -> Path:
        factory = await register_device(serial, device_type, with_code=device_type != "lock")
        folder = device_pki.directory / "devices" / serial
        DeviceFlash.write_factory_info(
            folder,
            FactoryInfo(
                serial=serial,
                model="LOCK-2" if device_type == "lock" else "CAM-100",
                device_type=device_type,
                capabilities=("ble",) if device_type == "lock" else ("wifi", "ble"),
                label_code=factory.code,
            ),
        )
        return folder

    return make


@dataclasses.dataclass
class Owner:
    """An account that binds devices."""

    principal: Principal


@pytest.fixture
async def owner(make_accounts: MakeAccounts, services: Services) -> Owner:
    """Return a fresh account that keeps biometric check results (the lock tests read them)."""
    (principal,) = await make_accounts(1)
    await services.consents.change(
        principal.account_id, Purpose.BIOMETRIC_FEATURES, True, "app_settings"
    )
    return Owner(principal)


def broker_of(broker: ManagedMosquitto) -> tuple[str, int]:
    """Return where devices reach the test broker."""
    return broker.host, broker.port


@asynccontextmanager
async def softap_client(device: WifiDevice) -> AsyncIterator[ProvisioningClient]:
    """Open a protocomm session over SoftAP HTTP with the label code (sec2)."""
    async with HttpTransport(device.http_url) as transport:
        yield await _session(transport, device)


@asynccontextmanager
async def ble_client(
    device: WifiDevice, central: BumbleDevice
) -> AsyncIterator[ProvisioningClient]:
    """Open a protocomm session over BLE GATT with the label code."""
    async with BleTransport(device.ble_address, backend=bleak_backend(central)) as transport:
        yield await _session(transport, device)


async def _session(transport: Transport, device: WifiDevice) -> ProvisioningClient:
    client = ProvisioningClient(transport)
    code = device.label_code
    await client.establish_session(Credentials(pop=code, password=code))
    return client


async def bind_and_provision(
    services: Services, owner: Owner, device: WifiDevice, client: ProvisioningClient
) -> None:
    """Do what the app does: request a binding, hand the device its token and Wi-Fi."""
    issued = await services.binding.bind_with_code(
        owner.principal, device.serial, device.label_code or "", "127.0.0.1"
    )
    await client.bind(issued.bind_token.encode(), *PUBLIC_BROKER)
    async with asyncio.timeout(WAIT_S):
        await client.provision_wifi(HOME_SSID, HOME_PASSWORD)
        await device.wait_bound()


@dataclasses.dataclass
class Cloud:
    """The running backend (database, broker, bridge), one owner and the radio world."""

    services: Services
    bridge: MqttBridge
    broker: ManagedMosquitto
    owner: Owner
    world: WifiWorld
    clock: FrozenClock
    manufacture: Manufacture

    def camera(self, folder: Path, **options: Any) -> Camera:
        """Return a camera in this world that reaches the test broker."""
        return Camera(
            folder,
            self.world,
            clock=self.clock,
            broker=broker_of(self.broker),
            session_options=FAST_SESSION,
            **options,
        )

    async def bind(self, device: WifiDevice, client: ProvisioningClient) -> None:
        """Bind ``device`` to the owner the way the app does, over ``client``."""
        await bind_and_provision(self.services, self.owner, device, client)

    @asynccontextmanager
    async def bound_camera(self, serial: str) -> AsyncIterator[Camera]:
        """Manufacture and run a camera bound to the owner through SoftAP provisioning."""
        async with self.camera(await self.manufacture(serial)) as camera:
            async with softap_client(camera) as client:
                await self.bind(camera, client)
            async with asyncio.timeout(WAIT_S):
                await camera.wait_online()
            yield camera


__all__ = [
    "FAST_AGENT",
    "FAST_SESSION",
    "HOME_PASSWORD",
    "HOME_SSID",
    "OFFICE_PASSWORD",
    "OFFICE_SSID",
    "PUBLIC_BROKER",
    "WAIT_S",
    "Cloud",
    "Manufacture",
    "Owner",
    "bind_and_provision",
    "ble_client",
    "broker_of",
    "eventually",
    "softap_client",
]


@pytest.fixture
async def bridge(
    services: Services, device_pki: LocalPki, mosquitto_broker: ManagedMosquitto
) -> AsyncIterator[MqttBridge]:
    """Return the real MQTT bridge, connected to the test broker."""
    async with running_bridge(services, device_pki, mosquitto_broker) as running:
        yield running


@pytest.fixture
def cloud(
    services: Services,
    bridge: MqttBridge,
    mosquitto_broker: ManagedMosquitto,
    owner: Owner,
    world: WifiWorld,
    clock: FrozenClock,
    manufacture: Manufacture,
) -> Cloud:
    """Return the running backend, an owner and the Wi-Fi world, together."""
    return Cloud(services, bridge, mosquitto_broker, owner, world, clock, manufacture)
