"""Database-backed rate limits and growing lockouts, shared by every API instance.

Keys are stored only as keyed hashes: the limit table never holds an email,
phone number, serial or address in the clear.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from provisioning.errors import TooManyAttempts
from provisioning.security.keys import BlindIndex
from provisioning.storage.models import RateLimit


@dataclass(frozen=True, slots=True)
class Policy:
    """How many events a window allows and how long the lockout lasts."""

    limit: int
    window: dt.timedelta
    lockout: dt.timedelta
    max_lockout: dt.timedelta | None = None  # lockouts double up to this


class RateLimiter:
    """Counts events per hashed key in the database."""

    def __init__(self, index: BlindIndex) -> None:
        self._index = index

    def key(self, kind: str, value: str) -> str:
        """Return the stored key for ``value`` under limit ``kind``."""
        return f"{kind}:{self._index('ratelimit:' + kind, value)}"

    async def _row(self, session: AsyncSession, key: str, now: dt.datetime) -> RateLimit:
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        await session.execute(
            insert(RateLimit)
            .values(key=key, window_start=now, count=0, lockouts=0)
            .on_conflict_do_nothing(index_elements=["key"])
        )
        row = (
            await session.execute(select(RateLimit).where(RateLimit.key == key).with_for_update())
        ).scalar_one()
        await session.refresh(row)
        return row

    async def check(self, session: AsyncSession, keys: list[str], now: dt.datetime) -> None:
        """Raise TooManyAttempts while any of ``keys`` is locked out (the longest wait wins)."""
        blocked = (
            (
                await session.execute(
                    select(RateLimit.blocked_until).where(
                        RateLimit.key.in_(keys), RateLimit.blocked_until > now
                    )
                )
            )
            .scalars()
            .all()
        )
        until = [when for when in blocked if when is not None]
        if until:
            raise TooManyAttempts(_seconds_until(max(until), now))

    async def consume(
        self, session: AsyncSession, key: str, policy: Policy, now: dt.datetime
    ) -> None:
        """Count one event; raise TooManyAttempts when the window is full."""
        row = await self._row(session, key, now)
        if row.blocked_until is not None and row.blocked_until > now:
            raise TooManyAttempts(_seconds_until(row.blocked_until, now))
        if now - row.window_start >= policy.window:
            row.window_start, row.count = now, 0
        if row.count >= policy.limit:
            raise TooManyAttempts(_seconds_until(row.window_start + policy.window, now))
        row.count += 1

    async def record_failure(
        self, session: AsyncSession, key: str, policy: Policy, now: dt.datetime
    ) -> bool:
        """Count one failure; return True when it started a lockout."""
        row = await self._row(session, key, now)
        if now - row.window_start >= policy.window:
            row.window_start, row.count = now, 0
        row.count += 1
        if row.count < policy.limit:
            return False
        lockout = policy.lockout * (2**row.lockouts)
        if policy.max_lockout is not None:
            lockout = min(lockout, policy.max_lockout)
        row.blocked_until = now + lockout
        row.lockouts += 1
        row.count = 0
        row.window_start = now
        return True

    async def clear(self, session: AsyncSession, key: str) -> None:
        """Forget the failures of ``key`` (after a success)."""
        row = (
            await session.execute(select(RateLimit).where(RateLimit.key == key))
        ).scalar_one_or_none()
        if row is not None:
            row.count = 0
            row.blocked_until = None


def _seconds_until(when: dt.datetime, now: dt.datetime) -> int:
    return max(1, math.ceil((when - now).total_seconds()))
