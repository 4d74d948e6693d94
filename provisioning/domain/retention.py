"""The retention worker: deletes what the catalog says must not be kept.

Screenshots go the day after their event; expired codes, tokens and sessions
are purged; the operation log is kept for ``retention.operation_log_days``.
It runs inside the service on a schedule and as ``zanuo retention run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import and_, delete, or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from provisioning.clock import Clock
from provisioning.config import RetentionSettings
from provisioning.storage.devices import Binding, Event, PairingToken, Share
from provisioning.storage.engine import Database
from provisioning.storage.models import OperationLog, RateLimit, Session, VerificationCode

_LOGGER = logging.getLogger(__name__)

# Hashes of spent tokens stay a day so late QoS 1 redeliveries still get a
# clear answer, then they go.
GRACE = dt.timedelta(days=1)


class RetentionService:
    """One pass of every retention rule."""

    def __init__(self, *, db: Database, clock: Clock, settings: RetentionSettings) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings

    async def run(self) -> dict[str, int]:
        """Apply every rule once; return how many rows each rule changed."""
        now = self.clock.now()
        async with self.db.session() as session:
            done = {
                "screenshots": await _count(
                    session,
                    update(Event)
                    .where(Event.screenshot_delete_at <= now, Event.screenshot_enc.is_not(None))
                    .values(screenshot_enc=None, screenshot_delete_at=None),
                ),
                "verification_codes": await _count(
                    session,
                    delete(VerificationCode).where(VerificationCode.expires_at <= now - GRACE),
                ),
                "sessions": await _count(
                    session,
                    delete(Session).where(
                        or_(Session.expires_at <= now, Session.revoked_at <= now - GRACE)
                    ),
                ),
                "pairing_tokens": await _count(
                    session,
                    delete(PairingToken).where(
                        PairingToken.expires_at <= now - GRACE, PairingToken.used_at.is_(None)
                    ),
                ),
                "expired_bindings": await _count(
                    session,
                    update(Binding)
                    .where(Binding.state == "pending", Binding.expires_at <= now)
                    .values(state="expired", reason="token_expired", completed_at=now),
                ),
                "binding_token_hashes": await _count(
                    session,
                    update(Binding)
                    .where(Binding.token_hash.is_not(None), Binding.expires_at <= now - GRACE)
                    .values(token_hash=None),
                ),
                "expired_invitations": await _count(
                    session,
                    update(Share)
                    .where(Share.state == "pending", Share.expires_at <= now)
                    .values(state="expired"),
                ),
                "rate_limits": await _count(
                    session,
                    delete(RateLimit).where(
                        RateLimit.window_start <= now - GRACE,
                        or_(RateLimit.blocked_until.is_(None), RateLimit.blocked_until <= now),
                    ),
                ),
                "operation_log": await _count(
                    session,
                    delete(OperationLog).where(
                        and_(
                            OperationLog.created_at
                            <= now - dt.timedelta(days=self.settings.operation_log_days)
                        )
                    ),
                ),
            }
            await session.commit()
        _LOGGER.info("retention pass: %s", done)
        return done


async def _count(session: AsyncSession, statement: object) -> int:
    result = await session.execute(statement)  # type: ignore[call-overload]
    return int(result.rowcount)


@asynccontextmanager
async def retention_worker(
    service: RetentionService, interval: float
) -> AsyncIterator[asyncio.Task[None]]:
    """Run retention passes every ``interval`` seconds until the context exits."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await service.run()
            except Exception:
                # One failed pass must not end the schedule; the next one retries.
                _LOGGER.exception("retention pass failed")

    task = asyncio.create_task(loop(), name="retention-worker")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
