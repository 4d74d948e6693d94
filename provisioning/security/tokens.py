"""Opaque bearer tokens and one-time codes: random values stored only as hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_token(prefix: str) -> str:
    """Return a fresh opaque token such as ``zs_…`` (256 bits of randomness)."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_token(token: str) -> str:
    """Return the SHA-256 hex digest under which a token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_numeric_code(digits: int = 6) -> str:
    """Return a uniformly random numeric code."""
    return f"{secrets.randbelow(10**digits):0{digits}d}"


def hash_code(key: bytes, scope: str, code: str) -> str:
    """Return the keyed hash of a short code (a plain hash of 6 digits is guessable)."""
    return hmac.new(key, scope.encode() + b"\x00" + code.encode(), hashlib.sha256).hexdigest()


def same_hash(left: str, right: str) -> bool:
    """Compare two hex digests in constant time."""
    return hmac.compare_digest(left.encode(), right.encode())
