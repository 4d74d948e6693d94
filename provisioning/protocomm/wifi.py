"""Wi-Fi endpoints on the device (``prov-config``, ``prov-scan``, ``prov-ctrl``).

The radio is behind :class:`WifiStation`: the device code takes one as a
parameter (``simulators.wifi_world`` provides a simulated one). Connection
attempts and non-blocking scans run as tasks owned by :class:`WifiProvisioner`,
an async context manager that cancels and awaits them on exit. The passphrase
lives only in memory and is never logged.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

from google.protobuf.message import DecodeError, Message

from provisioning.protocomm.errors import ProtocommError, RequestRejected
from provisioning.protocomm.proto import (
    constants_pb2,
    wifi_config_pb2,
    wifi_constants_pb2,
    wifi_ctrl_pb2,
    wifi_scan_pb2,
)

_LOGGER = logging.getLogger(__name__)

MAX_SSID_LEN = 32
MAX_PASSPHRASE_LEN = 64
BSSID_LEN = 6
# Over BLE a response must stay within 256 bytes: 4 entries of up to ~60 bytes each.
MAX_SCAN_RESULTS_PER_PAGE = 4


class AuthMode(enum.IntEnum):
    """Wi-Fi authentication modes, numbered as on the wire."""

    OPEN = 0
    WEP = 1
    WPA_PSK = 2
    WPA2_PSK = 3
    WPA_WPA2_PSK = 4
    WPA2_ENTERPRISE = 5
    WPA3_PSK = 6
    WPA2_WPA3_PSK = 7


class FailReason(enum.Enum):
    """Why a join failed, as reported in ``RespGetStatus``."""

    AUTH_ERROR = "AuthError"
    NETWORK_NOT_FOUND = "NetworkNotFound"


class StationState(enum.Enum):
    """The station state reported in ``RespGetStatus``."""

    CONNECTED = "Connected"
    CONNECTING = "Connecting"
    DISCONNECTED = "Disconnected"
    CONNECTION_FAILED = "ConnectionFailed"


@dataclass(frozen=True, slots=True)
class AccessPointInfo:
    """One scan result."""

    ssid: bytes
    bssid: bytes
    channel: int
    rssi: int
    auth: AuthMode


@dataclass(frozen=True, slots=True)
class Connection:
    """A successful join."""

    ip4_addr: str
    ssid: bytes
    bssid: bytes
    channel: int
    auth: AuthMode


@dataclass(frozen=True, slots=True)
class WifiCredentials:
    """What ``CmdSetConfig`` carries. ``repr`` hides the passphrase."""

    ssid: bytes
    passphrase: bytes
    bssid: bytes = b""
    channel: int = 0

    def __repr__(self) -> str:
        return (
            f"WifiCredentials(ssid={self.ssid!r}, bssid={self.bssid.hex()}, channel={self.channel})"
        )


class JoinFailed(ProtocommError):
    """Raised by a :class:`WifiStation` when it cannot join; carries the reason."""

    code = "wifi_join_failed"

    def __init__(self, reason: FailReason) -> None:
        super().__init__(reason.value)
        self.reason = reason


class WifiStation(Protocol):
    """The device's Wi-Fi radio in station mode."""

    async def scan(self, *, passive: bool = False) -> Sequence[AccessPointInfo]:
        """Return the access points in range."""
        ...

    async def connect(self, credentials: WifiCredentials) -> Connection:
        """Join a network or raise :class:`JoinFailed`."""
        ...

    async def disconnect(self) -> None:
        """Leave the current network, if any."""
        ...


@dataclass(frozen=True, slots=True)
class WifiStatus:
    """What ``get-status`` reports."""

    state: StationState
    fail_reason: FailReason | None = None
    connection: Connection | None = None
    attempts_remaining: int | None = None


_STATE_TO_WIRE = {
    StationState.CONNECTED: wifi_constants_pb2.Connected,
    StationState.CONNECTING: wifi_constants_pb2.Connecting,
    StationState.DISCONNECTED: wifi_constants_pb2.Disconnected,
    StationState.CONNECTION_FAILED: wifi_constants_pb2.ConnectionFailed,
}
_REASON_TO_WIRE = {
    FailReason.AUTH_ERROR: wifi_constants_pb2.AuthError,
    FailReason.NETWORK_NOT_FOUND: wifi_constants_pb2.NetworkNotFound,
}
STATE_FROM_WIRE = {v: k for k, v in _STATE_TO_WIRE.items()}
REASON_FROM_WIRE = {v: k for k, v in _REASON_TO_WIRE.items()}


_M = TypeVar("_M", bound=Message)


