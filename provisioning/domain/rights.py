"""Data-subject rights driven by the data catalog: export, cancellation, requests.

Export walks every table the catalog links to an account (``account_keys`` or
``via_ownership`` in the table info) and every column's declared category, so
a new table or column is exported without anyone remembering to add it.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

import provisioning.storage.all_models  # noqa: F401  (every table must be known to export)
from provisioning.clock import Clock
from provisioning.domain import oplog
from provisioning.domain.accounts import AccountService, CodePurpose, Principal, Recipient
from provisioning.domain.devices import DeviceService
from provisioning.domain.events import screenshot_context
from provisioning.domain.vault import Vault
from provisioning.errors import NotFound
from provisioning.security.keys import DecryptionFailed, open_bytes
from provisioning.storage.base import Base
from provisioning.storage.catalog import Category, column_class
from provisioning.storage.devices import Ownership
from provisioning.storage.engine import Database
from provisioning.storage.models import Account, PrivacyRequest, VerificationCode

WITHHELD = frozenset({Category.SECURITY_SECRET_HASH, Category.KEY_MATERIAL})
WORKING_DAYS_TO_ANSWER = 15


def field_context(table: str, column: str) -> str:
    """Return the AEAD context a sealed column is bound to (``table.field``)."""
    return f"{table}.{column.removesuffix('_enc')}"


# Sealed columns bound to more than their column name (the row's identity).
ROW_CONTEXTS: dict[tuple[str, str], Callable[[Mapping[str, Any]], str]] = {
    ("events", "screenshot_enc"): lambda row: screenshot_context(row["serial"], row["event_id"]),
}


def due_date(
    start: dt.date, holidays: frozenset[dt.date], working_days: int = WORKING_DAYS_TO_ANSWER
) -> dt.date:
    """Return the date ``working_days`` working days after ``start`` (no weekends, holidays)."""
    day, left = start, working_days
    while left:
        day += dt.timedelta(days=1)
        if day.weekday() < 5 and day not in holidays:
            left -= 1
    return day


def exportable_tables() -> list[Table]:
    """Return the tables whose rows belong to an account."""
    return [
        t
        for t in Base.metadata.sorted_tables
        if t.info.get("account_keys") or t.info.get("via_ownership")
    ]


@dataclass(frozen=True, slots=True)
class Cancellation:
    """What cancelling an account did."""

    account_id: uuid.UUID
    cancelled_at: dt.datetime
    devices_reset: list[str]


class RightsService:
    """Export, cancellation and manual privacy requests."""

    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        vault: Vault,
        accounts: AccountService,
        devices: DeviceService,
        holidays: tuple[dt.date, ...],
    ) -> None:
        self.db = db
        self.clock = clock
        self.vault = vault
        self.accounts = accounts
        self.devices = devices
        self.holidays = frozenset(holidays)

    async def export(self, principal: Principal) -> dict[str, Any]:
        """Return a complete copy of the account's personal data, table by table."""
        async with self.db.session() as session:
            dek = await self.vault.data_key(session, principal.account_id)
            serials = list(
                (
                    await session.execute(
                        select(Ownership.serial).where(Ownership.account_id == principal.account_id)
                    )
                ).scalars()
            )
            tables: dict[str, list[dict[str, Any]]] = {}
            categories: set[str] = set()
            for table in exportable_tables():
                rows = await self._rows(session, table, principal.account_id, serials)
                tables[table.name] = [self._render(table, row, dek, categories) for row in rows]
        return {
            "account_id": str(principal.account_id),
            "exported_at": self.clock.now().isoformat(),
            "categories": sorted(categories),
            "tables": tables,
        }

    @staticmethod
    async def _rows(
        session: AsyncSession, table: Table, account_id: uuid.UUID, serials: list[str]
    ) -> list[Any]:
        keys: tuple[str, ...] = table.info.get("account_keys", ())
        if keys:
            condition = or_(*(table.c[k] == account_id for k in keys))
        else:
            condition = table.c[table.info["via_ownership"]].in_(serials)
        return list((await session.execute(select(table).where(condition))).mappings())

    @staticmethod
    def _render(table: Table, row: Any, dek: bytes, categories: set[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for column in table.columns:
            entry = column_class(column.info)
            assert entry is not None, f"{table.name}.{column.name} is not catalogued"
            value = row[column.name]
            if entry.category in WITHHELD:
                if value is not None:
                    out[column.name] = "<withheld: security secret>"
                continue
            if value is not None and entry.category is not Category.NONE:
                categories.add(entry.category.value)
            if entry.encrypted and value is not None:
                name = column.name.removesuffix("_enc")
                try:
                    row_context = ROW_CONTEXTS.get((table.name, column.name))
                    context = (
                        row_context(row)
                        if row_context is not None
                        else field_context(table.name, column.name)
                    )
                    plain = open_bytes(dek, value, context)
                except DecryptionFailed:
                    out[name] = "<unreadable>"
                    continue
                try:
                    out[name] = plain.decode()
                except UnicodeDecodeError:
                    out[name] = {"base64": base64.b64encode(plain).decode()}
                continue
            out[column.name] = _jsonable(value)
        return out

    async def cancel(self, principal: Principal, code: str) -> Cancellation:
        """Cancel the account now: devices unbound and reset, data deleted, key destroyed."""
        now = self.clock.now()
        async with self.db.session() as session:
            account = await session.get(Account, principal.account_id)
            if account is None:
                raise NotFound("no such account")
            dek = await self.vault.data_key(session, account.id)
            recipient = _recipient_of(account, dek, self.vault)
            await self.accounts.consume_code(session, recipient, CodePurpose.DELETE_ACCOUNT, code)
            owned = list(
                (
                    await session.execute(
                        select(Ownership).where(Ownership.account_id == account.id)
                    )
                ).scalars()
            )
            for ownership in owned:
                await self.devices.release(session, ownership, now, reason="unbind")
            await session.execute(
                delete(VerificationCode).where(
                    VerificationCode.recipient_index.in_(
                        [i for i in (account.email_index, account.phone_index) if i]
                    )
                )
            )
            await session.delete(account)  # cascades to every account-keyed row
            oplog.record(session, account_id=None, action="account.cancel", outcome="ok", now=now)
            await session.flush()
            await self.vault.destroy_key(session, principal.account_id)
            await session.commit()
        return Cancellation(principal.account_id, now, sorted(o.serial for o in owned))

    async def file_request(
        self, principal: Principal, kind: str, message: str | None
    ) -> PrivacyRequest:
        """Record a request that needs a person; due 15 working days out."""
        now = self.clock.now()
        due = due_date(now.date(), self.holidays)
        async with self.db.session() as session:
            dek = await self.vault.data_key(session, principal.account_id)
            row = PrivacyRequest(
                id=uuid.uuid4(),
                account_id=principal.account_id,
                kind=kind,
                message_enc=self.vault.seal(
                    dek, message, field_context("privacy_requests", "message_enc")
                ),
                state="open",
                created_at=now,
                due_at=dt.datetime.combine(due, dt.time(23, 59, 59), tzinfo=dt.UTC),
            )
            session.add(row)
            oplog.record(
                session,
                account_id=principal.account_id,
                action="privacy.request",
                outcome="open",
                subject=kind,
                now=now,
            )
            await session.commit()
        return row


def _recipient_of(account: Account, dek: bytes, vault: Vault) -> Recipient:
    email = vault.open(dek, account.email_enc, "accounts.email")
    phone = vault.open(dek, account.phone_enc, "accounts.phone")
    return Recipient.of(email, None) if email else Recipient.of(None, phone)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode()}
    return value
