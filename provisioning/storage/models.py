"""Account-side models: accounts, their keys, sessions, codes, limits, operation log.

Every column declares its data-catalog entry (``info=cat(...)``). Personal
fields are stored encrypted under the account's data key (``*_enc`` columns)
and looked up through keyed blind indexes (``*_index``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from provisioning.storage.base import Base
from provisioning.storage.catalog import Category as C
from provisioning.storage.catalog import Retention as R
from provisioning.storage.catalog import cat
from provisioning.storage.types import UtcDateTime


def _id() -> Mapped[uuid.UUID]:
    return mapped_column(
        Uuid, primary_key=True, default=uuid.uuid4, info=cat(C.NONE, R.ACCOUNT_LIFETIME)
    )


def _account_fk(*, nullable: bool = False) -> Mapped[Any]:
    return mapped_column(
        Uuid,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        nullable=nullable,
        index=True,
        info=cat(C.NONE, R.ACCOUNT_LIFETIME),
    )


def _created() -> Mapped[dt.datetime]:
    return mapped_column(UtcDateTime, info=cat(C.NONE, R.ACCOUNT_LIFETIME))


class Account(Base):
    """A user account; contact fields only encrypted plus blind indexes."""

    __tablename__ = "accounts"
    __table_args__ = {"info": {"account_keys": ("id",)}}

    id: Mapped[uuid.UUID] = _id()
    email_index: Mapped[str | None] = mapped_column(
        String(64), unique=True, info=cat(C.CONTACT, R.ACCOUNT_LIFETIME)
    )
    phone_index: Mapped[str | None] = mapped_column(
        String(64), unique=True, info=cat(C.CONTACT, R.ACCOUNT_LIFETIME)
    )
    email_enc: Mapped[bytes | None] = mapped_column(
        LargeBinary, info=cat(C.CONTACT, R.ACCOUNT_LIFETIME, encrypted=True)
    )
    phone_enc: Mapped[bytes | None] = mapped_column(
        LargeBinary, info=cat(C.CONTACT, R.ACCOUNT_LIFETIME, encrypted=True)
    )
    password_hash: Mapped[str] = mapped_column(
        String(255), info=cat(C.SECURITY_SECRET_HASH, R.ACCOUNT_LIFETIME)
    )
    nickname_enc: Mapped[bytes | None] = mapped_column(
        LargeBinary, info=cat(C.ACCOUNT, R.ACCOUNT_LIFETIME, encrypted=True)
    )
    avatar_url_enc: Mapped[bytes | None] = mapped_column(
        LargeBinary, info=cat(C.ACCOUNT, R.ACCOUNT_LIFETIME, encrypted=True)
    )
    region: Mapped[str | None] = mapped_column(String(8), info=cat(C.ACCOUNT, R.ACCOUNT_LIFETIME))
    # Derived from the consent ledger and kept here so every request can check
    # it without reading the ledger: the policy version last accepted, and
    # whether the policy itself is withdrawn (basic mode).
    policy_version: Mapped[str | None] = mapped_column(
        String(32), info=cat(C.CONSENT, R.ACCOUNT_LIFETIME)
    )
    basic_mode: Mapped[bool] = mapped_column(
        Boolean, default=False, info=cat(C.CONSENT, R.ACCOUNT_LIFETIME)
    )
    created_at: Mapped[dt.datetime] = _created()
    updated_at: Mapped[dt.datetime] = _created()


class AccountKey(Base):
    """An account's data key, wrapped by a key-encryption key; deleting it shreds the data."""

    __tablename__ = "account_keys"
    __table_args__ = {"info": {"export": False}}

    account_id: Mapped[uuid.UUID] = mapped_column(
        Uuid,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        primary_key=True,
        info=cat(C.NONE, R.ACCOUNT_LIFETIME),
    )
    kek_id: Mapped[str] = mapped_column(String(32), info=cat(C.NONE, R.ACCOUNT_LIFETIME))
    wrapped_key: Mapped[bytes] = mapped_column(
        LargeBinary, info=cat(C.KEY_MATERIAL, R.ACCOUNT_LIFETIME)
    )
    created_at: Mapped[dt.datetime] = _created()


class Session(Base):
    """A signed-in terminal: bearer token hash plus the client info it sent."""

    __tablename__ = "sessions"
    __table_args__ = {"info": {"account_keys": ("account_id",)}}

    id: Mapped[uuid.UUID] = _id()
    account_id: Mapped[uuid.UUID] = _account_fk()
    token_hash: Mapped[str] = mapped_column(
        String(64), unique=True, info=cat(C.SECURITY_SECRET_HASH, R.SHORT_LIVED)
    )
    client_type: Mapped[str] = mapped_column(String(32), info=cat(C.ACCOUNT, R.ACCOUNT_LIFETIME))
    client_version: Mapped[str] = mapped_column(String(32), info=cat(C.ACCOUNT, R.ACCOUNT_LIFETIME))
    device_model: Mapped[str] = mapped_column(String(64), info=cat(C.ACCOUNT, R.ACCOUNT_LIFETIME))
    os_version: Mapped[str] = mapped_column(String(32), info=cat(C.ACCOUNT, R.ACCOUNT_LIFETIME))
    created_at: Mapped[dt.datetime] = _created()
    last_used_at: Mapped[dt.datetime] = _created()
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, info=cat(C.NONE, R.SHORT_LIVED))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(
        UtcDateTime, info=cat(C.NONE, R.SHORT_LIVED)
    )


