"""The BLE hub agent: pairs code-less BLE children (locks) and relays their traffic over MQTT.

Runs on a Raspberry-Pi-class hub next to its locks. The hub's own MQTT
session is passed in as a :class:`HubUplink` (the hub firmware owns the
broker connection; ``simulators.device_mqtt.DeviceMqtt`` implements it). The
radio is bleak, with its backends as parameters: ``None`` picks the
platform's (BlueZ on the box); tests pass the bumble-backed backends from
``provisioning.protocomm.bumble_backend``.

Pairing (command :data:`BLE_PAIR_COMMAND`, args ``{"token": …, "ble_address": …?}``):
scan for the provisioning service (a lock advertises it only in pairing
mode), open a protocomm session over GATT (security 1 without PoP — the
lock proves itself with its device key, not a shared secret), send the
pairing token with ``zn-bind``, publish the lock's signed proof on
``zn/v1/{hub}/sub/{lock}/bind`` and wait for ``bind/result``. The command
is acknowledged with the outcome (``error`` is a stable reason such as
``lock_not_found``, ``lock_refused``, ``bind_rejected``).

Relay: for every paired child one owned task keeps a GATT connection to
the lock's link service (``gateway.ble.link``), publishes the child's
state (online while the link is up), events, acks and resets on
``zn/v1/{hub}/sub/{child}/…`` and writes the cloud's commands to the lock.
When the link drops it reconnects with capped, jittered backoff. Tokens
are never logged.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import dataclasses
import logging
import random
from collections.abc import Callable, Coroutine, Iterable
from types import TracebackType
from typing import Any, Final, Protocol, Self

from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import BleakError

from gateway.ble.link import (
    DOWNLINK_UUID,
    UPLINK_UUID,
    LinkFrameError,
    decode_uplink,
    encode_frame,
)
from gateway.mqtt.payloads import (
    BindProofPayload,
    BindResultPayload,
    CommandAckPayload,
    CommandPayload,
    EventPayload,
    ResetPayload,
    StatePayload,
)
from provisioning.protocomm import (
    BindFailed,
    BleTransport,
    Credentials,
    ProtocommError,
    ProvisioningClient,
    TransportError,
)
from provisioning.protocomm.bind import BindResult
from provisioning.protocomm.ble import ESPRESSIF_SERVICE_UUID
from provisioning.protocomm.endpoints import CAP_NO_POP

_LOGGER = logging.getLogger(__name__)

BLE_PAIR_COMMAND: Final = "ble_pair"
CHILD_RESET_COMMAND: Final = "reset"
MAX_PENDING_PAIRINGS: Final = 4
MAX_UPLINK_BACKLOG: Final = 64
OFFLINE_REPORT_TIMEOUT_S: Final = 2.0


class HubUplink(Protocol):
    """The hub's MQTT session, as the agent needs it (``child`` = relay for that serial)."""

    async def add_child(self, serial: str) -> None:
        """Start listening to the child's ``cmd`` and ``bind/result`` topics."""
        ...

    async def remove_child(self, serial: str) -> None:
        """Stop listening for the child."""
        ...

    async def confirm_binding(
        self, token: str, *, proof: BindProofPayload | None = None, child: str | None = None
    ) -> BindResultPayload:
        """Publish a bind confirmation and return the cloud's ``bind/result``."""
        ...

    async def publish_state(self, state: StatePayload, *, child: str | None = None) -> None:
        """Publish a (retained) state."""
        ...

    async def publish_event(self, event: EventPayload, *, child: str | None = None) -> None:
        """Publish an event."""
        ...

    async def publish_reset(self, reset: ResetPayload, *, child: str | None = None) -> None:
        """Publish a factory reset."""
        ...

    async def publish_ack(self, ack: CommandAckPayload, *, child: str | None = None) -> None:
        """Publish a command acknowledgement."""
        ...


