"""Seal secrets (e.g. Wi-Fi credentials) to a device's certificate key.

ECIES over P-256: a fresh ephemeral key pair per message, ECDH with the
device's certificate key, HKDF-SHA256 to a one-time AES-256-GCM key and nonce,
and the device serial plus the command id as associated data, so a sealed blob
opens only for that device and that command.

Envelope, version 1 (binary; :func:`seal_text` gives base64url without padding)::

    +------+---------------------------+---------------------------+
    | 0x01 | ephemeral public key (33) | AES-GCM ciphertext + tag  |
    |      | SEC1 compressed point     | len(plaintext) + 16 bytes |
    +------+---------------------------+---------------------------+

    shared   = ECDH(ephemeral private, device public)
    okm      = HKDF-SHA256(ikm=shared, salt=none,
                           info="zanuo/seal/v1" || ephemeral || device public (compressed),
                           length=44)
    key, iv  = okm[:32], okm[32:44]   (unique per message: the ephemeral key is)
    aad      = "zanuo/seal/v1" || u16 len || serial || u16 len || command id

The plaintext exists only in memory: nothing here writes, logs or keeps it.
(Python cannot wipe ``bytes``; callers drop their references promptly.)
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from provisioning.security.ca import common_name
from provisioning.security.errors import SealError

ENVELOPE_VERSION: Final = 1
MAX_PLAINTEXT_BYTES: Final = 4096
MAX_COMMAND_ID_BYTES: Final = 128
_CONTEXT: Final = b"zanuo/seal/v1"
_POINT_LEN: Final = 33
_TAG_LEN: Final = 16
_HEADER_LEN: Final = 1 + _POINT_LEN
MIN_ENVELOPE_BYTES: Final = _HEADER_LEN + _TAG_LEN  # an envelope sealing empty plaintext


def _compressed(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)


def _field(value: str, limit: int, name: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise SealError(f"the {name} must be a non-empty string", field=name)
    raw = value.encode("utf-8")
    if len(raw) > limit:
        raise SealError(f"the {name} is longer than {limit} bytes", field=name)
    return len(raw).to_bytes(2, "big") + raw


def _associated_data(serial: str, command_id: str) -> bytes:
    return (
        _CONTEXT
        + _field(serial, 64, "serial")
        + _field(command_id, MAX_COMMAND_ID_BYTES, "command_id")
    )


def _derive(shared: bytes, ephemeral: bytes, recipient: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(
        algorithm=hashes.SHA256(),
        length=44,
        salt=None,
        info=_CONTEXT + ephemeral + recipient,
    ).derive(shared)
    return okm[:32], okm[32:]


def _recipient_key(
    recipient: x509.Certificate | ec.EllipticCurvePublicKey, serial: str
) -> ec.EllipticCurvePublicKey:
    if isinstance(recipient, x509.Certificate):
        if common_name(recipient) != serial:
            # Sealing to the wrong device's certificate would "work" and then
            # fail on the device; refuse here where the mistake is visible.
            raise SealError("the certificate does not belong to this serial", serial=serial)
        key = recipient.public_key()
    else:
        key = recipient
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SealError("sealing needs a P-256 device key", serial=serial)
    return key


def seal(
    recipient: x509.Certificate | ec.EllipticCurvePublicKey,
    plaintext: bytes,
    *,
    serial: str,
    command_id: str,
) -> bytes:
    """Seal ``plaintext`` to a device's certificate (or public key) for one command."""
    if not isinstance(plaintext, bytes) or len(plaintext) > MAX_PLAINTEXT_BYTES:
        raise SealError(f"the plaintext must be bytes of at most {MAX_PLAINTEXT_BYTES}")
    aad = _associated_data(serial, command_id)
    device_key = _recipient_key(recipient, serial)
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    ephemeral_point = _compressed(ephemeral.public_key())
    shared = ephemeral.exchange(ec.ECDH(), device_key)
    key, iv = _derive(shared, ephemeral_point, _compressed(device_key))
    ciphertext = AESGCM(key).encrypt(
        iv, plaintext, bytes([ENVELOPE_VERSION]) + ephemeral_point + aad
    )
    return bytes([ENVELOPE_VERSION]) + ephemeral_point + ciphertext


def seal_text(
    recipient: x509.Certificate | ec.EllipticCurvePublicKey,
    plaintext: bytes,
    *,
    serial: str,
    command_id: str,
) -> str:
    """Seal like :func:`seal` and return the envelope as unpadded base64url (for JSON)."""
    envelope = seal(recipient, plaintext, serial=serial, command_id=command_id)
    return base64.urlsafe_b64encode(envelope).rstrip(b"=").decode("ascii")


def decode_envelope_text(text: str) -> bytes:
    """Decode an unpadded base64url envelope, raising :class:`SealError` on bad text."""
    try:
        raw = text.encode("ascii")
        return base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise SealError("the sealed message is not base64url") from None


def open_sealed(
    private_key: ec.EllipticCurvePrivateKey,
    envelope: bytes | str,
    *,
    serial: str,
    command_id: str,
) -> bytes:
    """Open an envelope on the device with its certificate's private key."""
    data = decode_envelope_text(envelope) if isinstance(envelope, str) else envelope
    aad = _associated_data(serial, command_id)
    if len(data) < MIN_ENVELOPE_BYTES:
        raise SealError("the sealed message is truncated")
    if data[0] != ENVELOPE_VERSION:
        raise SealError("unsupported sealed message version", version=data[0])
    if not isinstance(private_key.curve, ec.SECP256R1):
        raise SealError("opening needs a P-256 device key")
    ephemeral_point = data[1:_HEADER_LEN]
    try:
        ephemeral = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), ephemeral_point)
        shared = private_key.exchange(ec.ECDH(), ephemeral)
    except ValueError:
        raise SealError() from None
    key, iv = _derive(shared, ephemeral_point, _compressed(private_key.public_key()))
    try:
        return AESGCM(key).decrypt(iv, data[_HEADER_LEN:], data[:_HEADER_LEN] + aad)
    except InvalidTag:
        # One message for wrong key, wrong serial/command id and tampering:
        # telling them apart would only help an attacker.
        raise SealError() from None
