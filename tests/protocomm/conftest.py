"""Fixtures for protocomm: a Wi-Fi world, devices, and the HTTP and bleak→bumble links."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import pytest

from provisioning.protocomm.ble import BleTransport
from provisioning.protocomm.bumble_backend import serve_over_virtual_ble
from provisioning.protocomm.client import ProvisioningClient
from provisioning.protocomm.http import HttpTransport, ProtocommHttpServer
from provisioning.protocomm.security import Sec1Config, Sec2Config, SecurityConfig
from provisioning.protocomm.service import ProvisioningDevice
from simulators.wifi_world import AccessPoint, WifiWorld

HOME_SSID = b"zanuo-home"
HOME_BSSID = bytes.fromhex("a0b1c2d3e4f5")
HOME_PASSWORD = b"correct horse battery"
POP = b"ABCDEF"
SRP_PASSWORD = "QWERTY"
SRP_SALT = bytes.fromhex("00a1b2c3d4e5f60718293a4b5c6d7e8f")  # leading zero on purpose


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> AsyncIterator[None]:
    """Fail any test that leaves a task running on the loop."""
    before = asyncio.all_tasks()
    yield
    await asyncio.sleep(0)
    leaked = [t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()]
    assert not leaked, f"leaked tasks: {leaked}"


@pytest.fixture
def wifi_world() -> WifiWorld:
    """Return a world with the home network and a neighbour."""
    return WifiWorld(
        [
            AccessPoint(HOME_SSID, HOME_BSSID, channel=6, rssi=-40, password=HOME_PASSWORD),
            AccessPoint(
                b"neighbour", bytes.fromhex("001122334455"), channel=11, rssi=-80, password=b"x" * 8
            ),
        ],
        join_delay=0.01,
        scan_delay=0.005,
    )


def security_config(name: str) -> SecurityConfig:
    """Return the device security for a test parameter name."""
    if name == "sec1":
        return Sec1Config(pop=POP)
    return Sec2Config.from_password(SRP_PASSWORD, salt=SRP_SALT)


@dataclass
class DeviceLink:
    """A running device reachable by clients over one transport."""

    device: ProvisioningDevice
    connect: Callable[[], AbstractAsyncContextManager[ProvisioningClient]]


@asynccontextmanager
async def http_link(device: ProvisioningDevice) -> AsyncIterator[DeviceLink]:
    """Serve ``device`` over HTTP on loopback."""
    async with ProtocommHttpServer(device.protocomm) as server:

        @asynccontextmanager
        async def connect() -> AsyncIterator[ProvisioningClient]:
            async with HttpTransport(server.url) as transport:
                yield ProvisioningClient(transport)

        yield DeviceLink(device, connect)


@asynccontextmanager
async def ble_link(device: ProvisioningDevice) -> AsyncIterator[DeviceLink]:
    """Serve ``device`` over GATT on a bumble peripheral, reached by bleak through bumble."""
    async with serve_over_virtual_ble(device.protocomm) as ble:

        @asynccontextmanager
        async def connect() -> AsyncIterator[ProvisioningClient]:
            async with BleTransport(ble.address, backend=ble.client_backend) as transport:
                yield ProvisioningClient(transport)

        yield DeviceLink(device, connect)


@pytest.fixture(params=["http", "ble"])
def transport_name(request: pytest.FixtureRequest) -> str:
    """Parametrize a test over both transports."""
    return str(request.param)


@pytest.fixture(params=["sec1", "sec2"])
def security_name(request: pytest.FixtureRequest) -> str:
    """Parametrize a test over security 1 and 2."""
    return str(request.param)


@pytest.fixture
async def device_link(
    transport_name: str, security_name: str, wifi_world: WifiWorld
) -> AsyncIterator[DeviceLink]:
    """Return a running device over the parametrized transport and security."""
    device = ProvisioningDevice(security_config(security_name), wifi_world.station("camera"))
    opener = http_link if transport_name == "http" else ble_link
    async with device, opener(device) as link:
        yield link
