"""Device-side models: registry, ownership, bindings, pairing tokens, shares, commands, events.

Exactly one owner per device is enforced by the database: ``ownerships`` has
the device serial as its primary key, so two confirmations racing for one
device cannot both commit, on SQLite or PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from provisioning.storage.base import Base
from provisioning.storage.catalog import Category as C
from provisioning.storage.catalog import Retention as R
from provisioning.storage.catalog import cat
from provisioning.storage.types import UtcDateTime

SERIAL_LEN = 32


def _serial_fk(*, primary_key: bool = False, nullable: bool = False) -> Mapped[Any]:
    return mapped_column(
        String(SERIAL_LEN),
        ForeignKey("devices.serial", ondelete="CASCADE"),
        primary_key=primary_key,
        nullable=nullable,
        index=not primary_key,
        info=cat(C.DEVICE, R.DEVICE_LIFETIME),
    )


def _account_fk(retention: R, *, nullable: bool = False) -> Mapped[Any]:
    return mapped_column(
        Uuid,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        nullable=nullable,
        index=True,
        info=cat(C.NONE, retention),
    )


class Device(Base):
    """A manufactured device as the factory registered it, plus its live state."""

    __tablename__ = "devices"
    __table_args__ = {"info": {"via_ownership": "serial"}}

    serial: Mapped[str] = mapped_column(
        String(SERIAL_LEN), primary_key=True, info=cat(C.DEVICE, R.DEVICE_LIFETIME)
    )
    model: Mapped[str] = mapped_column(String(32), info=cat(C.DEVICE, R.DEVICE_LIFETIME))
    device_type: Mapped[str] = mapped_column(String(16), info=cat(C.DEVICE, R.DEVICE_LIFETIME))
    capabilities: Mapped[list[str]] = mapped_column(
        JSON, default=list, info=cat(C.DEVICE, R.DEVICE_LIFETIME)
    )
    label_code_digest: Mapped[bytes | None] = mapped_column(
        LargeBinary(32), info=cat(C.SECURITY_SECRET_HASH, R.DEVICE_LIFETIME)
    )
    ble_mac: Mapped[str | None] = mapped_column(String(17), info=cat(C.DEVICE, R.DEVICE_LIFETIME))
    firmware_version: Mapped[str] = mapped_column(String(32), info=cat(C.DEVICE, R.DEVICE_LIFETIME))
    certificate_pem: Mapped[str] = mapped_column(Text, info=cat(C.KEY_MATERIAL, R.DEVICE_LIFETIME))
    certificate_fingerprint: Mapped[str] = mapped_column(
        String(64), unique=True, info=cat(C.KEY_MATERIAL, R.DEVICE_LIFETIME)
    )
    certificate_serial: Mapped[str] = mapped_column(
        String(48), index=True, info=cat(C.KEY_MATERIAL, R.DEVICE_LIFETIME)
    )
    import_digest: Mapped[str] = mapped_column(String(64), info=cat(C.NONE, R.DEVICE_LIFETIME))
    imported_at: Mapped[dt.datetime] = mapped_column(
        UtcDateTime, info=cat(C.NONE, R.DEVICE_LIFETIME)
    )
    revoked_at: Mapped[dt.datetime | None] = mapped_column(
        UtcDateTime, info=cat(C.NONE, R.DEVICE_LIFETIME)
    )
    revoked_reason: Mapped[str | None] = mapped_column(
        String(32), info=cat(C.NONE, R.DEVICE_LIFETIME)
    )
    online: Mapped[bool] = mapped_column(
        Boolean, default=False, info=cat(C.NETWORK, R.DEVICE_LIFETIME)
    )
    network_type: Mapped[str | None] = mapped_column(
        String(16), info=cat(C.NETWORK, R.DEVICE_LIFETIME)
    )
    reported_firmware: Mapped[str | None] = mapped_column(
        String(32), info=cat(C.DEVICE, R.DEVICE_LIFETIME)
    )
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(
        UtcDateTime, info=cat(C.NETWORK, R.DEVICE_LIFETIME)
    )
    parent_serial: Mapped[str | None] = mapped_column(
        String(SERIAL_LEN),
        ForeignKey("devices.serial", ondelete="SET NULL"),
        index=True,
        info=cat(C.DEVICE, R.BINDING_LIFETIME),
    )

    @property
    def revoked(self) -> bool:
        """Tell whether the device's certificate is revoked."""
        return self.revoked_at is not None


