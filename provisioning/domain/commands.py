"""Commands to devices: the sender seam and the remote Wi-Fi change.

The domain never talks MQTT itself. It hands a :class:`DeviceCommand` to a
:class:`DeviceCommandSender` (the MQTT bridge implements it in ``gateway``;
the CLI injects it). Commands whose arguments hold a secret — a Wi-Fi
passphrase, even sealed — never go through the ``commands`` outbox table:
they are sent at once to an online device with a short expiry, or refused.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Mapping
from typing import Any, Final, Protocol

from cryptography import x509
from sqlalchemy import select

from provisioning.domain.accounts import Principal
from provisioning.domain.devices import DeviceService
from provisioning.errors import (
    DeviceNotFound,
    DeviceOffline,
    ServiceUnavailable,
    TokenExpired,
    TokenInvalid,
    TokenUsed,
    ValidationFailed,
    ZanuoError,
)
from provisioning.metrics import Metrics
from provisioning.security import sealing
from provisioning.security.errors import SealError
from provisioning.security.tokens import hash_token
from provisioning.storage.devices import Device, PairingToken

WIFI_COMMAND: Final = "wifi"
WIFI_EXPIRY_S: Final = 30
_MIN_ENVELOPE: Final = 1 + 33 + 16


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceCommand:
    """One command for one device; ``args`` may hold sealed secrets and is never printed."""

    id: str
    serial: str
    name: str
    args: Mapping[str, Any] = dataclasses.field(repr=False)


class DeviceCommandSender(Protocol):
    """Deliver a command to an online device right now (the MQTT bridge implements it)."""

    async def send_now(self, command: DeviceCommand, *, expiry_s: int) -> None:
        """Publish ``command`` (QoS 1, not retained, expiring) or raise DeviceOffline."""
        ...


class BridgeUnavailable(ServiceUnavailable):
    """No MQTT bridge is connected, so no command can reach a device now."""

    code = "bridge_unavailable"
    default_message = "device commands are not available right now"


@dataclasses.dataclass(frozen=True, slots=True)
class WifiCredentials:
    """Plain Wi-Fi credentials, held in memory only until they are sealed."""

    ssid: str
    passphrase: str = dataclasses.field(repr=False)
    bssid: str | None = None

    def to_json(self) -> bytes:
        """Return the plaintext the device opens (compact JSON)."""
        document: dict[str, str] = {"ssid": self.ssid, "passphrase": self.passphrase}
        if self.bssid is not None:
            document["bssid"] = self.bssid
        return json.dumps(document, separators=(",", ":")).encode()


def check_envelope(envelope: str) -> None:
    """Refuse text that cannot be a sealed envelope (it is opened only on the device)."""
    try:
        raw = sealing.decode_envelope_text(envelope)
    except SealError:
        raise ValidationFailed("sealed is not base64url") from None
    if len(raw) < _MIN_ENVELOPE or raw[0] != sealing.ENVELOPE_VERSION:
        raise ValidationFailed("sealed is not a version 1 envelope")


class WifiChanges:
    """Send new Wi-Fi credentials to an online device the caller owns."""

    def __init__(
        self, devices: DeviceService, sender: DeviceCommandSender | None, metrics: Metrics
    ) -> None:
        self._devices = devices
        self._sender = sender
        self._metrics = metrics

    async def recipient(self, principal: Principal, serial: str) -> str:
        """Return the PEM certificate the app seals to (owner only)."""
        async with self._devices.db.session() as session:
            await self._devices.require_owner(session, principal, serial)
            device = await session.get(Device, serial)
        if device is None:
            raise DeviceNotFound(serial=serial)
        return device.certificate_pem

    async def _online_device(self, principal: Principal, serial: str) -> Device:
        async with self._devices.db.session() as session:
            await self._devices.require_owner(session, principal, serial)
            device = await session.get(Device, serial)
        if device is None or not device.online:
            self._metrics.commands.labels(WIFI_COMMAND, "offline").inc()
            raise DeviceOffline(serial=serial)
        return device

    async def send_sealed(
        self, principal: Principal, serial: str, command_id: uuid.UUID, envelope: str
    ) -> DeviceCommand:
        """Forward an envelope the app sealed to the device key for ``command_id``."""
        check_envelope(envelope)
        await self._online_device(principal, serial)
        return await self._send(
            DeviceCommand(str(command_id), serial, WIFI_COMMAND, {"sealed": envelope})
        )

    async def send_plain(
        self, principal: Principal, serial: str, credentials: WifiCredentials
    ) -> DeviceCommand:
        """Seal plain credentials to the device certificate in memory, then send them."""
        device = await self._online_device(principal, serial)
        command_id = str(uuid.uuid4())
        certificate = x509.load_pem_x509_certificate(device.certificate_pem.encode())
        envelope = sealing.seal_text(
            certificate, credentials.to_json(), serial=serial, command_id=command_id
        )
        return await self._send(
            DeviceCommand(command_id, serial, WIFI_COMMAND, {"sealed": envelope})
        )

    async def _send(self, command: DeviceCommand) -> DeviceCommand:
        if self._sender is None:
            raise BridgeUnavailable()
        await self._sender.send_now(command, expiry_s=WIFI_EXPIRY_S)
        return command


BLE_PAIR_COMMAND: Final = "ble_pair"
BLE_PAIR_EXPIRY_S: Final = 60


class HubPairings:
    """Ask a hub the caller owns to pair a nearby code-less device with a pairing token.

    The token is a secret, so the command goes out at once to an online hub
    (never through the outbox table) and only while the token is live.
    """

    def __init__(
        self, devices: DeviceService, sender: DeviceCommandSender | None, metrics: Metrics
    ) -> None:
        self._devices = devices
        self._sender = sender
        self._metrics = metrics

    async def pair(
        self, principal: Principal, hub: str, token: str, ble_address: str | None
    ) -> DeviceCommand:
        """Check the hub and the token, then send the hub a ``ble_pair`` command."""
        now = self._devices.clock.now()
        async with self._devices.db.session() as session:
            await self._devices.require_owner(session, principal, hub)
            device = await session.get(Device, hub)
            pairing = (
                await session.execute(
                    select(PairingToken).where(PairingToken.token_hash == hash_token(token))
                )
            ).scalar_one_or_none()
        if device is None:
            raise DeviceNotFound(serial=hub)
        if "ble_hub" not in device.capabilities and device.device_type != "hub":
            raise NotAHub(serial=hub)
        if pairing is None or pairing.account_id != principal.account_id:
            raise TokenInvalid()
        if pairing.used_at is not None:
            raise TokenUsed()
        if pairing.expires_at <= now:
            raise TokenExpired()
        if not device.online:
            self._metrics.commands.labels(BLE_PAIR_COMMAND, "offline").inc()
            raise DeviceOffline(serial=hub)
        if self._sender is None:
            raise BridgeUnavailable()
        args = {"token": token} | ({"ble_address": ble_address} if ble_address else {})
        command = DeviceCommand(str(uuid.uuid4()), hub, BLE_PAIR_COMMAND, args)
        await self._sender.send_now(command, expiry_s=BLE_PAIR_EXPIRY_S)
        self._metrics.commands.labels(BLE_PAIR_COMMAND, "sent").inc()
        return command


class NotAHub(ZanuoError):
    """The device cannot pair BLE devices."""

    status = 409
    code = "not_a_hub"
    default_message = "this device is not a BLE hub"


__all__ = [
    "BLE_PAIR_COMMAND",
    "WIFI_COMMAND",
    "WIFI_EXPIRY_S",
    "BridgeUnavailable",
    "DeviceCommand",
    "DeviceCommandSender",
    "HubPairings",
    "NotAHub",
    "WifiChanges",
    "WifiCredentials",
    "check_envelope",
]
