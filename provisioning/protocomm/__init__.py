"""ESP-IDF-compatible local provisioning ("protocomm") for Zanuo devices, apps and hubs.

Client side: :class:`ProvisioningClient` over :class:`HttpTransport` or
:class:`BleTransport`. Device side: :class:`ProvisioningDevice` served by
:class:`ProtocommHttpServer` or :class:`ProtocommGattServer` (bumble, imported
from ``provisioning.protocomm.ble_server``). Cloud side:
:func:`verify_bind_proof`. Wire details are in ``docs/PROTOCOMM.md``.
"""

from __future__ import annotations

from provisioning.protocomm.bind import (
    BindHandler,
    BindRefused,
    BindRequest,
    BindResult,
    bind_proof_message,
    verify_bind_proof,
)
from provisioning.protocomm.ble import BleTransport
from provisioning.protocomm.client import Credentials, ProvisioningClient, Transport
from provisioning.protocomm.device import ProtocommDevice, SessionState
from provisioning.protocomm.endpoints import VersionInfo
from provisioning.protocomm.errors import (
    BindFailed,
    BindProofInvalid,
    CryptoFailure,
    HandshakeFailed,
    ProtocolError,
    ProtocommError,
    RequestRejected,
    SessionError,
    TransportError,
    WifiConnectFailed,
)
from provisioning.protocomm.http import HttpTransport, ProtocommHttpServer, create_protocomm_app
from provisioning.protocomm.local import LocalTransport
from provisioning.protocomm.security import (
    Sec0Client,
    Sec0Config,
    Sec1Client,
    Sec1Config,
    Sec2Client,
    Sec2Config,
    SecurityConfig,
)
from provisioning.protocomm.service import ProvisioningDevice
from provisioning.protocomm.wifi import (
    AccessPointInfo,
    AuthMode,
    Connection,
    FailReason,
    JoinFailed,
    StationState,
    WifiCredentials,
    WifiStation,
    WifiStatus,
)

__all__ = [
    "AccessPointInfo",
    "AuthMode",
    "BindFailed",
    "BindHandler",
    "BindProofInvalid",
    "BindRefused",
    "BindRequest",
    "BindResult",
    "BleTransport",
    "Connection",
    "Credentials",
    "CryptoFailure",
    "FailReason",
    "HandshakeFailed",
    "HttpTransport",
    "JoinFailed",
    "LocalTransport",
    "ProtocolError",
    "ProtocommDevice",
    "ProtocommError",
    "ProtocommHttpServer",
    "ProvisioningClient",
    "ProvisioningDevice",
    "RequestRejected",
    "Sec0Client",
    "Sec0Config",
    "Sec1Client",
    "Sec1Config",
    "Sec2Client",
    "Sec2Config",
    "SecurityConfig",
    "SessionError",
    "SessionState",
    "StationState",
    "Transport",
    "TransportError",
    "VersionInfo",
    "WifiConnectFailed",
    "WifiCredentials",
    "WifiStation",
    "WifiStatus",
    "bind_proof_message",
    "create_protocomm_app",
    "verify_bind_proof",
]