class Ownership(Base):
    """The one account that owns a device; the serial is the primary key."""

    __tablename__ = "ownerships"
    __table_args__ = {"info": {"account_keys": ("account_id",)}}

    serial: Mapped[str] = _serial_fk(primary_key=True)
    account_id: Mapped[uuid.UUID] = _account_fk(R.BINDING_LIFETIME)
    binding_id: Mapped[uuid.UUID] = mapped_column(Uuid, info=cat(C.NONE, R.BINDING_LIFETIME))
    name_enc: Mapped[bytes | None] = mapped_column(
        LargeBinary, info=cat(C.ACCOUNT, R.BINDING_LIFETIME, encrypted=True)
    )
    auto_upgrade: Mapped[bool] = mapped_column(
        Boolean, default=True, info=cat(C.ACCOUNT, R.BINDING_LIFETIME)
    )
    notifications: Mapped[bool] = mapped_column(
        Boolean, default=True, info=cat(C.ACCOUNT, R.BINDING_LIFETIME)
    )
    bound_at: Mapped[dt.datetime] = mapped_column(
        UtcDateTime, info=cat(C.ACCOUNT, R.BINDING_LIFETIME)
    )


class Binding(Base):
    """One attempt to put a device into an account; meets the device on its token."""

    __tablename__ = "bindings"
    __table_args__ = (
        Index("ix_bindings_serial_state", "serial", "state"),
        {"info": {"account_keys": ("account_id",)}},
    )

    id: Mapped[uuid.UUID] = mapped_column(
        Uuid, primary_key=True, default=uuid.uuid4, info=cat(C.NONE, R.BINDING_LIFETIME)
    )
    serial: Mapped[str] = _serial_fk()
    account_id: Mapped[uuid.UUID] = _account_fk(R.BINDING_LIFETIME)
    method: Mapped[str] = mapped_column(String(16), info=cat(C.NONE, R.BINDING_LIFETIME))
    state: Mapped[str] = mapped_column(String(16), info=cat(C.NONE, R.BINDING_LIFETIME))
    reason: Mapped[str | None] = mapped_column(String(48), info=cat(C.NONE, R.BINDING_LIFETIME))
    token_hash: Mapped[str | None] = mapped_column(
        String(64), unique=True, info=cat(C.SECURITY_SECRET_HASH, R.SHORT_LIVED)
    )
    pairing_token_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid,
        ForeignKey("pairing_tokens.id", ondelete="SET NULL"),
        index=True,
        info=cat(C.NONE, R.BINDING_LIFETIME),
    )
    parent_serial: Mapped[str | None] = mapped_column(
        String(SERIAL_LEN), info=cat(C.DEVICE, R.BINDING_LIFETIME)
    )
    created_at: Mapped[dt.datetime] = mapped_column(
        UtcDateTime, info=cat(C.NONE, R.BINDING_LIFETIME)
    )
    expires_at: Mapped[dt.datetime] = mapped_column(
        UtcDateTime, info=cat(C.NONE, R.BINDING_LIFETIME)
    )
    device_confirmed_at: Mapped[dt.datetime | None] = mapped_column(
        UtcDateTime, info=cat(C.NONE, R.BINDING_LIFETIME)
    )
    completed_at: Mapped[dt.datetime | None] = mapped_column(
        UtcDateTime, info=cat(C.NONE, R.BINDING_LIFETIME)
    )


class PairingToken(Base):
    """A one-time token for a device without a label code; stored hashed."""

    __tablename__ = "pairing_tokens"
    __table_args__ = {"info": {"account_keys": ("account_id",)}}

    id: Mapped[uuid.UUID] = mapped_column(
        Uuid, primary_key=True, default=uuid.uuid4, info=cat(C.NONE, R.SHORT_LIVED)
    )
    account_id: Mapped[uuid.UUID] = _account_fk(R.SHORT_LIVED)
    token_hash: Mapped[str] = mapped_column(
        String(64), unique=True, info=cat(C.SECURITY_SECRET_HASH, R.SHORT_LIVED)
    )
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, info=cat(C.NONE, R.SHORT_LIVED))
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, info=cat(C.NONE, R.SHORT_LIVED))
    used_at: Mapped[dt.datetime | None] = mapped_column(
        UtcDateTime, info=cat(C.NONE, R.SHORT_LIVED)
    )


class Share(Base):
    """An owner's invitation of another account to a device."""

    __tablename__ = "shares"
    __table_args__ = (
        Index("ix_shares_invitee_state", "invitee_index", "state"),
        {"info": {"account_keys": ("owner_id", "invitee_id")}},
    )

    id: Mapped[uuid.UUID] = mapped_column(
        Uuid, primary_key=True, default=uuid.uuid4, info=cat(C.NONE, R.BINDING_LIFETIME)
    )
    serial: Mapped[str] = _serial_fk()
    owner_id: Mapped[uuid.UUID] = _account_fk(R.BINDING_LIFETIME)
    invitee_index: Mapped[str] = mapped_column(String(64), info=cat(C.CONTACT, R.BINDING_LIFETIME))
    invitee_id: Mapped[uuid.UUID | None] = _account_fk(R.BINDING_LIFETIME, nullable=True)
    permission: Mapped[str] = mapped_column(String(16), info=cat(C.ACCOUNT, R.BINDING_LIFETIME))
    state: Mapped[str] = mapped_column(String(16), info=cat(C.NONE, R.BINDING_LIFETIME))
    created_at: Mapped[dt.datetime] = mapped_column(
        UtcDateTime, info=cat(C.NONE, R.BINDING_LIFETIME)
    )
    expires_at: Mapped[dt.datetime] = mapped_column(
        UtcDateTime, info=cat(C.NONE, R.BINDING_LIFETIME)
    )
    responded_at: Mapped[dt.datetime | None] = mapped_column(
        UtcDateTime, info=cat(C.NONE, R.BINDING_LIFETIME)
    )


