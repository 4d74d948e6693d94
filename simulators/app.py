"""A simulated phone app: drives the HTTP API and the device's local link like the real app.

The flow for a camera follows ``docs/DESIGN.md``: parse the label payload,
pre-check the serial, ask for a binding (bind token), open a protocomm session
over SoftAP HTTP or BLE (the verification code is the SRP password or PoP),
hand the device the bind token and the broker address (``zn-bind``), scan
Wi-Fi through the device, send the credentials, apply, poll the station
(another password may be tried in the same session after an authentication
error), then poll the binding until the device has confirmed it.

Every API error comes back as the server's own :class:`~provisioning.errors.ZanuoError`
subclass, rebuilt from its stable ``code`` (``DeviceBoundToOther``,
``TooManyAttempts`` with ``retry_after``, …); local-link failures are the
protocomm library's exceptions; what is neither is an :class:`AppError`.

The phone's location is held as :attr:`PhoneApp.location`, as a real phone
holds it while it scans Wi-Fi. It is a canary: nothing here ever sends it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, Self

import aiohttp
from bleak import BleakScanner
from bleak.backends.client import BaseBleakClient
from bleak.backends.scanner import BaseBleakScanner
from cryptography import x509

from provisioning.domain.commands import WifiCredentials as CloudWifiCredentials
from provisioning.errors import DeviceNotFound, TooManyAttempts, ZanuoError
from provisioning.notify.delivery import OutboxSender
from provisioning.protocomm.ble import ESPRESSIF_SERVICE_UUID, BleTransport
from provisioning.protocomm.client import Credentials, ProvisioningClient, Transport
from provisioning.protocomm.device import ProtocommDevice
from provisioning.protocomm.errors import WifiConnectFailed
from provisioning.protocomm.http import HttpTransport
from provisioning.protocomm.local import LocalTransport
from provisioning.protocomm.wifi import AccessPointInfo, Connection, FailReason
from provisioning.security.codes import LabelPayload, parse_label_payload
from provisioning.security.sealing import seal_text

if TYPE_CHECKING:
    from bumble.device import Device as BumbleDevice

_LOGGER = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL: Final = 0.1
DEFAULT_BIND_TIMEOUT: Final = 60.0
DEFAULT_WIFI_TIMEOUT: Final = 30.0
CLIENT_INFO: Final = {
    "client_type": "android",
    "client_version": "3.4.0",
    "device_model": "Zanuo phone simulator",
    "os_version": "15",
}


# --------------------------------------------------------------------------- errors


class AppError(Exception):
    """Root of the simulator's own failures (not an API error, not a link error)."""


class BindingRejected(AppError):
    """The cloud rejected the binding (the device presented a bad token, or lost a race)."""

    def __init__(self, serial: str, reason: str | None) -> None:
        super().__init__(f"{serial}: binding rejected ({reason or 'no reason given'})")
        self.serial = serial
        self.reason = reason


class BindingExpired(AppError):
    """The device never confirmed the binding before the bind token expired."""

    def __init__(self, serial: str) -> None:
        super().__init__(f"{serial}: the binding expired before the device confirmed it")
        self.serial = serial


class NetworkNotFound(AppError):
    """The chosen network is not in the device's scan (or the device could not find it)."""

    def __init__(self, ssid: str) -> None:
        super().__init__(f"network {ssid!r} not found")
        self.ssid = ssid


class DeviceNotAdvertising(AppError):
    """No device with that name advertises the provisioning service (not in setup mode?)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no {name!r} advertising the provisioning service nearby")
        self.name = name


class WrongWifiPassword(AppError):
    """Every password offered for the network was refused."""

    def __init__(self, ssid: str, attempts: int) -> None:
        super().__init__(f"network {ssid!r} refused all {attempts} passwords")
        self.ssid = ssid
        self.attempts = attempts


class UnexpectedApiError(ZanuoError):
    """An API error whose code this app does not know."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(message, **details)
        self.status_seen = status
        self.code_seen = code


