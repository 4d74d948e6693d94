"""End-to-end fixtures: the real app over loopback HTTP, every request it receives recorded.

The canaries live here: the phone's location and the Wi-Fi passwords the
tests type. :class:`RequestLog` sits first in the app's middleware chain and
keeps every request exactly as it arrived (method, path, query, headers,
body), so a test can prove that no canary ever reached the backend.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.mqtt.bridge import MqttBridge
from gateway.mqtt.broker import ManagedMosquitto
from provisioning.api import wifi
from provisioning.app import create_app
from provisioning.config import Secrets, Settings
from provisioning.notify.delivery import OutboxSender
from provisioning.services import Services
from simulators.app import GeoLocation, PhoneApp, outbox_code_reader
from simulators.flash import DeviceFlash, FactoryInfo
from simulators.wifi_world import AccessPoint, WifiWorld
from tests.bridge.conftest import running_bridge
from tests.fixtures.devices import RegisterDevice
from tests.fixtures.mosquitto import LocalPki

PHONE_LOCATION = GeoLocation(47.3768912, 8.5416934)
HOME_SSID = "zanuo-e2e-home"
HOME_BSSID = bytes.fromhex("a0b1c2d3e4f5")
HOME_PASSWORD = "canary-home-wifi-7f3a9c"
WRONG_PASSWORD = "canary-wrong-wifi-41d2e8"
NEW_SSID = "zanuo-e2e-upstairs"
NEW_BSSID = bytes.fromhex("a0b1c2d3e4f6")
NEW_PASSWORD = "canary-new-wifi-b6c05a"
WIFI_PASSWORDS = (HOME_PASSWORD, WRONG_PASSWORD, NEW_PASSWORD)
ACCOUNT_PASSWORD = "a long e2e password"


@dataclasses.dataclass(frozen=True, slots=True)
class SeenRequest:
    """One request as the backend received it."""

    method: str
    path_qs: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def raw(self) -> bytes:
        """Return everything in the request as bytes, for canary scans."""
        head = "\n".join(f"{k}: {v}" for k, v in self.headers)
        return f"{self.method} {self.path_qs}\n{head}\n\n".encode() + self.body


class RequestLog:
    """Middleware that records every request the backend receives, before anything else runs."""

    def __init__(self) -> None:
        self.requests: list[SeenRequest] = []

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Record the request, then pass it on."""
        body = await request.read()
        self.requests.append(
            SeenRequest(request.method, request.path_qs, tuple(request.headers.items()), body)
        )
        return await handler(request)

    def containing(self, needle: str) -> list[SeenRequest]:
        """Return the requests whose raw bytes contain ``needle`` (also URL- and JSON-escaped)."""
        forms = {
            needle.encode(),
            needle.replace(" ", "%20").encode(),
            needle.replace(" ", "+").encode(),
        }
        return [r for r in self.requests if any(f in r.raw() for f in forms)]


@dataclasses.dataclass(frozen=True, slots=True)
class Stack:
    """The running backend: API (every request recorded), broker, bridge, and where they write."""

    api_url: str
    broker: ManagedMosquitto
    bridge: MqttBridge
    requests: RequestLog
    data_dir: Path

    @property
    def broker_address(self) -> tuple[str, int]:
        """Return the broker's address as the app hands it to devices."""
        return self.broker.host, self.broker.port


@pytest.fixture
def request_log() -> RequestLog:
    """Return the log of every request the API receives."""
    return RequestLog()


@pytest.fixture
async def stack(
    settings: Settings,
    secrets: Secrets,
    services: Services,
    device_pki: LocalPki,
    mosquitto_broker: ManagedMosquitto,
    request_log: RequestLog,
    data_dir: Path,
) -> AsyncIterator[Stack]:
    """Run the API with the Wi-Fi routes and the bridge as its command sender, as the CLI does."""

    @contextlib.asynccontextmanager
    async def given() -> AsyncIterator[Services]:
        yield services

    async with running_bridge(services, device_pki, mosquitto_broker) as bridge:
        app = create_app(settings, secrets, services=given)
        app[wifi.COMMAND_SENDER_KEY] = bridge
        app.middlewares.insert(0, request_log.middleware)
        async with TestServer(app) as server:
            yield Stack(
                str(server.make_url("")).rstrip("/"),
                mosquitto_broker,
                bridge,
                request_log,
                data_dir,
            )


@pytest.fixture
def api_url(stack: Stack) -> str:
    """Return the base URL of the running API."""
    return stack.api_url


@pytest.fixture
def wifi_world() -> WifiWorld:
    """Return the home network, a second one for remote changes, and a neighbour."""
    return WifiWorld(
        [
            AccessPoint(HOME_SSID.encode(), HOME_BSSID, rssi=-40, password=HOME_PASSWORD.encode()),
            AccessPoint(NEW_SSID.encode(), NEW_BSSID, rssi=-60, password=NEW_PASSWORD.encode()),
            AccessPoint(b"neighbour", bytes.fromhex("001122334455"), rssi=-85, password=b"x" * 8),
        ],
        join_delay=0.01,
        scan_delay=0.005,
    )


PhoneFactory = Callable[[str], Awaitable[PhoneApp]]


@pytest.fixture
async def phone_factory(api_url: str, outbox: OutboxSender) -> AsyncIterator[PhoneFactory]:
    """Return a function that opens a phone and signs up ``email`` on it."""
    opened: list[PhoneApp] = []

    async def make(email: str) -> PhoneApp:
        phone = PhoneApp(api_url, location=PHONE_LOCATION, poll_interval=0.05)
        await phone.__aenter__()
        opened.append(phone)
        await phone.register(email, ACCOUNT_PASSWORD, outbox_code_reader(outbox.path))
        return phone

    yield make
    for phone in opened:
        await phone.__aexit__(None, None, None)


@pytest.fixture
async def phone(phone_factory: PhoneFactory) -> PhoneApp:
    """Return the owner's phone, signed up."""
    return await phone_factory("owner@example.com")


Manufacture = Callable[..., Awaitable[Path]]


@pytest.fixture
def manufacture(register_device: RegisterDevice, device_pki: LocalPki) -> Manufacture:
    """Return a function that registers a device and writes its flash folder (with the label)."""

    async def make(serial: str, device_type: str = "camera", *, ble_mac: str | None = None) -> Path:
        factory = await register_device(serial, device_type, with_code=device_type != "lock")
        folder = device_pki.directory / "devices" / serial
        DeviceFlash.write_factory_info(
            folder,
            FactoryInfo(
                serial=serial,
                model={"camera": "CAM-100", "hub": "HUB-1"}.get(device_type, "LOCK-2"),
                device_type=device_type,
                capabilities=("ble",) if device_type == "lock" else ("wifi", "ble"),
                label_code=factory.code,
                ble_mac=ble_mac,
            ),
        )
        return folder

    return make
