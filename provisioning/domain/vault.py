"""Per-account data keys: create, open, shred, rotate."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from provisioning.security.keys import DecryptionFailed, KeyRing, WrappedKey, open_field, seal_field
from provisioning.storage.models import AccountKey


class Vault:
    """Seals and opens an account's personal fields under its data key."""

    def __init__(self, keyring: KeyRing) -> None:
        self.keyring = keyring

    async def create_key(
        self, session: AsyncSession, account_id: uuid.UUID, now: dt.datetime
    ) -> bytes:
        """Create and store the wrapped data key of a new account."""
        dek, wrapped = self.keyring.new_data_key()
        session.add(
            AccountKey(
                account_id=account_id,
                kek_id=wrapped.kek_id,
                wrapped_key=wrapped.wrapped,
                created_at=now,
            )
        )
        return dek

    async def data_key(self, session: AsyncSession, account_id: uuid.UUID) -> bytes:
        """Return the account's data key; fails once the key is destroyed."""
        row = await session.get(AccountKey, account_id)
        if row is None:
            raise DecryptionFailed("the account's data key is gone")
        return self.keyring.unwrap(WrappedKey(row.kek_id, row.wrapped_key))

    async def destroy_key(self, session: AsyncSession, account_id: uuid.UUID) -> None:
        """Delete the wrapped data key: everything sealed under it is unreadable."""
        await session.execute(delete(AccountKey).where(AccountKey.account_id == account_id))

    async def rotate(self, session: AsyncSession) -> int:
        """Re-wrap every data key under the active KEK; return how many changed."""
        changed = 0
        rows = (await session.execute(select(AccountKey))).scalars().all()
        for row in rows:
            if row.kek_id == self.keyring.active:
                continue
            rewrapped = self.keyring.rewrap(WrappedKey(row.kek_id, row.wrapped_key))
            row.kek_id, row.wrapped_key = rewrapped.kek_id, rewrapped.wrapped
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
