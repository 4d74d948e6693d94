"""A simulated smart lock: BLE only, no label code, fingerprints that never leave it.

The lock is a bumble peripheral on a ``VirtualBleLink``. It serves protocomm
(security 1 without PoP: it has no printed code) and the hub link service
(``gateway.ble.link``), but it *advertises* the provisioning service only in
pairing mode, which :meth:`Lock.press_button` opens for ``pairing_window``
(three minutes by default) on the lock's clock. The window closes when the
clock passes its end (checked every ``poll_s`` seconds and on every
``zn-bind``), or when a hub pairs it. Its ``zn-bind`` answer carries a proof
signed with the device key. Once paired it advertises the link service so its
hub can reconnect, indicates events / acks / resets to the hub and takes
commands (``reset``) from it.

Fingerprint templates are enrolled into the lock's flash and compared on the
lock; only the outcome travels, as an ``unlock`` event with result ``match``
or ``no_match``.

Public API::

    lock = Lock(flash_dir, link, clock=clock)
    async with lock:
        lock.ble_address, lock.serial, lock.paired
        await lock.press_button()          # opens pairing mode
        lock.pairing_open                  # False once the window passed
        lock.enroll_fingerprint(template)  # stays in flash
        matched = await lock.touch(sample) # queues an unlock event for the hub
        await lock.factory_reset()         # the button held: reset frame, wipe flash
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Literal, Self

from bumble import att, core, gatt
from bumble.device import AdvertisingSet, Connection
from bumble.device import Device as BumbleDevice
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.ble.link import (
    DOWNLINK_UUID,
    LINK_SERVICE_UUID,
    UPLINK_UUID,
    LinkFrameError,
    UplinkFrame,
    decode_downlink,
    encode_frame,
)
from gateway.mqtt.payloads import CommandAckPayload, EventPayload, ResetPayload
from provisioning.clock import Clock, SystemClock
from provisioning.protocomm import (
    AccessPointInfo,
    BindRefused,
    BindRequest,
    FailReason,
    JoinFailed,
    ProvisioningDevice,
    Sec1Config,
    WifiCredentials,
)
from provisioning.protocomm import Connection as WifiConnection
from provisioning.protocomm.ble import ESPRESSIF_SERVICE_UUID
from provisioning.protocomm.ble_server import ProtocommGattServer
from provisioning.protocomm.bumble_backend import VirtualBleLink
from simulators.device_mqtt import new_event_id
from simulators.flash import DeviceFlash

_LOGGER = logging.getLogger(__name__)

PAIRING_WINDOW: Final = dt.timedelta(minutes=3)
MAX_UPLINK_FRAMES: Final = 32
# A sample matches a template when at most this share of their bits differ.
MATCH_TOLERANCE: Final = 0.1
_ATT_REQUEST_REFUSED: Final = 0x0E


class _NoWifi:
    """A lock has no Wi-Fi radio: scans are empty and joins find no network."""

    async def scan(self, *, passive: bool = False) -> Sequence[AccessPointInfo]:
        return ()

    async def connect(self, credentials: WifiCredentials) -> WifiConnection:
        raise JoinFailed(FailReason.NETWORK_NOT_FOUND)

    async def disconnect(self) -> None:
        return None


def _matches(sample: bytes, template: bytes) -> bool:
    if len(sample) != len(template) or not template:
        return False
    differing = sum((a ^ b).bit_count() for a, b in zip(sample, template, strict=True))
    return differing <= MATCH_TOLERANCE * 8 * len(template)


class Lock:
    """A code-less BLE lock paired through a hub; ``async with`` powers it on."""

    device_type: Final = "lock"

    def __init__(
        self,
        flash: DeviceFlash | Path,
        link: VirtualBleLink,
        *,
        clock: Clock | None = None,
        pairing_window: dt.timedelta = PAIRING_WINDOW,
        poll_s: float = 0.5,
    ) -> None:
        self.flash = flash if isinstance(flash, DeviceFlash) else DeviceFlash.load(flash)
        self.clock = clock or SystemClock()
        self.pairing_window = pairing_window
        self._poll_s = poll_s
        self._link = link
        self.provisioning = ProvisioningDevice(
            Sec1Config(pop=None), _NoWifi(), bind_handler=self, device_type=self.device_type
        )
        self._uplink: gatt.Characteristic[bytes] = gatt.Characteristic(
            UPLINK_UUID,
            gatt.Characteristic.Properties.READ | gatt.Characteristic.Properties.INDICATE,
            gatt.Characteristic.READABLE,
            gatt.CharacteristicValue(read=lambda _connection: b""),
        )
        self._downlink: gatt.Characteristic[bytes] = gatt.Characteristic(
            DOWNLINK_UUID,
            gatt.Characteristic.Properties.WRITE,
            gatt.Characteristic.WRITEABLE,
            gatt.CharacteristicValue(write=self._on_downlink),
        )
        self.ble_device: BumbleDevice | None = None
        self._advertising: AdvertisingSet | None = None
        self._mode: Literal["pairing", "link"] | None = None
        self._window_end: dt.datetime | None = None
        self._frames: collections.deque[bytes] = collections.deque()
        self.dropped_frames = 0
        self._subscriber: Connection | None = None
        self._uplink_wake = asyncio.Event()
        self._mode_lock = asyncio.Lock()
        self._stack: contextlib.AsyncExitStack | None = None

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.provisioning)
            device = await self._link.add_peripheral(
                f"ZN-{self.serial}", address=self.flash.info.ble_mac
            )
            await device.stop_advertising()  # silent until paired or in pairing mode
            self.ble_device = device
            ProtocommGattServer(self.provisioning.protocomm).attach(device)
            device.add_service(gatt.Service(LINK_SERVICE_UUID, [self._uplink, self._downlink]))
            self._uplink.on(self._uplink.EVENT_SUBSCRIPTION, self._on_subscription)
            device.on(device.EVENT_CONNECTION, self._on_connection)
            await self._apply_mode()
            group = await stack.enter_async_context(asyncio.TaskGroup())
            tasks = [
                group.create_task(self._watch_window(), name=f"{self.serial}-window"),
                group.create_task(self._send_uplink(), name=f"{self.serial}-uplink"),
            ]
            stack.callback(lambda: [task.cancel() for task in tasks])
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

    # ------------------------------------------------------------------ what tests and hubs see

    @property
    def serial(self) -> str:
        """Return the serial number."""
        return self.flash.serial

    @property
    def ble_address(self) -> str:
        """Return the lock's BLE address."""
        if self.ble_device is None:
            raise RuntimeError("the lock is not powered on")
        return str(self.ble_device.random_address)

    @property
    def paired(self) -> bool:
        """Tell whether a hub paired this lock (kept in flash)."""
        return self.flash.state.bound

    @property
    def pairing_open(self) -> bool:
        """Tell whether the pairing window is open right now (by the lock's clock)."""
        return self._window_end is not None and self.clock.now() < self._window_end

    @property
    def advertising(self) -> Literal["pairing", "link"] | None:
        """Return what the lock advertises: the provisioning service, the link, or nothing."""
        return self._mode

    @property
    def hub_connected(self) -> bool:
        """Tell whether a hub listens to the lock's uplink."""
        return self._subscriber is not None

    # ------------------------------------------------------------------ pairing mode

    async def press_button(self) -> None:
        """Open pairing mode for ``pairing_window``."""
        self._window_end = self.clock.now() + self.pairing_window
        _LOGGER.info("%s: pairing mode until %s", self.serial, self._window_end.isoformat())
        await self._apply_mode()

    async def check_pairing_window(self) -> None:
        """Close pairing mode when the clock has passed the window's end."""
        if self._window_end is not None and not self.pairing_open:
            self._window_end = None
            _LOGGER.info("%s: pairing window closed", self.serial)
            await self._apply_mode()

    async def _watch_window(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            await self.check_pairing_window()

    async def _apply_mode(self) -> None:
        wanted: Literal["pairing", "link"] | None
        if self._window_end is not None:
            wanted = "pairing"
        elif self.flash.state.bound:
            wanted = "link"
        else:
            wanted = None
        async with self._mode_lock:
            if wanted == self._mode or self.ble_device is None:
                return
            if self._advertising is not None:
                with contextlib.suppress(core.BaseBumbleError):
                    await self._advertising.stop()
                    await self._advertising.remove()
                self._advertising = None
            if wanted is not None:
                uuid = ESPRESSIF_SERVICE_UUID if wanted == "pairing" else LINK_SERVICE_UUID
                self._advertising = await self._link.advertise(
                    self.ble_device, f"ZN-{self.serial}", uuid
                )
            self._mode = wanted

    # ------------------------------------------------------------------ BindHandler

    def signing_key(self) -> ec.EllipticCurvePrivateKey:
        """Return the device key: the lock proves itself with a signature."""
        return self.flash.private_key()

    async def accept_bind(self, request: BindRequest) -> None:
        """Accept a pairing token only while the pairing window is open."""
        if not self.pairing_open:
            raise BindRefused("not in pairing mode")
        self.flash.state.bound = True
        self.flash.save()
        self._window_end = None
        await self._apply_mode()
        _LOGGER.info("%s: paired through a hub", self.serial)

    # ------------------------------------------------------------------ uplink (lock → hub)

    def _queue(self, frame: UplinkFrame) -> None:
        if len(self._frames) >= MAX_UPLINK_FRAMES:
            self._frames.popleft()  # keep the newest: an old unlock result is worth less
            self.dropped_frames += 1
        self._frames.append(encode_frame(frame))
        self._uplink_wake.set()

    def _on_connection(self, connection: Connection) -> None:
        def gone(*_: object) -> None:
            if self._subscriber is connection:
                self._subscriber = None

        connection.on(connection.EVENT_DISCONNECTION, gone)

    def _on_subscription(self, connection: Connection, _notify: bool, indicate: bool) -> None:
        if indicate:
            self._subscriber = connection
            self._uplink_wake.set()
        elif self._subscriber is connection:
            self._subscriber = None

    async def _send_uplink(self) -> None:
        device = self.ble_device
        assert device is not None  # set before the task starts
        while True:
            while not (self._frames and self._subscriber is not None):
                await self._uplink_wake.wait()
                self._uplink_wake.clear()
            connection = self._subscriber
            if connection is None:
                continue
            try:
                # Returns after the hub's stack confirmed the indication.
                await device.indicate_subscriber(connection, self._uplink, self._frames[0])
            except (TimeoutError, core.BaseBumbleError) as err:
                _LOGGER.info("%s: uplink indication failed: %s", self.serial, type(err).__name__)
                if self._subscriber is connection:
                    self._subscriber = None
                continue
            if self._subscriber is connection and self._frames:
                self._frames.popleft()

    # ------------------------------------------------------------------ downlink (hub → lock)

    async def _on_downlink(self, _connection: Connection, value: bytes) -> None:
        try:
            command = decode_downlink(bytes(value))
        except LinkFrameError as err:
            raise att.ATT_Error(error_code=_ATT_REQUEST_REFUSED) from err
        _LOGGER.info("%s: command %s", self.serial, command.name)
        if command.name == "reset":
            self._queue(UplinkFrame(ack=CommandAckPayload(id=command.id, ok=True)))
            await self._wipe()
            return
        self._queue(
            UplinkFrame(ack=CommandAckPayload(id=command.id, ok=False, error="unknown_command"))
        )

    # ------------------------------------------------------------------ fingerprints

    def enroll_fingerprint(self, template: bytes) -> None:
        """Store a fingerprint template in the lock's flash (it never leaves the lock)."""
        self.flash.state.fingerprints.append(bytes(template))
        self.flash.save()

    async def touch(self, sample: bytes) -> bool:
        """Check a finger on the sensor locally; report only the outcome to the hub."""
        matched = any(_matches(sample, t) for t in self.flash.state.fingerprints)
        if self.flash.state.bound:
            event = EventPayload(
                id=new_event_id(),
                type="unlock",
                ts=self.clock.now(),
                result="match" if matched else "no_match",
            )
            self._queue(UplinkFrame(event=event))
        return matched

    # ------------------------------------------------------------------ reset

    async def _wipe(self) -> None:
        self.flash.factory_reset()
        self._window_end = None
        await self._apply_mode()

    async def factory_reset(self) -> None:
        """Hold the button: tell the hub (if it listens), wipe flash, stop advertising."""
        if self.flash.state.bound:
            self._queue(UplinkFrame(reset=ResetPayload(ts=self.clock.now())))
        await self._wipe()


__all__ = ["PAIRING_WINDOW", "Lock"]
