"""Account passwords: Argon2id, computed off the event loop."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# RFC 9106's second recommended option (64 MiB, t=3, p=4) is the library
# default; tests may pass a cheaper hasher.
DEFAULT_HASHER = PasswordHasher()


class Passwords:
    """Hash and verify passwords in a worker thread."""

    def __init__(self, hasher: PasswordHasher = DEFAULT_HASHER) -> None:
        self._hasher = hasher

    async def hash(self, password: str) -> str:
        """Return the Argon2id hash of ``password``."""
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        """Tell whether ``password`` matches; malformed hashes never match."""
        return await asyncio.to_thread(self._verify, password_hash, password)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
