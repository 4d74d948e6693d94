"""Commands that carry secrets: remote Wi-Fi change and hub BLE pairing.

The credentials reach the device sealed to its certificate key (ECDH P-256 +
HKDF-SHA256 + AES-256-GCM, serial and command id as associated data). The app
either seals them itself (preferred: ``sealed`` + the ``command_id`` it sealed
for) or sends them plain over TLS and the service seals them at once, in
memory. Either way they go only to an online device, QoS 1, not retained, with
a short expiry, and are written nowhere: not the database, not the logs, not
the broker's persistence (an offline device is refused instead of queued).

``POST /v1/devices/{hub}/ble-pairings`` sends a hub the pairing token the
same way. The routes are always declared (so the OpenAPI document never
changes); the composition root puts the MQTT bridge under
:data:`COMMAND_SENDER_KEY`, and without it they answer ``503
bridge_unavailable``.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Self

from aiohttp import web
from pydantic import Field, SecretStr, StringConstraints, model_validator

from provisioning.api.keys import SERVICES_KEY
from provisioning.api.models import RequestModel, ResponseModel
from provisioning.api.routing import Routes
from provisioning.api.session import path_serial, principal
from provisioning.domain.commands import (
    BLE_PAIR_EXPIRY_S,
    WIFI_EXPIRY_S,
    BridgeUnavailable,
    DeviceCommandSender,
    HubPairings,
    NotAHub,
    WifiChanges,
    WifiCredentials,
)
from provisioning.errors import (
    DeviceNotFound,
    DeviceOffline,
    NotOwner,
    TokenExpired,
    TokenInvalid,
    TokenUsed,
)

routes = Routes(tag="devices")

COMMAND_SENDER_KEY = web.AppKey("command_sender", DeviceCommandSender)

Ssid = Annotated[str, StringConstraints(min_length=1, max_length=32, strip_whitespace=False)]
Bssid = Annotated[str, StringConstraints(pattern=r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")]
Envelope = Annotated[str, StringConstraints(min_length=60, max_length=8192)]


class WifiChangeRequest(RequestModel):
    """Either ``sealed`` + ``command_id`` (sealed by the app) or ``ssid`` + ``passphrase``."""

    sealed: Envelope | None = None
    command_id: uuid.UUID | None = None
    ssid: Ssid | None = None
    passphrase: SecretStr | None = None
    bssid: Bssid | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        plain = self.ssid is not None or self.passphrase is not None or self.bssid is not None
        if self.sealed is not None:
            if plain:
                raise ValueError("send either sealed credentials or plain ones, not both")
            if self.command_id is None:
                raise ValueError("sealed credentials need the command_id they were sealed for")
            return self
        if self.command_id is not None:
            raise ValueError("command_id goes with sealed credentials only")
        if self.ssid is None or self.passphrase is None:
            raise ValueError("send sealed credentials, or ssid and passphrase")
        if not 8 <= len(self.passphrase.get_secret_value()) <= 64:
            raise ValueError("the passphrase must be 8-64 characters")
        return self


class WifiRecipient(ResponseModel):
    serial: str
    certificate_pem: str


class WifiChangeSent(ResponseModel):
    command_id: str
    expires_in_s: int


@routes.route(
    "GET",
    "/v1/devices/{serial}/wifi/recipient",
    summary="The device certificate to seal Wi-Fi credentials to (owner only)",
    response=WifiRecipient,
    errors=(DeviceNotFound, NotOwner),
)
async def wifi_recipient(request: web.Request) -> WifiRecipient:
    """Return the device certificate; seal to it with the serial and a fresh command id."""
    serial = path_serial(request)
    services = request.app[SERVICES_KEY]
    certificate_pem = await WifiChanges(
        services.devices, request.app.get(COMMAND_SENDER_KEY), services.metrics
    ).recipient(principal(request), serial)
    return WifiRecipient(serial=serial, certificate_pem=certificate_pem)


@routes.route(
    "POST",
    "/v1/devices/{serial}/wifi",
    summary="Send new Wi-Fi credentials to an online device you own (never stored)",
    body=WifiChangeRequest,
    response=WifiChangeSent,
    status=202,
    errors=(DeviceNotFound, NotOwner, DeviceOffline, BridgeUnavailable),
)
async def change_wifi(request: web.Request, body: WifiChangeRequest) -> WifiChangeSent:
    """Seal (if needed) and send Wi-Fi credentials to the device now."""
    serial = path_serial(request)
    services = request.app[SERVICES_KEY]
    changes = WifiChanges(services.devices, request.app.get(COMMAND_SENDER_KEY), services.metrics)
    caller = principal(request)
    if body.sealed is not None and body.command_id is not None:
        command = await changes.send_sealed(caller, serial, body.command_id, body.sealed)
    else:
        assert body.ssid is not None  # checked by the model
        assert body.passphrase is not None
        credentials = WifiCredentials(
            ssid=body.ssid, passphrase=body.passphrase.get_secret_value(), bssid=body.bssid
        )
        command = await changes.send_plain(caller, serial, credentials)
        del credentials
    return WifiChangeSent(command_id=command.id, expires_in_s=WIFI_EXPIRY_S)


class BlePairingRequest(RequestModel):
    token: Annotated[str, StringConstraints(min_length=8, max_length=256)] = Field(
        description="a pairing token from POST /v1/pairing-tokens"
    )
    ble_address: (
        Annotated[str, StringConstraints(pattern=r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}(/P)?$")]
        | None
    ) = None


class BlePairingSent(ResponseModel):
    command_id: str
    expires_in_s: int


@routes.route(
    "POST",
    "/v1/devices/{serial}/ble-pairings",
    summary="Ask your online BLE hub to pair a nearby device with a pairing token",
    body=BlePairingRequest,
    response=BlePairingSent,
    status=202,
    errors=(
        DeviceNotFound,
        NotOwner,
        DeviceOffline,
        BridgeUnavailable,
        NotAHub,
        TokenInvalid,
        TokenUsed,
        TokenExpired,
    ),
)
async def pair_through_hub(request: web.Request, body: BlePairingRequest) -> BlePairingSent:
    """Send the hub a ble_pair command now; poll the pairing token for the result."""
    services = request.app[SERVICES_KEY]
    pairings = HubPairings(services.devices, request.app.get(COMMAND_SENDER_KEY), services.metrics)
    command = await pairings.pair(
        principal(request), path_serial(request), body.token, body.ble_address
    )
    return BlePairingSent(command_id=command.id, expires_in_s=BLE_PAIR_EXPIRY_S)
