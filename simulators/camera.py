"""Simulated Wi-Fi devices: the camera, and the Wi-Fi core it shares with the hub.

A :class:`WifiDevice` boots from its flash folder (``simulators.flash``),
serves protocomm over SoftAP HTTP and, given a ``VirtualBleLink``, over a
bumble GATT server, with security 2 (SRP password = label code, default) or
security 1 (PoP = label code). Its ``zn-bind`` handler stores the bind token
and broker in flash; a successful ``prov-config apply`` joins the simulated
Wi-Fi (``simulators.wifi_world``) and stores the network. Once it has both it
opens its MQTT session (``simulators.device_mqtt``), confirms the binding
with the token and stays online. It obeys the cloud's ``reset`` (wipe flash
back to factory state) and ``wifi`` (open the sealed credentials with the
device key, join, fall back to the old network on failure) commands.

Public API::

    camera = Camera(flash_dir, world, clock=clock, ble_link=link, broker=("127.0.0.1", port))
    async with camera:
        camera.http_url            # SoftAP base URL for HttpTransport
        camera.ble_address         # for BleTransport(..., backend=bleak_backend(central))
        camera.serial, camera.label_code, camera.flash
        await camera.wait_bound()  # raises BindRejected when the cloud said no
        camera.online              # MQTT session connected
        event_id = await camera.motion()      # or doorbell(); JPEG screenshot attached
        await camera.factory_reset()          # the button: tells the cloud, wipes flash

``broker`` overrides the address the app sent with ``zn-bind`` (the app may
name a public host while the simulator must use loopback); ``broker_ca_file``
is the CA the broker's server certificate chains to (default: the device
CA in flash). Neither label codes, tokens nor passphrases are logged.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Final, Literal, Self

from bumble.device import Device as BumbleDevice
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.mqtt.payloads import (
    BindResultPayload,
    CommandAckPayload,
    CommandPayload,
    EventPayload,
    ResetPayload,
)
from provisioning.clock import Clock, SystemClock
from provisioning.protocomm import (
    AccessPointInfo,
    BindRefused,
    BindRequest,
    Connection,
    JoinFailed,
    ProtocommHttpServer,
    ProvisioningDevice,
    Sec1Config,
    Sec2Config,
    SecurityConfig,
    WifiCredentials,
)
from provisioning.protocomm.ble import ESPRESSIF_SERVICE_UUID
from provisioning.protocomm.ble_server import ProtocommGattServer
from provisioning.protocomm.bumble_backend import VirtualBleLink
from provisioning.protocomm.proto import wifi_ctrl_pb2
from provisioning.security.errors import SealError
from provisioning.security.sealing import open_sealed
from simulators.device_mqtt import DeviceMqtt, SessionOptions, new_event_id
from simulators.flash import DeviceFlash, FlashError
from simulators.wifi_world import SimulatedStation, WifiWorld

_LOGGER = logging.getLogger(__name__)

RESET_COMMAND: Final = "reset"
WIFI_COMMAND: Final = "wifi"
MIN_TOKEN_LEN: Final = 8
MAX_TOKEN_LEN: Final = 128


class DeviceNotOnline(RuntimeError):
    """The device has no MQTT session right now (not provisioned, not bound, or reset)."""


class BindRejected(RuntimeError):
    """The cloud answered the device's bind confirmation with ``rejected``."""

    def __init__(self, reason: str | None) -> None:
        super().__init__(reason or "rejected")
        self.reason = reason


# --------------------------------------------------------------------------- screenshot


def tiny_jpeg(level: int = 128) -> bytes:
    """Return a valid 8x8 grey baseline JPEG of brightness ``level`` (0-255), built by hand."""
    level = max(0, min(255, level))
    dc = 8 * (level - 128)  # the FDCT's DC term of a flat block, quantised by 1
    category = abs(dc).bit_length()
    bits = format(category, "04b")  # DC table: symbols 0..11, all 4-bit codes, code = symbol
    if category:
        value = dc if dc > 0 else dc + (1 << category) - 1
        bits += format(value, f"0{category}b")
    bits += "0"  # AC table: a single 1-bit code, end of block
    bits += "1" * (-len(bits) % 8)  # pad with ones
    scan = bytearray()
    for i in range(0, len(bits), 8):
        byte = int(bits[i : i + 8], 2)
        scan.append(byte)
        if byte == 0xFF:
            scan.append(0x00)  # byte stuffing
    dc_table = bytes([0x00]) + bytes([0, 0, 0, 12] + [0] * 12) + bytes(range(12))
    ac_table = bytes([0x10]) + bytes([1] + [0] * 15) + bytes([0x00])

    def segment(marker: int, body: bytes) -> bytes:
        return bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2, "big") + body

    return b"".join(
        [
            b"\xff\xd8",
            segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"),
            segment(0xDB, b"\x00" + b"\x01" * 64),
            segment(0xC0, b"\x08\x00\x08\x00\x08\x01\x01\x11\x00"),
            segment(0xC4, dc_table),
            segment(0xC4, ac_table),
            segment(0xDA, b"\x01\x01\x00\x00\x3f\x00"),
            bytes(scan),
            b"\xff\xd9",
        ]
    )


