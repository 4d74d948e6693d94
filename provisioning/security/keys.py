"""Key management: per-account data keys wrapped by rotating key-encryption keys.

Personal fields are sealed with AES-256-GCM under the account's data key (DEK);
the DEK is stored only wrapped by a key-encryption key (KEK) from the secrets
file, tagged with the KEK's id so KEKs can rotate. Destroying an account's
wrapped DEK makes everything sealed under it unreadable.

Lookups by email or phone use a keyed blind index (HMAC) instead of the value.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from provisioning.errors import ZanuoError

_FIELD_VERSION = b"\x01"
_NONCE_LEN = 12


class DecryptionFailed(ZanuoError):
    """A key could not be used (unknown id, destroyed key, tampered data)."""

    code = "key_error"
    default_message = "the data could not be decrypted"


def derive_subkey(pepper: bytes, label: str) -> bytes:
    """Derive a purpose-bound 32-byte key from the pepper (never use the pepper twice)."""
    return HKDF(algorithm=SHA256(), length=32, salt=None, info=label.encode()).derive(pepper)


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A data key sealed by one key-encryption key."""

    kek_id: str
    wrapped: bytes


class KeyRing:
    """The KEKs from the secrets file, one of them active for new wraps."""

    def __init__(self, keks: dict[str, bytes], active: str) -> None:
        if active not in keks:
            raise ValueError("the active key-encryption key is not in the ring")
        self._keks = dict(keks)
        self.active = active

    def new_data_key(self) -> tuple[bytes, WrappedKey]:
        """Create a fresh data key and return it with its wrapped form."""
        dek = AESGCM.generate_key(bit_length=256)
        return dek, self.wrap(dek)

    def wrap(self, dek: bytes) -> WrappedKey:
        """Seal a data key under the active KEK."""
        nonce = secrets.token_bytes(_NONCE_LEN)
        sealed = AESGCM(self._keks[self.active]).encrypt(nonce, dek, self.active.encode())
        return WrappedKey(self.active, _FIELD_VERSION + nonce + sealed)

    def unwrap(self, wrapped: WrappedKey) -> bytes:
        """Open a wrapped data key; fails on an unknown KEK id or tampering."""
        kek = self._keks.get(wrapped.kek_id)
        blob = wrapped.wrapped
        if kek is None or blob[:1] != _FIELD_VERSION:
            raise DecryptionFailed("unknown key-encryption key", kek_id=wrapped.kek_id)
        try:
            return AESGCM(kek).decrypt(
                blob[1 : 1 + _NONCE_LEN], blob[1 + _NONCE_LEN :], wrapped.kek_id.encode()
            )
        except InvalidTag:
            raise DecryptionFailed("wrapped data key does not open") from None

    def rewrap(self, wrapped: WrappedKey) -> WrappedKey:
        """Re-seal a wrapped key under the active KEK (rotation)."""
        if wrapped.kek_id == self.active:
            return wrapped
        return self.wrap(self.unwrap(wrapped))


def seal_field(dek: bytes, plaintext: str, context: str) -> bytes:
    """Encrypt one personal field; ``context`` (table.column) is bound as AAD."""
    nonce = secrets.token_bytes(_NONCE_LEN)
    return _FIELD_VERSION + nonce + AESGCM(dek).encrypt(nonce, plaintext.encode(), context.encode())


def open_field(dek: bytes, blob: bytes, context: str) -> str:
    """Decrypt one personal field sealed by :func:`seal_field`."""
    if blob[:1] != _FIELD_VERSION or len(blob) < 1 + _NONCE_LEN + 16:
        raise DecryptionFailed("unknown field format")
    try:
        raw = AESGCM(dek).decrypt(
            blob[1 : 1 + _NONCE_LEN], blob[1 + _NONCE_LEN :], context.encode()
        )
    except InvalidTag:
        raise DecryptionFailed() from None
    return raw.decode()


def seal_bytes(dek: bytes, plaintext: bytes, context: str) -> bytes:
    """Encrypt a binary blob (screenshots) under a data key."""
    nonce = secrets.token_bytes(_NONCE_LEN)
    return _FIELD_VERSION + nonce + AESGCM(dek).encrypt(nonce, plaintext, context.encode())


def open_bytes(dek: bytes, blob: bytes, context: str) -> bytes:
    """Decrypt a blob sealed by :func:`seal_bytes`."""
    if blob[:1] != _FIELD_VERSION or len(blob) < 1 + _NONCE_LEN + 16:
        raise DecryptionFailed("unknown blob format")
    try:
        return AESGCM(dek).decrypt(
            blob[1 : 1 + _NONCE_LEN], blob[1 + _NONCE_LEN :], context.encode()
        )
    except InvalidTag:
        raise DecryptionFailed() from None


class BlindIndex:
    """Keyed, deterministic index of a normalized value (email, phone, address)."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def __call__(self, kind: str, value: str) -> str:
        """Return the hex index of ``value`` of kind ``kind``."""
        message = kind.encode() + b"\x00" + value.encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()