class PairingFailed(Exception):
    """Pairing a child did not work; ``reason`` is the stable ``cmd/ack`` error."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True, slots=True)
class PairedChild:
    """A child the hub relays for."""

    serial: str
    ble_address: str


@dataclasses.dataclass(frozen=True, slots=True)
class AgentOptions:
    """Timeouts and backoff of the agent (defaults suit a real radio)."""

    scan_timeout_s: float = 15.0
    connect_timeout_s: float = 10.0
    bind_timeout_s: float = 30.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0


@dataclasses.dataclass(frozen=True, slots=True)
class _PairRequest:
    command_id: str
    token: str = dataclasses.field(repr=False)
    ble_address: str | None


class _Link:
    """One live GATT connection to a child: its downlink and a bounded uplink backlog."""

    def __init__(self, client: BleakClient, downlink: BleakGATTCharacteristic) -> None:
        self.client = client
        self.downlink = downlink
        self.frames: collections.deque[bytes] = collections.deque()
        self.wake = asyncio.Event()
        self.closed = False
        self.dropped = 0

    def on_uplink(self, _characteristic: BleakGATTCharacteristic, data: bytearray) -> None:
        if len(self.frames) >= MAX_UPLINK_BACKLOG:
            # The lock indicates one frame at a time; a backlog this long means MQTT is
            # stuck. Drop the newest and count it rather than grow without bound.
            self.dropped += 1
            return
        self.frames.append(bytes(data))
        self.wake.set()

    def on_disconnect(self, _client: BleakClient) -> None:
        self.closed = True
        self.wake.set()


class BleHubAgent:
    """Pairs BLE children on ``ble_pair`` commands and relays their traffic; ``async with``."""

    def __init__(
        self,
        hub_serial: str,
        uplink: HubUplink,
        *,
        broker_host: str,
        broker_port: int,
        client_backend: type[BaseBleakClient] | None = None,
        scanner_backend: type[BaseBleakScanner] | None = None,
        children: Iterable[PairedChild] = (),
        on_children_changed: Callable[[tuple[PairedChild, ...]], None] | None = None,
        options: AgentOptions | None = None,
    ) -> None:
        self.hub_serial = hub_serial
        self._uplink = uplink
        self._broker = (broker_host, broker_port)
        self._client_backend = client_backend
        self._scanner_backend = scanner_backend
        self._children = {child.serial: child for child in children}
        self._on_children_changed = on_children_changed
        self.options = options or AgentOptions()
        self._pairings: asyncio.Queue[_PairRequest] = asyncio.Queue(MAX_PENDING_PAIRINGS)
        self._links: dict[str, _Link] = {}
        self._relays: dict[str, asyncio.Task[None]] = {}
        self._group: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._link_up: dict[str, asyncio.Event] = {}
        self._resets: dict[str, str] = {}  # child -> id of the reset command it was sent

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        group = asyncio.TaskGroup()
        await group.__aenter__()
        self._group = group
        self._spawn(self._pairing_worker(), name=f"ble-agent-{self.hub_serial}-pair")
        for child in self._children.values():
            await self._uplink.add_child(child.serial)
            self._start_relay(child)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        group, self._group = self._group, None
        if group is None:
            return
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        await group.__aexit__(None, None, None)
        self._relays.clear()
        self._links.clear()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        if self._group is None:
            coro.close()
            raise RuntimeError("the agent is not running; use it with async with")
        task = self._group.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _still_wanted(self) -> None:
        """Raise CancelledError once the agent is closing, whatever a backend did with ours.

        bumble's connect can complete although the task was cancelled meanwhile, and an
        error from a disconnect during cleanup replaces the CancelledError; either way
        ``__aexit__`` waits for the task to end, so the shutdown must win. (A flag, not
        ``Task.cancelling()``: Python 3.11's TaskGroup can leave that count raised.)
        """
        if self._closing:
            raise asyncio.CancelledError

    # ------------------------------------------------------------------ state

    @property
    def children(self) -> tuple[PairedChild, ...]:
        """Return the children this hub relays for."""
        return tuple(self._children.values())

    def link_connected(self, serial: str) -> bool:
        """Tell whether the GATT link to ``serial`` is up."""
        link = self._links.get(serial)
        return link is not None and not link.closed

    async def wait_link(self, serial: str) -> None:
        """Wait until the GATT link to ``serial`` is up (bound the wait with a timeout)."""
        await self._link_up.setdefault(serial, asyncio.Event()).wait()

    # ------------------------------------------------------------------ commands

    async def handle_command(
        self, command: CommandPayload, child: str | None
    ) -> CommandAckPayload | None:
        """Take a hub ``ble_pair`` or a child's command; return its ack (None: it comes later)."""
        if child is None:
            if command.name != BLE_PAIR_COMMAND:
                return CommandAckPayload(id=command.id, ok=False, error="unknown_command")
            token = command.args.get("token")
            address = command.args.get("ble_address")
            if not isinstance(token, str) or not token or not isinstance(address, str | None):
                return CommandAckPayload(id=command.id, ok=False, error="invalid_args")
            try:
                self._pairings.put_nowait(_PairRequest(command.id, token, address))
            except asyncio.QueueFull:
                return CommandAckPayload(id=command.id, ok=False, error="busy")
            return None
        return await self._forward(command, child)

    async def _forward(self, command: CommandPayload, child: str) -> CommandAckPayload | None:
        link = self._links.get(child)
        if child not in self._children:
            return CommandAckPayload(id=command.id, ok=False, error="unknown_child")
        if link is None or link.closed:
            return CommandAckPayload(id=command.id, ok=False, error="child_offline")
        try:
            await link.client.write_gatt_char(link.downlink, encode_frame(command), response=True)
        except (BleakError, LinkFrameError, TimeoutError) as err:
            _LOGGER.warning("Command %s to %s not delivered: %s", command.name, child, err)
            return CommandAckPayload(id=command.id, ok=False, error="child_unreachable")
        if command.name == CHILD_RESET_COMMAND:
            self._resets[child] = command.id
        return None  # the child acknowledges over the link

    # ------------------------------------------------------------------ pairing

    async def _pairing_worker(self) -> None:
        while True:
            request = await self._pairings.get()
            try:
                child = await self.pair(request.token, request.ble_address)
            except PairingFailed as err:
                _LOGGER.warning("BLE pairing failed: %s", err.reason)
                ack = CommandAckPayload(id=request.command_id, ok=False, error=err.reason)
            except Exception:
                # A radio stack fault must not end the agent: the cloud hears, the next pair runs.
                _LOGGER.exception("BLE pairing crashed")
                ack = CommandAckPayload(id=request.command_id, ok=False, error="hub_error")
            else:
                _LOGGER.info("BLE child %s paired at %s", child.serial, child.ble_address)
                ack = CommandAckPayload(id=request.command_id, ok=True)
            self._still_wanted()
            await self._uplink.publish_ack(ack)

    async def pair(self, token: str, ble_address: str | None = None) -> PairedChild:
        """Pair the lock in pairing mode (at ``ble_address`` if given) or raise PairingFailed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.scan_timeout_s
        skipped: set[str] = set()
        while True:
            device = await self._find_in_pairing_mode(ble_address, skipped, deadline - loop.time())
            result = await self._bind_over_gatt(device, token)
            if result is not None:
                break
            # A camera or hub being set up advertises the same service; it needs a code.
            if ble_address is not None:
                raise PairingFailed("not_codeless")
            skipped.add(device.address.upper())
        if result.signature is None:
            raise PairingFailed("no_proof")
        proof = BindProofPayload(
            nonce=base64.b64encode(result.device_nonce).decode(),
            signature=base64.b64encode(result.signature).decode(),
        )
        await self._uplink.add_child(result.serial)
        try:
            async with asyncio.timeout(self.options.bind_timeout_s):
                outcome = await self._uplink.confirm_binding(
                    token, proof=proof, child=result.serial
                )
        except TimeoutError:
            await self._drop_unpaired(result.serial)
            raise PairingFailed("bind_timeout") from None
        if outcome.status != "bound":
            await self._drop_unpaired(result.serial)
            raise PairingFailed("bind_rejected")
        child = PairedChild(result.serial, device.address)
        self._children[child.serial] = child
        self._children_changed()
        self._start_relay(child)
        return child

    async def _bind_over_gatt(self, device: BLEDevice, token: str) -> BindResult | None:
        """Send the token with ``zn-bind``; None when the device is not a code-less one."""
        try:
            async with BleTransport(
                device, backend=self._client_backend, timeout=self.options.connect_timeout_s
            ) as transport:
                client = ProvisioningClient(transport)
                version = await client.get_version()
                if version.sec_ver != 0 and not (
                    version.sec_ver == 1 and CAP_NO_POP in version.capabilities
                ):
                    return None
                await client.establish_session(Credentials())
                return await client.bind(token.encode(), *self._broker)
        except BindFailed as err:
            raise PairingFailed("lock_refused") from err
        except TransportError as err:
            raise PairingFailed("ble_error") from err
        except ProtocommError as err:
            raise PairingFailed("protocol_error") from err

    async def _drop_unpaired(self, serial: str) -> None:
        if serial not in self._children:
            await self._uplink.remove_child(serial)

    async def _find_in_pairing_mode(
        self, ble_address: str | None, skipped: set[str], within: float
    ) -> BLEDevice:
        wanted = ble_address.upper() if ble_address else None

        def matches(device: BLEDevice, _adv: AdvertisementData) -> bool:
            address = device.address.upper()
            return address not in skipped and (wanted is None or address == wanted)

        found: asyncio.Future[BLEDevice] = asyncio.get_running_loop().create_future()

        def seen(device: BLEDevice, _adv: AdvertisementData) -> None:
            if matches(device, _adv) and not found.done():
                found.set_result(device)

        scanner = BleakScanner(
            seen, service_uuids=[ESPRESSIF_SERVICE_UUID], backend=self._scanner_backend
        )
        device: BLEDevice | None = None
        if within <= 0:
            raise PairingFailed("lock_not_found")
        try:
            async with scanner, asyncio.timeout(within):
                device = await found
        except TimeoutError:
            device = None
        except BleakError as err:
            raise PairingFailed("ble_error") from err
        if device is None:
            raise PairingFailed("lock_not_found")
        return device

    def _children_changed(self) -> None:
        if self._on_children_changed is not None:
            self._on_children_changed(self.children)

    # ------------------------------------------------------------------ relay

    def _start_relay(self, child: PairedChild) -> None:
        old = self._relays.get(child.serial)
        if old is not None and not old.done():
            return
        self._relays[child.serial] = self._spawn(
            self._relay(child), name=f"ble-agent-{self.hub_serial}-relay-{child.serial}"
        )

    async def _relay(self, child: PairedChild) -> None:
        backoff = self.options.backoff_initial_s
        while child.serial in self._children:
            try:
                await self._relay_once(child)
                backoff = self.options.backoff_initial_s
            except (BleakError, TimeoutError, OSError) as err:
                _LOGGER.info("BLE link to %s failed: %s", child.serial, type(err).__name__)
            except Exception:
                # Backends may leak their own errors (BlueZ D-Bus, bumble ATT); one bad link
                # must not take the other children down, so log it and retry with backoff.
                _LOGGER.exception("BLE link to %s crashed", child.serial)
            self._still_wanted()
            if child.serial not in self._children:
                return
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, self.options.backoff_max_s)

    async def _relay_once(self, child: PairedChild) -> None:
        link: _Link | None = None

        def disconnected(client: BleakClient) -> None:
            if link is not None:
                link.on_disconnect(client)

        client = BleakClient(
            child.ble_address,
            disconnected_callback=disconnected,
            timeout=self.options.connect_timeout_s,
            backend=self._client_backend,
        )
        async with client:
            self._still_wanted()  # a backend may finish a connect it was told to abandon
            uplink = client.services.get_characteristic(UPLINK_UUID)
            downlink = client.services.get_characteristic(DOWNLINK_UUID)
            if uplink is None or downlink is None:
                raise BleakError("the child does not offer the link service")
            link = _Link(client, downlink)
            await client.start_notify(uplink, link.on_uplink)
            self._still_wanted()
            self._links[child.serial] = link
            self._link_up.setdefault(child.serial, asyncio.Event()).set()
            try:
                await self._uplink.publish_state(
                    StatePayload(online=True, network="ble"), child=child.serial
                )
                _LOGGER.info("BLE link to %s up", child.serial)
                await self._pump(child, link)
            finally:
                self._links.pop(child.serial, None)
                self._link_up.pop(child.serial, None)
                if child.serial in self._children:
                    await self._report_offline(child)

    async def _report_offline(self, child: PairedChild) -> None:
        # Also runs while the agent shuts down: a hub that lost its broker must not hang here.
        try:
            async with asyncio.timeout(OFFLINE_REPORT_TIMEOUT_S):
                await self._uplink.publish_state(StatePayload(online=False), child=child.serial)
        except TimeoutError:
            _LOGGER.info("BLE child %s: offline state not published", child.serial)

    async def _pump(self, child: PairedChild, link: _Link) -> None:
        while True:
            await link.wake.wait()
            link.wake.clear()
            while link.frames:
                await self._relay_frame(child, link.frames.popleft())
                if child.serial not in self._children:
                    return  # released: leave the link
            if link.dropped:
                _LOGGER.warning("Dropped %d frames from %s", link.dropped, child.serial)
                link.dropped = 0
            if link.closed:
                return

    async def _relay_frame(self, child: PairedChild, data: bytes) -> None:
        try:
            frame = decode_uplink(data)
        except LinkFrameError:
            _LOGGER.warning("Undecodable frame from %s dropped", child.serial)
            return
        if frame.event is not None:
            await self._uplink.publish_event(frame.event, child=child.serial)
        elif frame.ack is not None:
            await self._uplink.publish_ack(frame.ack, child=child.serial)
            if frame.ack.ok and self._resets.get(child.serial) == frame.ack.id:
                _LOGGER.info("BLE child %s was reset by the cloud", child.serial)
                await self._release(child.serial)
        elif frame.reset is not None:
            await self._uplink.publish_reset(frame.reset, child=child.serial)
            _LOGGER.info("BLE child %s was factory reset", child.serial)
            await self._release(child.serial)

    async def _release(self, serial: str) -> None:
        # Called from the child's own relay task, which ends with the link right after.
        self._resets.pop(serial, None)
        self._children.pop(serial, None)
        self._relays.pop(serial, None)
        await self._uplink.remove_child(serial)
        self._children_changed()


__all__ = [
    "BLE_PAIR_COMMAND",
    "AgentOptions",
    "BleHubAgent",
    "HubUplink",
    "PairedChild",
    "PairingFailed",
]
