"""A simulated device's flash folder: factory identity plus the state it gathers in the field.

Layout (what ``zanuo devices import --generate-into DIR`` and
``provisioning.security.ca.manufacture_device`` write, plus one runtime file)::

    DIR/<serial>/device.key.pem   device private key (P-256, 0600)   factory
    DIR/<serial>/device.crt.pem   device certificate, CN = serial      factory
    DIR/<serial>/ca.crt.pem       the device CA                        factory
    DIR/<serial>/device.json      serial, model, type, label code …   factory (optional)
    DIR/<serial>/state.json       bind token, broker, Wi-Fi, children,
                                  fingerprint templates                runtime (0600)

:meth:`DeviceFlash.factory_reset` restores the factory state: it deletes
``state.json`` and keeps the identity. Without ``device.json`` (a folder from
``mint_device``) the serial comes from the certificate and there is no label
code. Like real NVS, ``state.json`` holds the Wi-Fi passphrase and the
templates: keep flash folders out of the service's data directory.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import ssl
from pathlib import Path
from typing import Any, Final, Self

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.mqtt.broker import client_tls_context
from provisioning.protocomm.wifi import WifiCredentials
from provisioning.security import ca as device_ca
from provisioning.security import codes

_LOGGER = logging.getLogger(__name__)

DEVICE_INFO_FILE: Final = "device.json"
STATE_FILE: Final = "state.json"


class FlashError(Exception):
    """The flash folder is missing a file or holds something unreadable."""


@dataclasses.dataclass(frozen=True, slots=True)
class FactoryInfo:
    """What the factory wrote into ``device.json`` (the label code stays out of ``repr``)."""

    serial: str
    model: str
    device_type: str
    capabilities: tuple[str, ...] = ()
    label_code: str | None = dataclasses.field(default=None, repr=False)
    ble_mac: str | None = None
    firmware_version: str = "1.0.0"

    @property
    def label_payload(self) -> str:
        """Return the QR payload printed on the label (``ZN1:<serial>:<code>:<model>``)."""
        return codes.format_label_payload(self.serial, self.label_code, self.model)

    def to_json(self) -> dict[str, Any]:
        """Return the ``device.json`` document."""
        return {
            "serial": self.serial,
            "model": self.model,
            "type": self.device_type,
            "capabilities": list(self.capabilities),
            "label_code": self.label_code,
            "ble_mac": self.ble_mac,
            "firmware_version": self.firmware_version,
            "label_payload": self.label_payload,
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> FactoryInfo:
        """Read a ``device.json`` document."""
        return cls(
            serial=str(document["serial"]),
            model=str(document.get("model") or "UNKNOWN"),
            device_type=str(document.get("type") or "camera"),
            capabilities=tuple(document.get("capabilities") or ()),
            label_code=document.get("label_code"),
            ble_mac=document.get("ble_mac"),
            firmware_version=str(document.get("firmware_version") or "1.0.0"),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class ChildLink:
    """A BLE child a hub relays for: its serial and BLE address."""

    serial: str
    ble_address: str


@dataclasses.dataclass(slots=True)
class RuntimeState:
    """What a device learns after leaving the factory; all of it goes on factory reset."""

    bind_token: str | None = dataclasses.field(default=None, repr=False)
    broker_host: str | None = None
    broker_port: int | None = None
    bound: bool = False
    wifi: WifiCredentials | None = None
    children: list[ChildLink] = dataclasses.field(default_factory=list)
    fingerprints: list[bytes] = dataclasses.field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, Any]:
        """Return the ``state.json`` document."""
        wifi = self.wifi
        return {
            "bind_token": self.bind_token,
            "broker_host": self.broker_host,
            "broker_port": self.broker_port,
            "bound": self.bound,
            "wifi": None
            if wifi is None
            else {
                "ssid": _b64(wifi.ssid),
                "passphrase": _b64(wifi.passphrase),
                "bssid": wifi.bssid.hex(),
                "channel": wifi.channel,
            },
            "children": [dataclasses.asdict(child) for child in self.children],
            "fingerprints": [_b64(template) for template in self.fingerprints],
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> RuntimeState:
        """Read a ``state.json`` document."""
        wifi = document.get("wifi")
        return cls(
            bind_token=document.get("bind_token"),
            broker_host=document.get("broker_host"),
            broker_port=document.get("broker_port"),
            bound=bool(document.get("bound")),
            wifi=None
            if wifi is None
            else WifiCredentials(
                ssid=base64.b64decode(wifi["ssid"]),
                passphrase=base64.b64decode(wifi["passphrase"]),
                bssid=bytes.fromhex(wifi.get("bssid") or ""),
                channel=int(wifi.get("channel") or 0),
            ),
            children=[ChildLink(**child) for child in document.get("children") or ()],
            fingerprints=[base64.b64decode(t) for t in document.get("fingerprints") or ()],
        )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class DeviceFlash:
    """One device's flash folder: identity (read-only) and runtime state (saved on change)."""

    def __init__(self, folder: Path, info: FactoryInfo, state: RuntimeState) -> None:
        self.folder = Path(folder)
        self.info = info
        self.state = state
        self._key: ec.EllipticCurvePrivateKey | None = None

    @classmethod
    def load(cls, folder: Path) -> Self:
        """Read a flash folder written by the factory import or ``manufacture_device``."""
        folder = Path(folder)
        try:
            certificate = device_ca.read_certificate(folder / device_ca.DEVICE_CERT_FILE)
        except (OSError, ValueError) as err:
            raise FlashError(f"no readable device certificate in {folder}") from err
        cert_serial = device_ca.common_name(certificate)
        info_path = folder / DEVICE_INFO_FILE
        if info_path.exists():
            info = FactoryInfo.from_json(_read_json(info_path))
            if info.serial != cert_serial:
                raise FlashError("device.json and the certificate name different serials")
        elif cert_serial is not None:
            info = FactoryInfo(serial=cert_serial, model="UNKNOWN", device_type="camera")
        else:
            raise FlashError("the device certificate has no common name")
        state_path = folder / STATE_FILE
        state = RuntimeState.from_json(_read_json(state_path)) if state_path.exists() else None
        return cls(folder, info, state or RuntimeState())

    @staticmethod
    def write_factory_info(folder: Path, info: FactoryInfo) -> None:
        """Write ``device.json`` the way the factory import does (tests, demos)."""
        device_ca.write_file_atomically(
            Path(folder) / DEVICE_INFO_FILE,
            (json.dumps(info.to_json(), indent=2) + "\n").encode(),
            durable=False,
        )

    @property
    def serial(self) -> str:
        """Return the device serial."""
        return self.info.serial

    @property
    def cert_file(self) -> Path:
        """Return the device certificate path."""
        return self.folder / device_ca.DEVICE_CERT_FILE

    @property
    def key_file(self) -> Path:
        """Return the device key path."""
        return self.folder / device_ca.DEVICE_KEY_FILE

    @property
    def ca_file(self) -> Path:
        """Return the device CA certificate path."""
        return self.folder / device_ca.DEVICE_CA_FILE

    def private_key(self) -> ec.EllipticCurvePrivateKey:
        """Return the device key (loaded once)."""
        if self._key is None:
            key = serialization.load_pem_private_key(self.key_file.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise FlashError("the device key is not an EC key")
            self._key = key
        return self._key

    def tls_context(self, broker_ca_file: Path | None = None) -> ssl.SSLContext:
        """Return the MQTT TLS context, trusting ``broker_ca_file`` (default: the device CA)."""
        return client_tls_context(broker_ca_file or self.ca_file, self.cert_file, self.key_file)

    def save(self) -> None:
        """Write the runtime state (atomic; not fsynced, it is simulated flash)."""
        device_ca.write_file_atomically(
            self.folder / STATE_FILE,
            json.dumps(self.state.to_json()).encode(),
            durable=False,
        )

    def factory_reset(self) -> None:
        """Forget everything but the identity: bind state, broker, Wi-Fi, children, templates."""
        self.state = RuntimeState()
        (self.folder / STATE_FILE).unlink(missing_ok=True)
        _LOGGER.info("%s: flash restored to factory state", self.serial)

    @property
    def is_factory_fresh(self) -> bool:
        """Tell whether the flash holds nothing but the factory identity."""
        return not (self.folder / STATE_FILE).exists() and self.state == RuntimeState()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise FlashError(f"{path.name} is unreadable") from err
    if not isinstance(document, dict):
        raise FlashError(f"{path.name} is not a JSON object")
    return document


__all__ = [
    "DEVICE_INFO_FILE",
    "STATE_FILE",
    "ChildLink",
    "DeviceFlash",
    "FactoryInfo",
    "FlashError",
    "RuntimeState",
]