class Command(Base):
    """The command outbox the bridge drains; never holds a secret argument."""

    __tablename__ = "commands"
    __table_args__ = (
        Index("ix_commands_state_serial", "state", "serial"),
        {"info": {"via_ownership": "serial"}},
    )

    id: Mapped[uuid.UUID] = mapped_column(
        Uuid, primary_key=True, default=uuid.uuid4, info=cat(C.NONE, R.DEVICE_LIFETIME)
    )
    serial: Mapped[str] = _serial_fk()
    name: Mapped[str] = mapped_column(String(32), info=cat(C.DEVICE, R.DEVICE_LIFETIME))
    args: Mapped[dict[str, Any]] = mapped_column(
        JSON, default=dict, info=cat(C.DEVICE, R.DEVICE_LIFETIME)
    )
    state: Mapped[str] = mapped_column(String(16), info=cat(C.NONE, R.DEVICE_LIFETIME))
    error: Mapped[str | None] = mapped_column(String(64), info=cat(C.NONE, R.DEVICE_LIFETIME))
    created_at: Mapped[dt.datetime] = mapped_column(
        UtcDateTime, info=cat(C.NONE, R.DEVICE_LIFETIME)
    )
    sent_at: Mapped[dt.datetime | None] = mapped_column(
        UtcDateTime, info=cat(C.NONE, R.DEVICE_LIFETIME)
    )
    finished_at: Mapped[dt.datetime | None] = mapped_column(
        UtcDateTime, info=cat(C.NONE, R.DEVICE_LIFETIME)
    )


class Event(Base):
    """A device event, stored once per (serial, event id)."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("serial", "event_id", name="uq_events_serial_event_id"),
        {"info": {"account_keys": ("account_id",)}},
    )

    id: Mapped[uuid.UUID] = mapped_column(
        Uuid, primary_key=True, default=uuid.uuid4, info=cat(C.NONE, R.BINDING_LIFETIME)
    )
    serial: Mapped[str] = _serial_fk()
    event_id: Mapped[str] = mapped_column(String(64), info=cat(C.NONE, R.BINDING_LIFETIME))
    account_id: Mapped[uuid.UUID | None] = _account_fk(R.BINDING_LIFETIME, nullable=True)
    event_type: Mapped[str] = mapped_column(String(32), info=cat(C.EVENT, R.BINDING_LIFETIME))
    occurred_at: Mapped[dt.datetime] = mapped_column(
        UtcDateTime, index=True, info=cat(C.EVENT, R.BINDING_LIFETIME)
    )
    result: Mapped[str | None] = mapped_column(String(32), info=cat(C.EVENT, R.BINDING_LIFETIME))
    via_serial: Mapped[str | None] = mapped_column(
        String(SERIAL_LEN), info=cat(C.DEVICE, R.BINDING_LIFETIME)
    )
    screenshot_enc: Mapped[bytes | None] = mapped_column(
        LargeBinary, info=cat(C.EVENT, R.ONE_DAY, encrypted=True)
    )
    screenshot_delete_at: Mapped[dt.datetime | None] = mapped_column(
        UtcDateTime, index=True, info=cat(C.NONE, R.ONE_DAY)
    )
    in_feed: Mapped[bool] = mapped_column(
        Boolean, default=False, info=cat(C.NONE, R.BINDING_LIFETIME)
    )
    received_at: Mapped[dt.datetime] = mapped_column(
        UtcDateTime, info=cat(C.NONE, R.BINDING_LIFETIME)
    )


class DeviceLocation(Base):
    """Where the owner placed a device (for local weather), only with consent; sealed."""

    __tablename__ = "device_locations"
    __table_args__ = {"info": {"account_keys": ("account_id",)}}

    serial: Mapped[str] = _serial_fk(primary_key=True)
    account_id: Mapped[uuid.UUID] = _account_fk(R.UNTIL_WITHDRAWN)
    location_enc: Mapped[bytes] = mapped_column(
        LargeBinary, info=cat(C.LOCATION, R.UNTIL_WITHDRAWN, encrypted=True)
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        UtcDateTime, info=cat(C.NONE, R.UNTIL_WITHDRAWN)
    )
