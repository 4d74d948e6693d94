"""The app/hub side of local provisioning, following the flow of Espressif's ``esp_prov``.

``connect → get_version → establish_session → scan → set_wifi_config →
apply_wifi_config → wait_for_wifi``, plus ``bind`` (``zn-bind``) and raw custom
endpoints. The transport (HTTP or BLE) is passed in and owned by the caller.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol, TypeVar

from google.protobuf.message import DecodeError, Message

from provisioning.protocomm.bind import BindRequest, BindResult
from provisioning.protocomm.endpoints import (
    CAP_NO_POP,
    CAP_NO_SEC,
    PROTO_VER,
    PROV_CONFIG,
    PROV_CTRL,
    PROV_SCAN,
    PROV_SESSION,
    ZN_BIND,
    VersionInfo,
)
from provisioning.protocomm.errors import (
    BindFailed,
    ProtocolError,
    RequestRejected,
    WifiConnectFailed,
)
from provisioning.protocomm.proto import (
    constants_pb2,
    wifi_config_pb2,
    wifi_ctrl_pb2,
    wifi_scan_pb2,
    zn_bind_pb2,
)
from provisioning.protocomm.security import (
    Channel,
    ClientSecurity,
    Sec0Client,
    Sec1Client,
    Sec2Client,
)
from provisioning.protocomm.wifi import (
    REASON_FROM_WIRE,
    STATE_FROM_WIRE,
    AccessPointInfo,
    AuthMode,
    Connection,
    StationState,
    WifiStatus,
)

_LOGGER = logging.getLogger(__name__)

_M = TypeVar("_M", bound=Message)
SCAN_PAGE = 4


class Transport(Protocol):
    """A client link to one device: one request, one answer."""

    async def request(self, endpoint: str, data: bytes) -> bytes:
        """Send ``data`` to ``endpoint`` and return the device's answer."""
        ...


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the client knows to open a session: PoP (sec1) or SRP username/password (sec2)."""

    pop: str | bytes | None = None
    username: str = "wifiprov"
    password: str | bytes | None = None


def _parse(message_type: type[_M], data: bytes) -> _M:
    message = message_type()
    try:
        message.ParseFromString(data)
    except DecodeError as err:
        raise ProtocolError(f"undecodable {message_type.__name__}") from err
    return message


def _check(status: int, what: str) -> None:
    if status != constants_pb2.Success:
        name = constants_pb2.Status.Name(status) if status in constants_pb2.Status.values() else "?"
        raise RequestRejected(f"{what}: device reported {name}", status)


def security_for(
    version: VersionInfo, credentials: Credentials, *, sec2_patch: int | None = None
) -> ClientSecurity:
    """Pick the client security scheme the device announces."""
    match version.sec_ver:
        case 0:
            return Sec0Client()
        case 1:
            pop = None if CAP_NO_POP in version.capabilities else credentials.pop
            return Sec1Client(pop)
        case 2:
            if credentials.password is None:
                raise ProtocolError("the device wants security 2: give a password")
            patch = version.sec_patch_ver if sec2_patch is None else sec2_patch
            return Sec2Client(credentials.password, username=credentials.username, patch=patch)
    if CAP_NO_SEC in version.capabilities:
        return Sec0Client()
    raise ProtocolError(f"unsupported security scheme {version.sec_ver}")


class ProvisioningClient:
    """Talks protocomm to one device over a transport."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._channel: Channel | None = None
        self.version: VersionInfo | None = None

    async def get_version(self) -> VersionInfo:
        """Read ``proto-ver`` (plaintext) and remember it."""
        self.version = VersionInfo.from_json(await self._transport.request(PROTO_VER, b"---"))
        return self.version

    async def establish_session(
        self, credentials: Credentials | None = None, *, security: ClientSecurity | None = None
    ) -> None:
        """Run the handshake; the scheme comes from ``proto-ver`` unless ``security`` is given."""
        if security is None:
            version = self.version or await self.get_version()
            security = security_for(version, credentials or Credentials())

        async def send(data: bytes) -> bytes:
            return await self._transport.request(PROV_SESSION, data)

        self._channel = None
        self._channel = await security.handshake(send)
        _LOGGER.debug("session established with security %d", security.version)

    async def call(self, endpoint: str, data: bytes) -> bytes:
        """Send an encrypted request to any endpoint (custom ones included)."""
        if self._channel is None:
            raise ProtocolError("no session: call establish_session() first")
        encrypted = self._channel.encrypt(data)
        answer = await self._transport.request(endpoint, encrypted)
        return self._channel.decrypt(answer)

    # ------------------------------------------------------------------ scan

    async def _scan(
        self, request: wifi_scan_pb2.WiFiScanPayload, what: str
    ) -> wifi_scan_pb2.WiFiScanPayload:
        answer = await self.call(PROV_SCAN, request.SerializeToString())
        payload = _parse(wifi_scan_pb2.WiFiScanPayload, answer)
        _check(payload.status, what)
        return payload

    async def scan(self, *, blocking: bool = True) -> list[AccessPointInfo]:
        """Scan and read all results, four at a time (bound the call with ``asyncio.timeout``)."""
        start = wifi_scan_pb2.WiFiScanPayload(msg=wifi_scan_pb2.TypeCmdScanStart)
        start.cmd_scan_start.blocking = blocking
        await self._scan(start, "scan start")
        query = wifi_scan_pb2.WiFiScanPayload(msg=wifi_scan_pb2.TypeCmdScanStatus)
        query.cmd_scan_status.SetInParent()
        while True:  # the device has no notification: polling is the protocol
            status = (await self._scan(query, "scan status")).resp_scan_status
            if status.scan_finished:
                break
            await asyncio.sleep(0.05)
        results: list[AccessPointInfo] = []
        while len(results) < status.result_count:
            page = wifi_scan_pb2.WiFiScanPayload(msg=wifi_scan_pb2.TypeCmdScanResult)
            page.cmd_scan_result.start_index = len(results)
            page.cmd_scan_result.count = min(SCAN_PAGE, status.result_count - len(results))
            entries = (await self._scan(page, "scan result")).resp_scan_result.entries
            if not entries:
                raise ProtocolError("device returned an empty scan page")
            results.extend(
                AccessPointInfo(e.ssid, e.bssid, e.channel, e.rssi, AuthMode(e.auth))
                for e in entries
            )
        return results

    # ------------------------------------------------------------------ config

    async def _config(
        self, request: wifi_config_pb2.WiFiConfigPayload
    ) -> wifi_config_pb2.WiFiConfigPayload:
        answer = await self.call(PROV_CONFIG, request.SerializeToString())
        return _parse(wifi_config_pb2.WiFiConfigPayload, answer)

    async def set_wifi_config(
        self, ssid: str | bytes, passphrase: str | bytes, *, bssid: bytes = b"", channel: int = 0
    ) -> None:
        """Send the station credentials (encrypted by the session)."""
        request = wifi_config_pb2.WiFiConfigPayload(msg=wifi_config_pb2.TypeCmdSetConfig)
        request.cmd_set_config.ssid = ssid.encode() if isinstance(ssid, str) else ssid
        request.cmd_set_config.passphrase = (
            passphrase.encode() if isinstance(passphrase, str) else passphrase
        )
        request.cmd_set_config.bssid = bssid
        request.cmd_set_config.channel = channel
        answer = await self._config(request)
        _check(answer.resp_set_config.status, "set config")

    async def apply_wifi_config(self) -> None:
        """Ask the device to join the configured network."""
        request = wifi_config_pb2.WiFiConfigPayload(msg=wifi_config_pb2.TypeCmdApplyConfig)
        request.cmd_apply_config.SetInParent()
        answer = await self._config(request)
        _check(answer.resp_apply_config.status, "apply config")

    async def get_wifi_status(self) -> WifiStatus:
        """Read the station state once."""
        request = wifi_config_pb2.WiFiConfigPayload(msg=wifi_config_pb2.TypeCmdGetStatus)
        request.cmd_get_status.SetInParent()
        answer = await self._config(request)
        resp = answer.resp_get_status
        _check(resp.status, "get status")
        state = STATE_FROM_WIRE.get(resp.sta_state)
        if state is None:
            raise ProtocolError("unknown station state")
        match resp.WhichOneof("state"):
            case "fail_reason":
                return WifiStatus(state, fail_reason=REASON_FROM_WIRE.get(resp.fail_reason))
            case "connected":
                c = resp.connected
                conn = Connection(c.ip4_addr, c.ssid, c.bssid, c.channel, AuthMode(c.auth_mode))
                return WifiStatus(state, connection=conn)
            case "attempt_failed":
                return WifiStatus(state, attempts_remaining=resp.attempt_failed.attempts_remaining)
        return WifiStatus(state)

    async def wait_for_wifi(self, *, interval: float = 0.05) -> Connection:
        """Poll until Connected or raise ``WifiConnectFailed``; bound with ``asyncio.timeout``."""
        while True:
            status = await self.get_wifi_status()
            if status.state is StationState.CONNECTED and status.connection is not None:
                return status.connection
            if status.state is StationState.CONNECTION_FAILED:
                reason = status.fail_reason.value if status.fail_reason else "unknown"
                raise WifiConnectFailed(reason)
            await asyncio.sleep(interval)

    async def provision_wifi(
        self, ssid: str | bytes, passphrase: str | bytes, *, bssid: bytes = b""
    ) -> Connection:
        """Send config, apply, and wait for ``Connected`` (esp_prov's main flow)."""
        await self.set_wifi_config(ssid, passphrase, bssid=bssid)
        await self.apply_wifi_config()
        return await self.wait_for_wifi()

    # ------------------------------------------------------------------ ctrl

    async def _ctrl(self, msg: int, field: str) -> None:
        request = wifi_ctrl_pb2.WiFiCtrlPayload(msg=msg)  # type: ignore[arg-type]  # int is the wire enum
        getattr(request, field).SetInParent()
        answer = _parse(
            wifi_ctrl_pb2.WiFiCtrlPayload, await self.call(PROV_CTRL, request.SerializeToString())
        )
        _check(answer.status, "ctrl")

    async def reset_wifi(self) -> None:
        """Reset the device's Wi-Fi state machine (after a failure, before new credentials)."""
        await self._ctrl(wifi_ctrl_pb2.TypeCmdCtrlReset, "cmd_ctrl_reset")

    async def reprovision(self) -> None:
        """Ask a provisioned device to re-open provisioning."""
        await self._ctrl(wifi_ctrl_pb2.TypeCmdCtrlReprov, "cmd_ctrl_reprov")

    # ------------------------------------------------------------------ zn-bind

    async def bind(self, token: bytes, broker_host: str, broker_port: int) -> BindResult:
        """Send the bind/pairing token and broker address; return serial, nonce and proof."""
        request = BindRequest(token, broker_host, broker_port).to_pb()
        answer = _parse(
            zn_bind_pb2.ZnBindResponse, await self.call(ZN_BIND, request.SerializeToString())
        )
        if answer.status != zn_bind_pb2.BindOk:
            name = (
                zn_bind_pb2.ZnBindStatus.Name(answer.status)
                if answer.status in zn_bind_pb2.ZnBindStatus.values()
                else "?"
            )
            raise BindFailed(name)
        return BindResult.from_pb(answer)
