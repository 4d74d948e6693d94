"""Per-account data keys: create, open, shred, rotate.

Wrapped data keys live in a key store apart from the main database (by default
one file per account under ``<data_dir>/keys``), so deleting an account's key
makes its personal fields unreadable even in an old copy of the database file.
``privacy.key_store = "database"`` keeps them in the ``account_keys`` table
instead (for deployments whose database is the only shared store; then backups
must be expired to honour erasure).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import uuid
from pathlib import Path
from typing import Protocol

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from provisioning.security.keys import (
    DecryptionFailed,
    KeyRing,
    WrappedKey,
    open_field,
    seal_field,
)
from provisioning.storage.models import AccountKey


class KeyStore(Protocol):
    """Where wrapped data keys are kept."""

    async def put(
        self, session: AsyncSession, account_id: uuid.UUID, key: WrappedKey, now: dt.datetime
    ) -> None:
        """Store an account's wrapped key."""
        ...

    async def get(self, session: AsyncSession, account_id: uuid.UUID) -> WrappedKey | None:
        """Return an account's wrapped key, if it still exists."""
        ...

    async def delete(self, session: AsyncSession, account_id: uuid.UUID) -> None:
        """Destroy an account's wrapped key."""
        ...

    async def accounts(self, session: AsyncSession) -> list[uuid.UUID]:
        """List the accounts that have a key."""
        ...


class DatabaseKeyStore:
    """Wrapped keys in the ``account_keys`` table, in the caller's transaction."""

    async def put(
        self, session: AsyncSession, account_id: uuid.UUID, key: WrappedKey, now: dt.datetime
    ) -> None:
        """Store (or replace) an account's wrapped key."""
        await session.merge(
            AccountKey(
                account_id=account_id, kek_id=key.kek_id, wrapped_key=key.wrapped, created_at=now
            )
        )

    async def get(self, session: AsyncSession, account_id: uuid.UUID) -> WrappedKey | None:
        """Return the wrapped key, if any."""
        row = await session.get(AccountKey, account_id)
        return None if row is None else WrappedKey(row.kek_id, row.wrapped_key)

    async def delete(self, session: AsyncSession, account_id: uuid.UUID) -> None:
        """Delete the wrapped key."""
        await session.execute(delete(AccountKey).where(AccountKey.account_id == account_id))

    async def accounts(self, session: AsyncSession) -> list[uuid.UUID]:
        """List accounts with a key."""
        return list((await session.execute(select(AccountKey.account_id))).scalars())


class FileKeyStore:
    """One small file per account; deleting it shreds the account's data."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, account_id: uuid.UUID) -> Path:
        return self.directory / f"{account_id}.key"

    async def put(
        self, session: AsyncSession, account_id: uuid.UUID, key: WrappedKey, now: dt.datetime
    ) -> None:
        """Write the wrapped key atomically (0600)."""
        await asyncio.to_thread(self._write, account_id, key)

    def _write(self, account_id: uuid.UUID, key: WrappedKey) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._path(account_id)
        tmp = path.with_suffix(".tmp")
        data = json.dumps({"kek_id": key.kek_id, "wrapped": key.wrapped.hex()}).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)

    async def get(self, session: AsyncSession, account_id: uuid.UUID) -> WrappedKey | None:
        """Read the wrapped key, if the file exists."""
        return await asyncio.to_thread(self._read, account_id)

    def _read(self, account_id: uuid.UUID) -> WrappedKey | None:
        try:
            raw = json.loads(self._path(account_id).read_bytes())
        except FileNotFoundError:
            return None
        return WrappedKey(str(raw["kek_id"]), bytes.fromhex(raw["wrapped"]))

    async def delete(self, session: AsyncSession, account_id: uuid.UUID) -> None:
        """Remove the key file."""
        await asyncio.to_thread(self._path(account_id).unlink, missing_ok=True)

    async def accounts(self, session: AsyncSession) -> list[uuid.UUID]:
        """List accounts with a key file."""
        if not self.directory.exists():
            return []
        return [uuid.UUID(p.stem) for p in self.directory.glob("*.key")]


class Vault:
    """Seals and opens an account's personal fields under its data key."""

    def __init__(self, keyring: KeyRing, store: KeyStore) -> None:
        self.keyring = keyring
        self.store = store

    async def create_key(
        self, session: AsyncSession, account_id: uuid.UUID, now: dt.datetime
    ) -> bytes:
        """Create and store the wrapped data key of a new account."""
        dek, wrapped = self.keyring.new_data_key()
        await self.store.put(session, account_id, wrapped, now)
        return dek

    async def data_key(self, session: AsyncSession, account_id: uuid.UUID) -> bytes:
        """Return the account's data key; fails once the key is destroyed."""
        wrapped = await self.store.get(session, account_id)
        if wrapped is None:
            raise DecryptionFailed("the account's data key is gone")
        return self.keyring.unwrap(wrapped)

    async def destroy_key(self, session: AsyncSession, account_id: uuid.UUID) -> None:
        """Delete the wrapped data key: everything sealed under it is unreadable."""
        await self.store.delete(session, account_id)

    async def rotate(self, session: AsyncSession, now: dt.datetime) -> int:
        """Re-wrap every data key under the active KEK; return how many changed."""
        changed = 0
        for account_id in await self.store.accounts(session):
            wrapped = await self.store.get(session, account_id)
            if wrapped is None or wrapped.kek_id == self.keyring.active:
                continue
            await self.store.put(session, account_id, self.keyring.rewrap(wrapped), now)
            changed += 1
        return changed

    @staticmethod
    def seal(dek: bytes, value: str | None, context: str) -> bytes | None:
        """Seal an optional field value."""
        return None if value is None else seal_field(dek, value, context)

    @staticmethod
    def open(dek: bytes, blob: bytes | None, context: str) -> str | None:
        """Open an optional sealed field."""
        return None if blob is None else open_field(dek, blob, context)
