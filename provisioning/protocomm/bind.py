"""The ``zn-bind`` endpoint: hand a device its bind/pairing token and broker address.

The device answers with its serial, a fresh 16-byte nonce and, when it has a
device key (code-less devices), a DER ECDSA P-256 / SHA-256 signature over
:func:`bind_proof_message`. The cloud checks it with :func:`verify_bind_proof`
against the device's registered certificate. Layout and status codes are in
``docs/PROTOCOMM.md``. Tokens are secrets: never logged.
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf.message import DecodeError

from provisioning.protocomm.errors import BindProofInvalid, RequestRejected
from provisioning.protocomm.proto import constants_pb2, zn_bind_pb2

_LOGGER = logging.getLogger(__name__)

BIND_PROOF_CONTEXT = b"zn-bind-proof-v1"
DEVICE_NONCE_LEN = 16
MAX_TOKEN_LEN = 256
MAX_BROKER_HOST_LEN = 253
MAX_SERIAL_LEN = 64


@dataclass(frozen=True, slots=True)
class BindRequest:
    """What the app or hub sends: the token and where the device's broker is."""

    token: bytes
    broker_host: str
    broker_port: int

    def __repr__(self) -> str:
        broker = f"{self.broker_host}:{self.broker_port}"
        return f"BindRequest(token=<{len(self.token)} bytes>, broker={broker})"

    def to_pb(self) -> zn_bind_pb2.ZnBindRequest:
        """Return the wire message."""
        return zn_bind_pb2.ZnBindRequest(
            token=self.token, broker_host=self.broker_host, broker_port=self.broker_port
        )

    @classmethod
    def from_pb(cls, message: zn_bind_pb2.ZnBindRequest) -> BindRequest:
        """Validate and convert the wire message; raise ``ValueError`` when out of range."""
        if not 0 < len(message.token) <= MAX_TOKEN_LEN:
            raise ValueError("token length out of range")
        if not 0 < len(message.broker_host) <= MAX_BROKER_HOST_LEN:
            raise ValueError("broker host length out of range")
        if not 0 < message.broker_port <= 0xFFFF:
            raise ValueError("broker port out of range")
        return cls(message.token, message.broker_host, message.broker_port)


@dataclass(frozen=True, slots=True)
class BindResult:
    """The device's answer: serial, nonce and (code-less devices) the signature."""

    serial: str
    device_nonce: bytes
    signature: bytes | None

    @classmethod
    def from_pb(cls, message: zn_bind_pb2.ZnBindResponse) -> BindResult:
        """Convert the wire message (status already checked)."""
        return cls(message.serial, message.device_nonce, message.signature or None)


class BindRefused(Exception):
    """Raised by a :class:`BindHandler` to refuse a token (answered as ``BindRejected``)."""


class BindHandler(Protocol):
    """The device's side of binding: it keeps the token for its MQTT bind confirmation."""

    @property
    def serial(self) -> str:
        """Return the device serial."""
        ...

    def signing_key(self) -> ec.EllipticCurvePrivateKey | None:
        """Return the device key for code-less devices, None when the label code authenticates."""
        ...

    async def accept_bind(self, request: BindRequest) -> None:
        """Store the token and broker address, or raise :class:`BindRefused`."""
        ...


def bind_proof_message(token: bytes, serial: str, device_nonce: bytes) -> bytes:
    """Return the signed bytes: context ‖ (u16be length ‖ field) for token, serial, nonce."""
    parts = [BIND_PROOF_CONTEXT]
    for field in (token, serial.encode(), device_nonce):
        parts.append(struct.pack(">H", len(field)))
        parts.append(field)
    return b"".join(parts)


def sign_bind_proof(
    key: ec.EllipticCurvePrivateKey, token: bytes, serial: str, device_nonce: bytes
) -> bytes:
    """Sign the bind proof with the device key (DER ECDSA P-256 / SHA-256)."""
    return key.sign(bind_proof_message(token, serial, device_nonce), ec.ECDSA(hashes.SHA256()))


def verify_bind_proof(
    device_key: ec.EllipticCurvePublicKey | x509.Certificate,
    token: bytes,
    serial: str,
    device_nonce: bytes,
    signature: bytes,
) -> None:
    """Check a ``zn-bind`` proof against the device's public key or certificate; raise if bad."""
    public_key = device_key.public_key() if isinstance(device_key, x509.Certificate) else device_key
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP256R1
    ):
        raise BindProofInvalid("the device key is not ECDSA P-256")
    if len(device_nonce) != DEVICE_NONCE_LEN:
        raise BindProofInvalid("the device nonce has the wrong length")
    try:
        public_key.verify(
            signature, bind_proof_message(token, serial, device_nonce), ec.ECDSA(hashes.SHA256())
        )
    except InvalidSignature as err:
        raise BindProofInvalid("the bind proof signature does not verify") from err


class BindEndpoint:
    """Serves ``zn-bind`` for one device, delegating the token to a :class:`BindHandler`."""

    def __init__(self, handler: BindHandler) -> None:
        self._handler = handler

    async def __call__(self, session_id: int, data: bytes) -> bytes:
        """Serve one ``zn-bind`` request."""
        message = zn_bind_pb2.ZnBindRequest()
        try:
            message.ParseFromString(data)
        except DecodeError as err:
            raise RequestRejected(
                "undecodable zn-bind request", constants_pb2.InvalidProto
            ) from err
        response = zn_bind_pb2.ZnBindResponse(serial=self._handler.serial)
        try:
            request = BindRequest.from_pb(message)
        except ValueError:
            response.status = zn_bind_pb2.BindInvalidArgument
            return response.SerializeToString()
        try:
            await self._handler.accept_bind(request)
        except BindRefused:
            _LOGGER.info("zn-bind refused by the device")
            response.status = zn_bind_pb2.BindRejected
            return response.SerializeToString()
        except Exception:
            # Whatever the device's own store does, the app gets a status it can show.
            _LOGGER.exception("zn-bind handler failed")
            response.status = zn_bind_pb2.BindInternalError
            return response.SerializeToString()
        nonce = os.urandom(DEVICE_NONCE_LEN)
        response.status = zn_bind_pb2.BindOk
        response.device_nonce = nonce
        key = self._handler.signing_key()
        if key is not None:
            response.signature = sign_bind_proof(key, request.token, self._handler.serial, nonce)
        _LOGGER.info("zn-bind accepted for broker %s:%d", request.broker_host, request.broker_port)
        return response.SerializeToString()
