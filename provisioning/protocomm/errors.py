"""The one exception root of the protocomm library.

Foreign exceptions (aiohttp, bleak, bumble, cryptography, protobuf) are turned
into these at the library boundary with ``raise ... from err``. Errors that
mirror a protocomm ``Status`` carry it, so a client can tell a wrong PoP
(``CryptoError``) from a full device (``TooManySessions``).
"""

from __future__ import annotations

from typing import ClassVar


class ProtocommError(Exception):
    """Root of every error the protocomm library raises on purpose."""

    code: ClassVar[str] = "protocomm_error"


class TransportError(ProtocommError, ConnectionError):
    """The link to the peer failed (HTTP, BLE) or the peer refused the request."""

    code = "transport_error"


class ProtocolError(ProtocommError):
    """A message could not be decoded or did not fit the protocol state."""

    code = "protocol_error"

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class SessionError(ProtocolError):
    """The device answered a handshake message with a non-success status."""

    code = "session_error"


class HandshakeFailed(SessionError):
    """The session keys did not agree: wrong PoP or SRP password (``CryptoError``)."""

    code = "handshake_failed"


class CryptoFailure(ProtocommError):
    """A ciphertext did not authenticate or a key agreement produced no key."""

    code = "crypto_failure"


class RequestRejected(ProtocommError):
    """An endpoint refused a request (undecodable or not allowed now)."""

    code = "request_rejected"

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class WifiConnectFailed(ProtocommError):
    """The device could not join the network; ``reason`` is ``AuthError`` or ``NetworkNotFound``."""

    code = "wifi_connect_failed"

    def __init__(self, reason: str) -> None:
        super().__init__(f"Wi-Fi connection failed: {reason}")
        self.reason = reason


class BindFailed(ProtocommError):
    """The device refused the ``zn-bind`` request; ``status`` is the ``ZnBindStatus`` name."""

    code = "bind_failed"

    def __init__(self, status: str) -> None:
        super().__init__(f"zn-bind refused: {status}")
        self.status = status


class BindProofInvalid(ProtocommError):
    """A ``zn-bind`` proof does not verify against the device key and token."""

    code = "bind_proof_invalid"
