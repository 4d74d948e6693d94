"""The operation log: one row per security-relevant action, no secrets."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from provisioning.storage.models import OperationLog


def record(
    session: AsyncSession,
    *,
    account_id: uuid.UUID | None,
    action: str,
    outcome: str,
    now: dt.datetime,
    subject: str | None = None,
    **detail: Any,
) -> None:
    """Add an operation-log entry to the session's unit of work."""
    session.add(
        OperationLog(
            account_id=account_id,
            action=action,
            outcome=outcome,
            subject=subject,
            detail=detail,
            created_at=now,
        )
    )