def _parse(message_type: type[_M], data: bytes) -> _M:
    message = message_type()
    try:
        message.ParseFromString(data)
    except DecodeError as err:
        raise RequestRejected("undecodable request", constants_pb2.InvalidProto) from err
    return message


class WifiProvisioner:
    """Serves ``prov-config``, ``prov-scan`` and ``prov-ctrl`` against a :class:`WifiStation`."""

    def __init__(
        self,
        station: WifiStation,
        *,
        on_reprovision: Callable[[], None] | None = None,
    ) -> None:
        self._station = station
        self._on_reprovision = on_reprovision
        self._credentials: WifiCredentials | None = None
        self._status = WifiStatus(StationState.DISCONNECTED)
        self._attempt: asyncio.Task[None] | None = None
        self._scan_task: asyncio.Task[None] | None = None
        self._scan_results: tuple[AccessPointInfo, ...] = ()
        self._scan_finished = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._running = False

    async def __aenter__(self) -> Self:
        self._running = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._running = False
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._tasks.clear()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Start a task this object owns: it is cancelled and awaited on exit."""
        if not self._running:
            coro.close()
            raise RuntimeError("WifiProvisioner is not running; use it as an async context manager")
        task = asyncio.get_running_loop().create_task(self._guard(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _guard(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except Exception:
            # A failing radio must not take the device down: record it and carry on.
            _LOGGER.exception("Wi-Fi background task failed")
            self._status = WifiStatus(StationState.DISCONNECTED)
            self._scan_finished = True

    @property
    def status(self) -> WifiStatus:
        """Return the current station status."""
        return self._status

    # ------------------------------------------------------------------ prov-config

    async def handle_config(self, session_id: int, data: bytes) -> bytes:
        """Serve one ``prov-config`` request."""
        request = _parse(wifi_config_pb2.WiFiConfigPayload, data)
        response = wifi_config_pb2.WiFiConfigPayload()
        match request.WhichOneof("payload"):
            case "cmd_get_status" if request.msg == wifi_config_pb2.TypeCmdGetStatus:
                response.msg = wifi_config_pb2.TypeRespGetStatus
                self._fill_status(response.resp_get_status)
            case "cmd_set_config" if request.msg == wifi_config_pb2.TypeCmdSetConfig:
                response.msg = wifi_config_pb2.TypeRespSetConfig
                response.resp_set_config.status = self._set_config(request.cmd_set_config)  # type: ignore[assignment]  # int is the wire enum
            case "cmd_apply_config" if request.msg == wifi_config_pb2.TypeCmdApplyConfig:
                response.msg = wifi_config_pb2.TypeRespApplyConfig
                response.resp_apply_config.status = self._apply()  # type: ignore[assignment]  # int is the wire enum
            case _:
                raise RequestRejected("unknown prov-config command", constants_pb2.InvalidProto)
        return response.SerializeToString()

    def _fill_status(self, out: wifi_config_pb2.RespGetStatus) -> None:
        status = self._status
        out.status = constants_pb2.Success
        out.sta_state = _STATE_TO_WIRE[status.state]
        if status.state is StationState.CONNECTION_FAILED and status.fail_reason is not None:
            out.fail_reason = _REASON_TO_WIRE[status.fail_reason]
        elif status.state is StationState.CONNECTED and status.connection is not None:
            conn = status.connection
            out.connected.ip4_addr = conn.ip4_addr
            out.connected.auth_mode = int(conn.auth)  # type: ignore[assignment]  # int is the wire enum
            out.connected.ssid = conn.ssid
            out.connected.bssid = conn.bssid
            out.connected.channel = conn.channel
        elif status.state is StationState.CONNECTING and status.attempts_remaining is not None:
            out.attempt_failed.attempts_remaining = status.attempts_remaining

    def _set_config(self, cmd: wifi_config_pb2.CmdSetConfig) -> int:
        if self._status.state is StationState.CONNECTING:
            return constants_pb2.InvalidArgument
        if not 0 < len(cmd.ssid) <= MAX_SSID_LEN or len(cmd.passphrase) > MAX_PASSPHRASE_LEN:
            return constants_pb2.InvalidArgument
        if cmd.bssid and len(cmd.bssid) != BSSID_LEN:
            return constants_pb2.InvalidArgument
        if not 0 <= cmd.channel <= 196:
            return constants_pb2.InvalidArgument
        self._credentials = WifiCredentials(cmd.ssid, cmd.passphrase, cmd.bssid, cmd.channel)
        _LOGGER.info("Wi-Fi configuration received for SSID %r", cmd.ssid)
        return constants_pb2.Success

    def _apply(self) -> int:
        credentials = self._credentials
        if credentials is None or self._status.state is StationState.CONNECTING:
            return constants_pb2.InvalidArgument
        self._status = WifiStatus(StationState.CONNECTING)
        self._attempt = self._spawn(self._join(credentials))
        return constants_pb2.Success

    async def _join(self, credentials: WifiCredentials) -> None:
        try:
            connection = await self._station.connect(credentials)
        except JoinFailed as err:
            _LOGGER.info("Wi-Fi join failed: %s", err.reason.value)
            self._status = WifiStatus(StationState.CONNECTION_FAILED, fail_reason=err.reason)
            return
        _LOGGER.info("Wi-Fi joined %r as %s", connection.ssid, connection.ip4_addr)
        self._status = WifiStatus(StationState.CONNECTED, connection=connection)

    # ------------------------------------------------------------------ prov-scan

    async def handle_scan(self, session_id: int, data: bytes) -> bytes:
        """Serve one ``prov-scan`` request."""
        request = _parse(wifi_scan_pb2.WiFiScanPayload, data)
        response = wifi_scan_pb2.WiFiScanPayload(status=constants_pb2.Success)
        match request.WhichOneof("payload"):
            case "cmd_scan_start" if request.msg == wifi_scan_pb2.TypeCmdScanStart:
                response.msg = wifi_scan_pb2.TypeRespScanStart
                response.resp_scan_start.SetInParent()
                await self._start_scan(request.cmd_scan_start)
            case "cmd_scan_status" if request.msg == wifi_scan_pb2.TypeCmdScanStatus:
                response.msg = wifi_scan_pb2.TypeRespScanStatus
                response.resp_scan_status.scan_finished = self._scan_finished
                response.resp_scan_status.result_count = len(self._scan_results)
            case "cmd_scan_result" if request.msg == wifi_scan_pb2.TypeCmdScanResult:
                response.msg = wifi_scan_pb2.TypeRespScanResult
                response.resp_scan_result.SetInParent()
                start, count = request.cmd_scan_result.start_index, request.cmd_scan_result.count
                if (
                    not self._scan_finished
                    or count > MAX_SCAN_RESULTS_PER_PAGE
                    or start + count > len(self._scan_results)
                ):
                    response.status = constants_pb2.InvalidArgument
                else:
                    for ap in self._scan_results[start : start + count]:
                        response.resp_scan_result.entries.add(
                            ssid=ap.ssid,
                            channel=ap.channel,
                            rssi=ap.rssi,
                            bssid=ap.bssid,
                            auth=int(ap.auth),
                        )
            case _:
                raise RequestRejected("unknown prov-scan command", constants_pb2.InvalidProto)
        return response.SerializeToString()

    async def _start_scan(self, cmd: wifi_scan_pb2.CmdScanStart) -> None:
        if self._scan_task is not None and not self._scan_task.done():
            return  # a scan is already running; the client polls its status
        self._scan_finished = False
        self._scan_results = ()
        if cmd.blocking:
            await self._scan(passive=cmd.passive)
        else:
            self._scan_task = self._spawn(self._scan(passive=cmd.passive))

    async def _scan(self, *, passive: bool) -> None:
        results = await self._station.scan(passive=passive)
        self._scan_results = tuple(sorted(results, key=lambda ap: -ap.rssi))
        self._scan_finished = True

    # ------------------------------------------------------------------ prov-ctrl

    async def handle_ctrl(self, session_id: int, data: bytes) -> bytes:
        """Serve one ``prov-ctrl`` request (reset the Wi-Fi state machine, reprovision)."""
        request = _parse(wifi_ctrl_pb2.WiFiCtrlPayload, data)
        response = wifi_ctrl_pb2.WiFiCtrlPayload(status=constants_pb2.Success)
        match request.WhichOneof("payload"):
            case "cmd_ctrl_reset" if request.msg == wifi_ctrl_pb2.TypeCmdCtrlReset:
                response.msg = wifi_ctrl_pb2.TypeRespCtrlReset
                response.resp_ctrl_reset.SetInParent()
                await self._reset()
            case "cmd_ctrl_reprov" if request.msg == wifi_ctrl_pb2.TypeCmdCtrlReprov:
                response.msg = wifi_ctrl_pb2.TypeRespCtrlReprov
                response.resp_ctrl_reprov.SetInParent()
                await self._reset()
                if self._on_reprovision is not None:
                    self._on_reprovision()
            case _:
                raise RequestRejected("unknown prov-ctrl command", constants_pb2.InvalidProto)
        return response.SerializeToString()

    async def _reset(self) -> None:
        if self._attempt is not None and not self._attempt.done():
            self._attempt.cancel()
            await asyncio.wait([self._attempt])
        self._attempt = None
        self._credentials = None
        if self._status.state is StationState.CONNECTED:
            await self._station.disconnect()
        self._status = WifiStatus(StationState.DISCONNECTED)
