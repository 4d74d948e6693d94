"""Endpoint names, their BLE ids and the ``proto-ver`` JSON model shared by both sides."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from provisioning.protocomm.errors import ProtocolError

PROTO_VER = "proto-ver"
PROV_SESSION = "prov-session"
PROV_CONFIG = "prov-config"
PROV_SCAN = "prov-scan"
PROV_CTRL = "prov-ctrl"
ZN_BIND = "zn-bind"

# 16-bit ids that replace bytes 2-3 of the service UUID over BLE.
STANDARD_UUID16: dict[str, int] = {
    PROTO_VER: 0xFF53,
    PROV_SESSION: 0xFF51,
    PROV_CONFIG: 0xFF52,
    PROV_SCAN: 0xFF50,
    PROV_CTRL: 0xFF4F,
}
FIRST_CUSTOM_UUID16 = 0xFF54
MAX_REQUEST_LEN = 4096

CAP_WIFI_SCAN = "wifi_scan"
CAP_NO_POP = "no_pop"
CAP_NO_SEC = "no_sec"


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """The ``proto-ver`` answer: protocol version, security scheme and capabilities."""

    prov_ver: str = "v1.1"
    sec_ver: int = 2
    sec_patch_ver: int = 1
    capabilities: tuple[str, ...] = (CAP_WIFI_SCAN,)
    zn_ver: str = "1"
    device_type: str = "device"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> bytes:
        """Encode as Espressif's JSON plus our ``zn`` section."""
        prov: dict[str, Any] = {
            "ver": self.prov_ver,
            "sec_ver": self.sec_ver,
            "cap": list(self.capabilities),
        }
        if self.sec_ver == 2:
            prov["sec_patch_ver"] = self.sec_patch_ver
        document = {"prov": prov, "zn": {"ver": self.zn_ver, "type": self.device_type}}
        return json.dumps(document, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> VersionInfo:
        """Decode a ``proto-ver`` answer; a device without ``sec_ver`` is an old sec1 device."""
        try:
            document = json.loads(data)
            prov = document.get("prov", {})
            zn = document.get("zn", {})
            return cls(
                prov_ver=str(prov.get("ver", "")),
                sec_ver=int(prov.get("sec_ver", 1)),
                sec_patch_ver=int(prov.get("sec_patch_ver", 0)),
                capabilities=tuple(str(c) for c in prov.get("cap", [])),
                zn_ver=str(zn.get("ver", "")),
                device_type=str(zn.get("type", "")),
                extra={k: v for k, v in document.items() if k not in ("prov", "zn")},
            )
        except (ValueError, AttributeError, TypeError) as err:
            raise ProtocolError("proto-ver answer is not the expected JSON") from err