def _error_classes() -> dict[str, type[ZanuoError]]:
    """Map every stable error code to the class that defines it."""
    found: dict[str, type[ZanuoError]] = {}
    pending: list[type[ZanuoError]] = [ZanuoError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if "code" in vars(cls) and cls is not UnexpectedApiError:
            found.setdefault(cls.code, cls)
    return found


def api_error(status: int, document: object) -> ZanuoError:
    """Rebuild the server's error from a response body ``{"error": {code, message, details}}``."""
    body = document.get("error") if isinstance(document, dict) else None
    if not isinstance(body, dict):
        return UnexpectedApiError(status, "unreadable", f"HTTP {status}", {})
    code = str(body.get("code", ""))
    message = str(body.get("message", ""))
    raw_details = body.get("details")
    details: dict[str, Any] = raw_details if isinstance(raw_details, dict) else {}
    cls = _error_classes().get(code)
    if cls is None or cls.status != status:
        return UnexpectedApiError(status, code, message, details)
    if issubclass(cls, TooManyAttempts):
        retry = details.get("retry_after", 1)
        rest = {k: v for k, v in details.items() if k != "retry_after"}
        return cls(int(retry) if isinstance(retry, int | str) else 1, message, **rest)
    # Some subclasses take extra constructor arguments; every one is a ZanuoError
    # underneath, so build it through the root's constructor with the wire fields.
    error = cls.__new__(cls)
    ZanuoError.__init__(error, message, **details)
    return error


# --------------------------------------------------------------------------- wire values


@dataclasses.dataclass(frozen=True, slots=True)
class GeoLocation:
    """Where the phone is. A canary: the app holds it and never sends it."""

    latitude: float
    longitude: float

    def __repr__(self) -> str:
        return "GeoLocation(<withheld>)"

    def canary_strings(self) -> tuple[str, ...]:
        """Return the textual forms a leak would take (for canary scans)."""
        return (f"{self.latitude}", f"{self.longitude}")


@dataclasses.dataclass(frozen=True, slots=True)
class Session:
    """A signed-in account."""

    account_id: uuid.UUID
    token: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class BindState:
    """The pre-check answer."""

    serial: str
    exists: bool
    online: bool
    relation: str | None
    bindable: bool
    method: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class BindingStatus:
    """One poll of a binding."""

    binding_id: uuid.UUID
    serial: str
    state: Literal["pending", "bound", "expired", "rejected"]
    reason: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class PairingToken:
    """A one-time pairing token for a device without a label code."""

    token_id: uuid.UUID
    token: str = dataclasses.field(repr=False)
    expires_at: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class WifiChoice:
    """The network the user picks and the passwords they type, in order."""

    ssid: str
    passwords: Sequence[str] = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class BoundDevice:
    """The outcome of a successful setup."""

    serial: str
    binding_id: uuid.UUID
    connection: Connection | None
    wifi_attempts: int
    elapsed_s: float


# --------------------------------------------------------------------------- local links


class LocalLink(Protocol):
    """How the phone reaches a device in setup mode."""

    def open(self) -> AbstractAsyncContextManager[Transport]:
        """Open a transport to the device (closed when the block ends)."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class SoftApLink:
    """The device's SoftAP: protocomm over HTTP at ``url``."""

    url: str
    timeout: float = 10.0

    def open(self) -> AbstractAsyncContextManager[Transport]:
        """Open one kept-alive HTTP connection."""
        return HttpTransport(self.url, timeout=self.timeout)


@dataclasses.dataclass(frozen=True, slots=True)
class BleLink:
    """The device's GATT service, found by its advertised name as a phone finds it.

    The phone scans for the provisioning service and picks the advertisement
    named ``name`` (``ZN-<serial>`` on Zanuo devices), then connects through
    bleak. ``backend`` / ``scanner_backend`` are bleak's backends (None: the
    platform's; the bumble-backed ones on a virtual link).
    """

    name: str
    backend: type[BaseBleakClient] | None = None
    scanner_backend: type[BaseBleakScanner] | None = None
    service_uuid: str = ESPRESSIF_SERVICE_UUID
    scan_timeout: float = 10.0
    timeout: float = 10.0

    @classmethod
    def on_virtual_link(cls, name: str, central: BumbleDevice) -> BleLink:
        """Return a link that scans and connects through a bumble ``central`` (virtual radio)."""
        from provisioning.protocomm.bumble_backend import bleak_backend, bleak_scanner_backend

        return cls(
            name, backend=bleak_backend(central), scanner_backend=bleak_scanner_backend(central)
        )

    def open(self) -> AbstractAsyncContextManager[Transport]:
        """Scan, connect and map the endpoints."""
        return self._open()

    @asynccontextmanager
    async def _open(self) -> AsyncIterator[Transport]:
        scanner: dict[str, Any] = {}
        if self.scanner_backend is not None:
            scanner["backend"] = self.scanner_backend
        found = await BleakScanner.find_device_by_filter(
            lambda _device, advertisement: advertisement.local_name == self.name,
            timeout=self.scan_timeout,
            service_uuids=[self.service_uuid],
            **scanner,
        )
        if found is None:
            raise DeviceNotAdvertising(self.name)
        async with BleTransport(
            found, service_uuid=self.service_uuid, backend=self.backend, timeout=self.timeout
        ) as transport:
            yield transport


@dataclasses.dataclass(frozen=True, slots=True)
class InProcessLink:
    """A device in the same process, reached without sockets (load tests)."""

    device: ProtocommDevice

    def open(self) -> AbstractAsyncContextManager[Transport]:
        """Open one in-process session."""
        return LocalTransport(self.device)


CodeReader = Callable[[str, str], Awaitable[str]]
"""``(email, purpose) -> code``: how the user reads the code the service sent them."""


def outbox_code_reader(outbox_file: Path) -> CodeReader:
    """Return a :data:`CodeReader` over the development outbox (``<data_dir>/outbox.jsonl``)."""
    sender = OutboxSender(outbox_file)

    async def read(recipient: str, purpose: str) -> str:
        messages = await asyncio.to_thread(sender.read_codes)
        for message in reversed(messages):
            if message.get("recipient") == recipient and message.get("purpose") == purpose:
                return message["code"]
        raise AppError(f"no {purpose} code in the outbox")

    return read


# --------------------------------------------------------------------------- the app


class PhoneApp:
    """One phone running the Zanuo app against the service at ``api_url``."""

    def __init__(
        self,
        api_url: str,
        *,
        location: GeoLocation,
        http: aiohttp.ClientSession | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        client_info: dict[str, str] | None = None,
        on_step: Callable[[str], None] | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._on_step = on_step
        self.location = location
        self.session: Session | None = None
        self._http = http
        self._own_http = http is None
        self._poll_interval = poll_interval
        self._client_info = dict(client_info or CLIENT_INFO)

    async def __aenter__(self) -> Self:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._own_http and self._http is not None:
            await self._http.close()
            self._http = None

    def _step(self, text: str) -> None:
        """Tell the watcher what just happened (never with a secret in ``text``)."""
        if self._on_step is not None:
            self._on_step(text)

    # -- HTTP ---------------------------------------------------------------------

    async def request(
        self, method: str, path: str, *, json: dict[str, Any] | None = None, auth: bool = True
    ) -> Any:
        """Call the API; return the decoded JSON (None for 204) or raise the server's error."""
        if self._http is None:
            raise AppError("the app is not open: use `async with PhoneApp(...)`")
        headers = {}
        if auth:
            if self.session is None:
                raise AppError("sign in first")
            headers["Authorization"] = f"Bearer {self.session.token}"
        try:
            async with self._http.request(
                method, self.api_url + path, json=json, headers=headers
            ) as response:
                if response.status == 204:
                    return None
                try:
                    document = await response.json(content_type=None)
                except ValueError:
                    document = None
                if response.status >= 400:
                    raise api_error(response.status, document)
                return document
        except aiohttp.ClientError as err:
            raise AppError(f"{method} {path}: {err}") from err

    # -- accounts -----------------------------------------------------------------

    async def register(self, email: str, password: str, read_code: CodeReader) -> Session:
        """Sign up by email: ask for a code, read it, register (and stay signed in)."""
        await self.request(
            "POST", "/v1/auth/codes", json={"email": email, "purpose": "register"}, auth=False
        )
        code = await read_code(email, "register")
        issued = await self.request(
            "POST",
            "/v1/auth/register",
            json={"email": email, "password": password, "code": code, "client": self._client_info},
            auth=False,
        )
        self.session = Session(uuid.UUID(issued["account_id"]), issued["token"])
        return self.session

    async def login(self, email: str, password: str) -> Session:
        """Sign in with a password."""
        issued = await self.request(
            "POST",
            "/v1/auth/login",
            json={"email": email, "password": password, "client": self._client_info},
            auth=False,
        )
        self.session = Session(uuid.UUID(issued["account_id"]), issued["token"])
        return self.session

    # -- binding ------------------------------------------------------------------

    async def bind_state(self, serial: str) -> BindState:
        """Pre-check a serial."""
        doc = await self.request("GET", f"/v1/devices/{serial}/bind-state")
        return BindState(
            doc["serial"],
            doc["exists"],
            doc["online"],
            doc["relation"],
            doc["bindable"],
            doc["method"],
        )

    async def start_binding(self, label: LabelPayload) -> tuple[uuid.UUID, str]:
        """Ask the cloud for a binding with the label's code; return its id and bind token."""
        if label.code is None:
            raise AppError(f"{label.serial} has no label code: pair it through a hub")
        doc = await self.request(
            "POST",
            "/v1/bindings",
            json={"serial": label.serial, "verification_code": label.code},
        )
        return uuid.UUID(doc["binding_id"]), doc["bind_token"]

    async def binding(self, binding_id: uuid.UUID) -> BindingStatus:
        """Poll a binding once."""
        doc = await self.request("GET", f"/v1/bindings/{binding_id}")
        return BindingStatus(
            uuid.UUID(doc["binding_id"]), doc["serial"], doc["state"], doc["reason"]
        )

    async def wait_bound(self, binding_id: uuid.UUID) -> BindingStatus:
        """Poll until bound; raise when rejected or expired (bound it with ``asyncio.timeout``)."""
        while True:
            status = await self.binding(binding_id)
            if status.state == "bound":
                return status
            if status.state == "rejected":
                raise BindingRejected(status.serial, status.reason)
            if status.state == "expired":
                raise BindingExpired(status.serial)
            await asyncio.sleep(self._poll_interval)

    async def pairing_token(self) -> PairingToken:
        """Issue a pairing token for a code-less device."""
        doc = await self.request("POST", "/v1/pairing-tokens")
        return PairingToken(
            uuid.UUID(doc["token_id"]),
            doc["pairing_token"],
            dt.datetime.fromisoformat(doc["expires_at"]),
        )

    async def pairing_token_state(self, token_id: uuid.UUID) -> dict[str, Any]:
        """Read which devices activated with a pairing token."""
        doc: dict[str, Any] = await self.request("GET", f"/v1/pairing-tokens/{token_id}")
        return doc

    async def pair_through_hub(
        self, hub: str, token: PairingToken, *, ble_address: str | None = None
    ) -> str:
        """Ask a hub to pair a nearby code-less device with ``token``; return the command id."""
        body: dict[str, Any] = {"token": token.token}
        if ble_address is not None:
            body["ble_address"] = ble_address
        doc = await self.request("POST", f"/v1/devices/{hub}/ble-pairings", json=body)
        return str(doc.get("command_id", "")) if isinstance(doc, dict) else ""

    async def wait_activated(self, token: PairingToken) -> str:
        """Poll a pairing token until a device is bound with it; return that device's serial."""
        while True:
            state = await self.pairing_token_state(token.token_id)
            for device in state["devices"]:
                if device["state"] == "bound":
                    self._step(f"{device['serial']} bound with the pairing token")
                    return str(device["serial"])
            await asyncio.sleep(self._poll_interval)

    async def set_up_camera(
        self,
        label_payload: str,
        link: LocalLink,
        wifi: WifiChoice,
        *,
        broker: tuple[str, int],
        bind_timeout: float = DEFAULT_BIND_TIMEOUT,
        wifi_timeout: float = DEFAULT_WIFI_TIMEOUT,
    ) -> BoundDevice:
        """Run the whole camera setup: label → pre-check → bind → local link → Wi-Fi → bound."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        label = parse_label_payload(label_payload)
        self._step(f"label scanned: {label.serial} ({label.model})")
        state = await self.bind_state(label.serial)
        if not state.exists:
            raise DeviceNotFound(serial=label.serial)
        self._step(f"pre-check: online={state.online}, relation={state.relation}")
        binding_id, bind_token = await self.start_binding(label)
        code = label.code or ""  # start_binding refused a code-less label
        self._step("verification code accepted; binding pending")
        _LOGGER.debug("binding %s opened for %s", binding_id, label.serial)
        async with link.open() as transport:
            client = ProvisioningClient(transport)
            version = await client.get_version()
            await client.establish_session(Credentials(pop=code, password=code))
            self._step(f"local link open: protocomm session, security {version.sec_ver}")
            await client.bind(bind_token.encode(), broker[0], broker[1])
            self._step(f"zn-bind: bind token and broker {broker[0]}:{broker[1]} handed over")
            async with asyncio.timeout(wifi_timeout):
                connection, attempts = await self.provision_wifi(client, wifi)
        async with asyncio.timeout(bind_timeout):
            await self.wait_bound(binding_id)
        self._step(f"binding {binding_id} is bound")
        return BoundDevice(label.serial, binding_id, connection, attempts, loop.time() - started)

    async def provision_wifi(
        self, client: ProvisioningClient, wifi: WifiChoice
    ) -> tuple[Connection, int]:
        """Scan through the device, then try each password until the device joins."""
        access_point = await self.pick_network(client, wifi.ssid)
        attempts = 0
        for password in wifi.passwords:
            attempts += 1
            await client.set_wifi_config(access_point.ssid, password, bssid=access_point.bssid)
            await client.apply_wifi_config()
            try:
                connection = await client.wait_for_wifi(interval=self._poll_interval / 2)
            except WifiConnectFailed as err:
                if err.reason == FailReason.NETWORK_NOT_FOUND.value:
                    raise NetworkNotFound(wifi.ssid) from err
                self._step(f"Wi-Fi attempt {attempts} failed ({err.reason}); trying again")
                _LOGGER.debug("the device could not join (%s); trying the next password", err)
                continue
            self._step(f"Wi-Fi joined {wifi.ssid!r} as {connection.ip4_addr}")
            return connection, attempts
        raise WrongWifiPassword(wifi.ssid, attempts)

    async def pick_network(self, client: ProvisioningClient, ssid: str) -> AccessPointInfo:
        """Scan through the device (the phone's location stays on the phone) and pick ``ssid``."""
        networks = await client.scan()
        self._step(f"Wi-Fi scan through the device: {len(networks)} network(s)")
        found = [ap for ap in networks if ap.ssid == ssid.encode()]
        if not found:
            raise NetworkNotFound(ssid)
        return max(found, key=lambda ap: ap.rssi)

    # -- privacy ------------------------------------------------------------------

    async def set_consent(self, purpose: str, *, granted: bool) -> dict[str, bool]:
        """Grant or withdraw an optional purpose in the app's settings."""
        doc = await self.request(
            "POST", "/v1/me/consents", json={"purpose": purpose, "granted": granted}
        )
        purposes: dict[str, bool] = doc["purposes"]
        return purposes

    # -- devices ------------------------------------------------------------------

    async def devices(self) -> list[dict[str, Any]]:
        """List owned and shared devices."""
        doc = await self.request("GET", "/v1/devices")
        devices: list[dict[str, Any]] = doc["devices"]
        return devices

    async def device(self, serial: str) -> dict[str, Any]:
        """Read one device."""
        doc: dict[str, Any] = await self.request("GET", f"/v1/devices/{serial}")
        return doc

    async def wait_device(
        self,
        serial: str,
        check: Callable[[dict[str, Any]], bool],
    ) -> dict[str, Any]:
        """Poll one device until ``check`` holds for it (bound it with ``asyncio.timeout``)."""
        while True:
            doc = await self.device(serial)
            if check(doc):
                return doc
            await asyncio.sleep(self._poll_interval)

    async def update_device(self, serial: str, **changes: Any) -> dict[str, Any]:
        """Rename a device or change its settings."""
        doc: dict[str, Any] = await self.request("PATCH", f"/v1/devices/{serial}", json=changes)
        return doc

    async def unbind(self, serial: str) -> None:
        """Remove a device from the account (the cloud resets it)."""
        await self.request("DELETE", f"/v1/devices/{serial}")

    async def change_wifi(
        self,
        serial: str,
        ssid: str,
        passphrase: str,
        *,
        certificate: x509.Certificate | None = None,
        bssid: str | None = None,
    ) -> str:
        """Send a device new Wi-Fi credentials; sealed here when its certificate is known.

        With ``certificate`` the passphrase leaves the phone only sealed to the
        device key (for a command id the app picks); without it, it goes plain
        over TLS and the service seals it at once. Returns the command id.
        """
        path = f"/v1/devices/{serial}/wifi"
        if certificate is None:
            body: dict[str, Any] = {"ssid": ssid, "passphrase": passphrase}
            if bssid is not None:
                body["bssid"] = bssid
            doc = await self.request("POST", path, json=body)
        else:
            command_id = str(uuid.uuid4())
            plaintext = CloudWifiCredentials(ssid, passphrase, bssid).to_json()
            envelope = seal_text(certificate, plaintext, serial=serial, command_id=command_id)
            del plaintext
            doc = await self.request(
                "POST", path, json={"sealed": envelope, "command_id": command_id}
            )
        return str(doc["command_id"])

    async def share(self, serial: str, email: str, permission: str = "view") -> dict[str, Any]:
        """Invite another account to a device."""
        doc: dict[str, Any] = await self.request(
            "POST", f"/v1/devices/{serial}/shares", json={"email": email, "permission": permission}
        )
        return doc

    async def invitations(self) -> list[dict[str, Any]]:
        """List invitations addressed to this account."""
        doc = await self.request("GET", "/v1/invitations")
        shares: list[dict[str, Any]] = doc["shares"]
        return shares

    async def accept(self, share_id: str) -> dict[str, Any]:
        """Accept an invitation."""
        doc: dict[str, Any] = await self.request("POST", f"/v1/invitations/{share_id}/accept")
        return doc

    async def messages(self) -> list[dict[str, Any]]:
        """Read the account's message feed (events of owned devices with notifications on)."""
        doc = await self.request("GET", "/v1/messages")
        events: list[dict[str, Any]] = doc["events"]
        return events

    async def events(self, serial: str) -> list[dict[str, Any]]:
        """Read a device's recent events (owner or shared user)."""
        doc = await self.request("GET", f"/v1/devices/{serial}/events")
        events: list[dict[str, Any]] = doc["events"]
        return events

    async def wait_message(
        self,
        check: Callable[[dict[str, Any]], bool],
    ) -> dict[str, Any]:
        """Poll the feed until a message satisfies ``check`` (bound it with ``asyncio.timeout``)."""
        while True:
            for message in await self.messages():
                if check(message):
                    return message
            await asyncio.sleep(self._poll_interval)


__all__ = [
    "AppError",
    "BindState",
    "BindingExpired",
    "BindingRejected",
    "BindingStatus",
    "BleLink",
    "BoundDevice",
    "CodeReader",
    "DeviceNotAdvertising",
    "GeoLocation",
    "InProcessLink",
    "LocalLink",
    "NetworkNotFound",
    "PairingToken",
    "PhoneApp",
    "Session",
    "SoftApLink",
    "UnexpectedApiError",
    "WifiChoice",
    "WrongWifiPassword",
    "api_error",
    "outbox_code_reader",
]