class VerificationCode(Base):
    """A one-time code sent by email or SMS; only its keyed hash is kept."""

    __tablename__ = "verification_codes"
    __table_args__ = (
        Index("ix_verification_codes_lookup", "recipient_index", "purpose"),
        {"info": {"export": False}},
    )

    id: Mapped[uuid.UUID] = mapped_column(
        Uuid, primary_key=True, default=uuid.uuid4, info=cat(C.NONE, R.SHORT_LIVED)
    )
    recipient_index: Mapped[str] = mapped_column(
        String(64), info=cat(C.SECURITY_SECRET_HASH, R.SHORT_LIVED)
    )
    purpose: Mapped[str] = mapped_column(String(32), info=cat(C.NONE, R.SHORT_LIVED))
    code_hash: Mapped[str] = mapped_column(
        String(64), info=cat(C.SECURITY_SECRET_HASH, R.SHORT_LIVED)
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0, info=cat(C.NONE, R.SHORT_LIVED))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, info=cat(C.NONE, R.SHORT_LIVED))
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, info=cat(C.NONE, R.SHORT_LIVED))
    used_at: Mapped[dt.datetime | None] = mapped_column(
        UtcDateTime, info=cat(C.NONE, R.SHORT_LIVED)
    )


class RateLimit(Base):
    """A counter window for one limited key (hashed), with an optional lockout."""

    __tablename__ = "rate_limits"
    __table_args__ = {"info": {"export": False}}

    key: Mapped[str] = mapped_column(
        String(96), primary_key=True, info=cat(C.SECURITY_SECRET_HASH, R.SHORT_LIVED)
    )
    window_start: Mapped[dt.datetime] = mapped_column(UtcDateTime, info=cat(C.NONE, R.SHORT_LIVED))
    count: Mapped[int] = mapped_column(Integer, default=0, info=cat(C.NONE, R.SHORT_LIVED))
    lockouts: Mapped[int] = mapped_column(Integer, default=0, info=cat(C.NONE, R.SHORT_LIVED))
    blocked_until: Mapped[dt.datetime | None] = mapped_column(
        UtcDateTime, info=cat(C.NONE, R.SHORT_LIVED)
    )


class OperationLog(Base):
    """A security-relevant action; never holds secrets or request bodies."""

    __tablename__ = "operation_log"
    __table_args__ = {"info": {"account_keys": ("account_id",)}}

    id: Mapped[uuid.UUID] = mapped_column(
        Uuid, primary_key=True, default=uuid.uuid4, info=cat(C.NONE, R.CONFIGURED)
    )
    account_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        index=True,
        info=cat(C.NONE, R.CONFIGURED),
    )
    action: Mapped[str] = mapped_column(String(64), info=cat(C.OPERATION, R.CONFIGURED))
    outcome: Mapped[str] = mapped_column(String(32), info=cat(C.OPERATION, R.CONFIGURED))
    subject: Mapped[str | None] = mapped_column(String(128), info=cat(C.OPERATION, R.CONFIGURED))
    detail: Mapped[dict[str, Any]] = mapped_column(
        JSON, default=dict, info=cat(C.OPERATION, R.CONFIGURED)
    )
    created_at: Mapped[dt.datetime] = mapped_column(
        UtcDateTime, index=True, info=cat(C.NONE, R.CONFIGURED)
    )


class Consent(Base):
    """One entry of the append-only consent ledger."""

    __tablename__ = "consents"
    __table_args__ = (
        Index("ix_consents_account_purpose", "account_id", "purpose", "created_at"),
        {"info": {"account_keys": ("account_id",)}},
    )

    # An increasing integer: the ledger's order, even for entries made in the same instant.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
        info=cat(C.NONE, R.ACCOUNT_LIFETIME),
    )
    account_id: Mapped[uuid.UUID] = mapped_column(
        Uuid,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        info=cat(C.NONE, R.ACCOUNT_LIFETIME),
    )
    purpose: Mapped[str] = mapped_column(String(32), info=cat(C.CONSENT, R.ACCOUNT_LIFETIME))
    granted: Mapped[bool] = mapped_column(Boolean, info=cat(C.CONSENT, R.ACCOUNT_LIFETIME))
    policy_version: Mapped[str] = mapped_column(String(32), info=cat(C.CONSENT, R.ACCOUNT_LIFETIME))
    method: Mapped[str] = mapped_column(String(32), info=cat(C.CONSENT, R.ACCOUNT_LIFETIME))
    created_at: Mapped[dt.datetime] = mapped_column(
        UtcDateTime, info=cat(C.CONSENT, R.ACCOUNT_LIFETIME)
    )


class PrivacyRequest(Base):
    """A rights request that needs a person; due 15 working days after it arrives."""

    __tablename__ = "privacy_requests"
    __table_args__ = {"info": {"account_keys": ("account_id",)}}

    id: Mapped[uuid.UUID] = mapped_column(
        Uuid, primary_key=True, default=uuid.uuid4, info=cat(C.NONE, R.ACCOUNT_LIFETIME)
    )
    account_id: Mapped[uuid.UUID] = mapped_column(
        Uuid,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        index=True,
        info=cat(C.NONE, R.ACCOUNT_LIFETIME),
    )
    kind: Mapped[str] = mapped_column(String(32), info=cat(C.ACCOUNT, R.ACCOUNT_LIFETIME))
    message_enc: Mapped[bytes | None] = mapped_column(
        LargeBinary, info=cat(C.ACCOUNT, R.ACCOUNT_LIFETIME, encrypted=True)
    )
    state: Mapped[str] = mapped_column(String(16), info=cat(C.NONE, R.ACCOUNT_LIFETIME))
    created_at: Mapped[dt.datetime] = mapped_column(
        UtcDateTime, info=cat(C.NONE, R.ACCOUNT_LIFETIME)
    )
    due_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, info=cat(C.NONE, R.ACCOUNT_LIFETIME))