# --------------------------------------------------------------------------- radio


class _Radio:
    """The device's station: a ``WifiStation`` that writes every successful join to flash."""

    def __init__(self, station: SimulatedStation, device: WifiDevice) -> None:
        self._station = station
        self._device = device

    @property
    def connection(self) -> Connection | None:
        return self._station.connection

    async def scan(self, *, passive: bool = False) -> Sequence[AccessPointInfo]:
        return await self._station.scan(passive=passive)

    async def connect(self, credentials: WifiCredentials) -> Connection:
        connection = await self._station.connect(credentials)
        self._device._joined(credentials)
        return connection

    async def disconnect(self) -> None:
        await self._station.disconnect()


def _parse_bssid(value: object) -> bytes:
    if value is None or value == "":
        return b""
    if not isinstance(value, str):
        raise ValueError("bssid")
    raw = bytes.fromhex(value.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError("bssid")
    return raw


# --------------------------------------------------------------------------- device


class WifiDevice:
    """A label-code Wi-Fi device: local provisioning, Wi-Fi, MQTT, binding, reset, Wi-Fi change."""

    device_type: ClassVar[str] = "device"

    def __init__(
        self,
        flash: DeviceFlash | Path,
        world: WifiWorld,
        *,
        clock: Clock | None = None,
        security: Literal["sec2", "sec1"] = "sec2",
        ble_link: VirtualBleLink | None = None,
        http_host: str = "127.0.0.1",
        broker: tuple[str, int] | None = None,
        broker_ca_file: Path | None = None,
        session_options: SessionOptions | None = None,
        bind_timeout_s: float = 30.0,
    ) -> None:
        self.flash = flash if isinstance(flash, DeviceFlash) else DeviceFlash.load(flash)
        code = self.flash.info.label_code
        if code is None:
            raise FlashError(f"{self.flash.serial} has no label code: it cannot run protocomm")
        self.clock = clock or SystemClock()
        self.world = world
        self._radio = _Radio(world.station(self.flash.serial), self)
        config: SecurityConfig = (
            Sec2Config.from_password(code) if security == "sec2" else Sec1Config(pop=code.encode())
        )
        self.provisioning = ProvisioningDevice(
            config, self._radio, bind_handler=self, device_type=self.device_type
        )
        self._ble_link = ble_link
        self._http = ProtocommHttpServer(self.provisioning.protocomm, host=http_host)
        self._broker_override = broker
        self._broker_ca_file = broker_ca_file
        self.session_options = session_options or SessionOptions()
        self.bind_timeout_s = bind_timeout_s
        self.ble_device: BumbleDevice | None = None
        self._session: DeviceMqtt | None = None
        self._wake = asyncio.Event()
        self._leaving = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._session_opened = asyncio.Event()
        self._bind_outcome = asyncio.Event()
        self.last_bind_result: BindResultPayload | None = None
        self._stack: contextlib.AsyncExitStack | None = None

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.provisioning)
            await stack.enter_async_context(self._http)
            if self._ble_link is not None:
                self.ble_device = await self._ble_link.add_peripheral(
                    f"ZN-{self.serial}",
                    address=self.flash.info.ble_mac,
                    service_uuid=ESPRESSIF_SERVICE_UUID,
                )
                ProtocommGattServer(self.provisioning.protocomm).attach(self.ble_device)
            group = await stack.enter_async_context(asyncio.TaskGroup())
            supervisor = group.create_task(self._supervise(), name=f"{self.serial}-supervisor")
            stack.callback(supervisor.cancel)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    # ------------------------------------------------------------------ what tests and apps see

    @property
    def serial(self) -> str:
        """Return the serial number."""
        return self.flash.serial

    @property
    def label_code(self) -> str | None:
        """Return the code printed on the label."""
        return self.flash.info.label_code

    @property
    def http_url(self) -> str:
        """Return the SoftAP provisioning base URL."""
        return self._http.url

    @property
    def ble_address(self) -> str:
        """Return the BLE address the provisioning service is served at."""
        if self.ble_device is None:
            raise RuntimeError("this device was started without a BLE link")
        return str(self.ble_device.random_address)

    @property
    def wifi_connection(self) -> Connection | None:
        """Return the current Wi-Fi association."""
        return self._radio.connection

    @property
    def online(self) -> bool:
        """Tell whether the MQTT session is connected."""
        return self._session is not None and self._session.connected

    @property
    def bound(self) -> bool:
        """Tell whether the cloud confirmed the binding (as stored in flash)."""
        return self.flash.state.bound

    @property
    def mqtt(self) -> DeviceMqtt | None:
        """Return the MQTT session while there is one."""
        return self._session

    async def wait_bound(self) -> None:
        """Wait for the cloud's ``bind/result``; raise :class:`BindRejected` when it refused."""
        while not self.flash.state.bound:
            await self._bind_outcome.wait()
            self._bind_outcome.clear()
            result = self.last_bind_result
            if result is not None and result.status == "rejected":
                raise BindRejected(result.reason)

    async def wait_online(self) -> None:
        """Wait until the MQTT session is connected."""
        while self._session is None:
            await self._session_opened.wait()
            self._session_opened.clear()
        await self._session.wait_connected()

    async def wait_idle(self) -> None:
        """Wait until the device has no MQTT session (after a reset)."""
        await self._idle.wait()

    # ------------------------------------------------------------------ BindHandler

    def signing_key(self) -> ec.EllipticCurvePrivateKey | None:
        """Return None: the label code authenticated this session."""
        return None

    async def accept_bind(self, request: BindRequest) -> None:
        """Keep the bind token and broker for the MQTT confirmation."""
        if self.flash.state.bound:
            raise BindRefused("already bound")
        try:
            token = request.token.decode("ascii")
        except UnicodeDecodeError:
            raise BindRefused("token is not text") from None
        if not MIN_TOKEN_LEN <= len(token) <= MAX_TOKEN_LEN:
            raise BindRefused("token length")
        state = self.flash.state
        state.bind_token = token
        state.broker_host, state.broker_port = request.broker_host, request.broker_port
        self.flash.save()
        self.last_bind_result = None
        self._wake.set()

    # ------------------------------------------------------------------ supervisor

    def _joined(self, credentials: WifiCredentials) -> None:
        self.flash.state.wifi = credentials
        self.flash.save()
        self._wake.set()

    def _broker_address(self) -> tuple[str, int] | None:
        if self._broker_override is not None:
            return self._broker_override
        state = self.flash.state
        if state.broker_host is None or state.broker_port is None:
            return None
        return state.broker_host, state.broker_port

    async def _supervise(self) -> None:
        saved = self.flash.state.wifi
        if saved is not None:
            try:
                await self._radio.connect(saved)  # boot: rejoin the stored network
            except JoinFailed as err:
                _LOGGER.warning("%s: stored network unavailable: %s", self.serial, err.reason.value)
        self._wake.set()
        while True:
            await self._wake.wait()
            self._wake.clear()
            broker = self._broker_address()
            if broker is None or self._radio.connection is None or self._leaving:
                self._leaving = False
                continue
            if not (self.flash.state.bound or self.flash.state.bind_token):
                continue
            await self._run_session(*broker)

    async def _run_session(self, host: str, port: int) -> None:
        session = DeviceMqtt(
            self.serial,
            host,
            port,
            self.flash.tls_context(self._broker_ca_file),
            firmware=self.flash.info.firmware_version,
            network="wifi",
            on_command=self._on_command,
            options=self.session_options,
        )
        self._idle.clear()
        try:
            async with session, self._while_online(session):
                self._session = session
                self._session_opened.set()
                while not self._leaving:
                    if self.flash.state.bind_token is not None:
                        await self._confirm(session)
                    await self._wake.wait()
                    self._wake.clear()
        finally:
            self._session = None
            self._leaving = False
            self._idle.set()

    @contextlib.asynccontextmanager
    async def _while_online(self, session: DeviceMqtt) -> AsyncIterator[None]:
        """Run something for as long as the session lasts (the hub's BLE agent)."""
        yield

    async def _confirm(self, session: DeviceMqtt) -> None:
        token = self.flash.state.bind_token
        if token is None:
            return
        try:
            async with asyncio.timeout(self.bind_timeout_s):
                await session.wait_connected()
                result = await session.confirm_binding(token)
        except TimeoutError:
            _LOGGER.warning("%s: no bind result yet; will retry", self.serial)
            self._wake.set()
            return
        state = self.flash.state
        state.bind_token = None  # single use either way
        state.bound = result.status == "bound"
        self.flash.save()
        self.last_bind_result = result
        self._bind_outcome.set()
        _LOGGER.info("%s: bind %s", self.serial, result.status)

    # ------------------------------------------------------------------ commands

    async def _on_command(
        self, command: CommandPayload, child: str | None
    ) -> CommandAckPayload | None:
        if child is not None:
            return await self._child_command(command, child)
        if command.name == RESET_COMMAND:
            await self._remote_reset(command)
            return None  # acknowledged before the wipe
        if command.name == WIFI_COMMAND:
            return await self._change_wifi(command)
        return await self._device_command(command)

    async def _device_command(self, command: CommandPayload) -> CommandAckPayload | None:
        """Handle a command this kind of device adds (the base knows none)."""
        return CommandAckPayload(id=command.id, ok=False, error="unknown_command")

    async def _child_command(self, command: CommandPayload, child: str) -> CommandAckPayload | None:
        """Handle a command for a BLE child (only hubs have children)."""
        return CommandAckPayload(id=command.id, ok=False, error="unknown_child")

    async def _remote_reset(self, command: CommandPayload) -> None:
        session = self._session
        if session is not None:
            await session.publish_ack(CommandAckPayload(id=command.id, ok=True))
        _LOGGER.info("%s: reset by the cloud", self.serial)
        await self._wipe()

    async def _change_wifi(self, command: CommandPayload) -> CommandAckPayload:
        sealed = command.args.get("sealed")
        if not isinstance(sealed, str):
            return CommandAckPayload(id=command.id, ok=False, error="invalid_args")
        try:
            plaintext = open_sealed(
                self.flash.private_key(), sealed, serial=self.serial, command_id=command.id
            )
        except SealError:
            return CommandAckPayload(id=command.id, ok=False, error="unseal_failed")
        try:
            document = json.loads(plaintext)
            credentials = WifiCredentials(
                ssid=document["ssid"].encode(),
                passphrase=document["passphrase"].encode(),
                bssid=_parse_bssid(document.get("bssid")),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return CommandAckPayload(id=command.id, ok=False, error="invalid_args")
        finally:
            del plaintext
        previous = self.flash.state.wifi
        try:
            await self._radio.connect(credentials)
        except JoinFailed as err:
            _LOGGER.info("%s: new network refused: %s", self.serial, err.reason.value)
            if previous is not None:
                with contextlib.suppress(JoinFailed):
                    await self._radio.connect(previous)
            return CommandAckPayload(
                id=command.id, ok=False, error=f"wifi_{err.reason.name}".lower()
            )
        _LOGGER.info("%s: joined the new network %r", self.serial, credentials.ssid)
        return CommandAckPayload(id=command.id, ok=True)

    # ------------------------------------------------------------------ reset

    async def _wipe(self) -> None:
        self.flash.factory_reset()
        # The same path as a prov-ctrl reset: forget the config, leave the network.
        reset = wifi_ctrl_pb2.WiFiCtrlPayload(msg=wifi_ctrl_pb2.TypeCmdCtrlReset)
        reset.cmd_ctrl_reset.SetInParent()
        await self.provisioning.wifi.handle_ctrl(0, reset.SerializeToString())
        await self._radio.disconnect()
        self.last_bind_result = None
        self._leaving = True
        self._wake.set()

    async def factory_reset(self) -> None:
        """Press the reset button: tell the cloud if online, wipe flash, drop Wi-Fi and MQTT."""
        session = self._session
        if session is not None and session.connected:
            try:
                async with asyncio.timeout(self.session_options.publish_timeout_s):
                    await session.publish_reset(ResetPayload(ts=self.clock.now()))
            except TimeoutError:
                _LOGGER.warning("%s: reset not reported to the cloud", self.serial)
        await self._wipe()
        await self._idle.wait()

    # ------------------------------------------------------------------ events

    def _require_session(self) -> DeviceMqtt:
        session = self._session
        if session is None or not self.flash.state.bound:
            raise DeviceNotOnline(self.serial)
        return session

    async def publish_event(
        self, event_type: str, *, result: str | None = None, screenshot: bytes | None = None
    ) -> str:
        """Publish an event (returns its id once the broker has it)."""
        session = self._require_session()
        event = EventPayload(
            id=new_event_id(),
            type=event_type,
            ts=self.clock.now(),
            result=result,
            screenshot=None if screenshot is None else base64.b64encode(screenshot).decode(),
        )
        await session.publish_event(event)
        return event.id


class Camera(WifiDevice):
    """A Wi-Fi security camera: motion and doorbell events with a JPEG screenshot."""

    device_type: ClassVar[str] = "camera"

    async def motion(self) -> str:
        """Report that someone appears; return the event id."""
        return await self.publish_event("motion", screenshot=tiny_jpeg(96))

    async def doorbell(self) -> str:
        """Report a doorbell press; return the event id."""
        return await self.publish_event("doorbell", screenshot=tiny_jpeg(160))


__all__ = [
    "RESET_COMMAND",
    "WIFI_COMMAND",
    "BindRejected",
    "Camera",
    "DeviceNotOnline",
    "WifiDevice",
    "tiny_jpeg",
]
