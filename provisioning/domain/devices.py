"""A bound device's life: listing, settings, unbinding, factory reset, sharing."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from provisioning.clock import Clock
from provisioning.config import BindingSettings
from provisioning.domain import oplog
from provisioning.domain.accounts import Principal, Recipient
from provisioning.domain.binding import Relation
from provisioning.domain.vault import Vault
from provisioning.errors import Conflict, DeviceNotFound, NotFound, NotOwner, TokenExpired
from provisioning.security.keys import BlindIndex
from provisioning.storage.devices import Command, Device, Event, Ownership, Share
from provisioning.storage.engine import Database
from provisioning.storage.models import Account


class Permission(enum.StrEnum):
    """What a shared user may do."""

    VIEW = "view"
    CONTROL = "control"


class ShareState(enum.StrEnum):
    """Where an invitation stands."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    REVOKED = "revoked"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class DeviceView:
    """A device as one account sees it."""

    device: Device
    relation: Relation
    ownership: Ownership | None
    permission: str | None
    shares: list[Share]
    name: str | None = None


NAME_CONTEXT = "ownerships.name"


class DeviceService:
    """Devices in accounts: read, change, unbind, share."""

    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        settings: BindingSettings,
        index: BlindIndex,
        vault: Vault,
    ) -> None:
        self.vault = vault
        self.db = db
        self.clock = clock
        self.settings = settings
        self.index = index

    async def _name(self, session: AsyncSession, serial: str) -> str | None:
        ownership = await session.get(Ownership, serial)
        if ownership is None or ownership.name_enc is None:
            return None
        dek = await self.vault.data_key(session, ownership.account_id)
        return self.vault.open(dek, ownership.name_enc, NAME_CONTEXT)

    async def list_devices(self, principal: Principal) -> list[DeviceView]:
        """Return the devices the caller owns or has accepted a share of."""
        async with self.db.session() as session:
            owned = (
                await session.execute(
                    select(Device, Ownership)
                    .join(Ownership, Ownership.serial == Device.serial)
                    .where(Ownership.account_id == principal.account_id)
                    .order_by(Ownership.bound_at)
                )
            ).all()
            shared = (
                await session.execute(
                    select(Device, Share)
                    .join(Share, Share.serial == Device.serial)
                    .where(
                        Share.invitee_id == principal.account_id, Share.state == ShareState.ACCEPTED
                    )
                    .order_by(Share.responded_at)
                )
            ).all()
            views = [
                DeviceView(d, Relation.MINE, o, None, [], await self._name(session, d.serial))
                for d, o in owned
            ]
            views += [
                DeviceView(
                    d, Relation.SHARED, None, s.permission, [], await self._name(session, d.serial)
                )
                for d, s in shared
            ]
        return views

    async def view(self, principal: Principal, serial: str) -> DeviceView:
        """Return one device the caller owns or shares; others look absent."""
        async with self.db.session() as session:
            return await self._view(session, principal, serial)

    async def _view(self, session: AsyncSession, principal: Principal, serial: str) -> DeviceView:
        device = await session.get(Device, serial)
        if device is None:
            raise DeviceNotFound(serial=serial)
        owner = await session.get(Ownership, serial)
        if owner is not None and owner.account_id == principal.account_id:
            shares = (
                (
                    await session.execute(
                        select(Share)
                        .where(
                            Share.serial == serial,
                            Share.state.in_([ShareState.PENDING, ShareState.ACCEPTED]),
                        )
                        .order_by(Share.created_at)
                    )
                )
                .scalars()
                .all()
            )
            name = await self._name(session, serial)
            return DeviceView(device, Relation.MINE, owner, None, list(shares), name)
        share = (
            await session.execute(
                select(Share).where(
                    Share.serial == serial,
                    Share.invitee_id == principal.account_id,
                    Share.state == ShareState.ACCEPTED,
                )
            )
        ).scalar_one_or_none()
        if share is None:
            raise DeviceNotFound(serial=serial)
        name = await self._name(session, serial)
        return DeviceView(device, Relation.SHARED, None, share.permission, [], name)

    async def require_owner(
        self, session: AsyncSession, principal: Principal, serial: str
    ) -> Ownership:
        """Return the caller's ownership or raise NotOwner / DeviceNotFound."""
        view = await self._view(session, principal, serial)
        if view.ownership is None:
            raise NotOwner(serial=serial)
        return view.ownership

    async def update_settings(
        self, principal: Principal, serial: str, changes: dict[str, Any]
    ) -> DeviceView:
        """Change name, auto-upgrade or notifications (owner only)."""
        now = self.clock.now()
        async with self.db.session() as session:
            ownership = await self.require_owner(session, principal, serial)
            if "name" in changes:
                dek = await self.vault.data_key(session, principal.account_id)
                ownership.name_enc = self.vault.seal(dek, changes["name"], NAME_CONTEXT)
            for key in ("auto_upgrade", "notifications"):
                if key in changes:
                    setattr(ownership, key, changes[key])
            oplog.record(
                session,
                account_id=principal.account_id,
                action="device.update",
                outcome="ok",
                subject=serial,
                now=now,
                fields=sorted(changes),
            )
            await session.commit()
        return await self.view(principal, serial)

    async def unbind(self, principal: Principal, serial: str) -> None:
        """Remove the caller's device: shares and events deleted, a reset queued."""
        now = self.clock.now()
        async with self.db.session() as session:
            ownership = await self.require_owner(session, principal, serial)
            await self.release(session, ownership, now, reason="unbind")
            await session.commit()

    async def device_reset(self, serial: str) -> bool:
        """Handle a factory reset reported by the device; return whether it was bound."""
        now = self.clock.now()
        async with self.db.session() as session:
            ownership = await session.get(Ownership, serial)
            if ownership is None:
                # Already unbound (the reset we queued arrived): only the hub link goes.
                await session.execute(
                    update(Device).where(Device.serial == serial).values(parent_serial=None)
                )
                await session.commit()
                return False
            await self.release(session, ownership, now, reason="device_reset")
            await session.commit()
        return True

    @staticmethod
    async def release(
        session: AsyncSession, ownership: Ownership, now: dt.datetime, *, reason: str
    ) -> None:
        serial = ownership.serial
        await session.execute(delete(Share).where(Share.serial == serial))
        await session.execute(delete(Event).where(Event.serial == serial))
        await session.execute(delete(Ownership).where(Ownership.serial == serial))
        if reason == "device_reset":
            # The device forgot its pairing; a BLE child that is only unbound
            # keeps its hub until the queued reset has travelled through it.
            await session.execute(
                update(Device).where(Device.serial == serial).values(parent_serial=None)
            )
        if reason == "unbind":
            session.add(
                Command(
                    id=uuid.uuid4(),
                    serial=serial,
                    name="reset",
                    args={},
                    state="queued",
                    created_at=now,
                )
            )
        oplog.record(
            session,
            account_id=ownership.account_id,
            action=f"device.{reason}",
            outcome="ok",
            subject=serial,
            now=now,
        )

    # -- events -------------------------------------------------------------------

    async def events(self, principal: Principal, serial: str, limit: int = 50) -> list[Event]:
        """Return a device's recent events to its owner or a shared user."""
        async with self.db.session() as session:
            await self._view(session, principal, serial)
            rows = await session.execute(
                select(Event)
                .where(Event.serial == serial)
                .order_by(Event.occurred_at.desc())
                .limit(limit)
            )
            return list(rows.scalars())

    async def feed(self, principal: Principal, limit: int = 50) -> list[Event]:
        """Return the owner's message feed: events of owned devices with notifications on."""
        async with self.db.session() as session:
            rows = await session.execute(
                select(Event)
                .join(Ownership, Ownership.serial == Event.serial)
                .where(
                    Ownership.account_id == principal.account_id,
                    Event.account_id == principal.account_id,
                    Event.in_feed.is_(True),
                )
                .order_by(Event.occurred_at.desc())
                .limit(limit)
            )
            return list(rows.scalars())

    # -- sharing ------------------------------------------------------------------

    async def invite(
        self, principal: Principal, serial: str, recipient: Recipient, permission: Permission
    ) -> Share:
        """Invite another account (by email or phone) to a device the caller owns."""
        now = self.clock.now()
        invitee_index = self.index(recipient.channel, recipient.value)
        async with self.db.session() as session:
            await self.require_owner(session, principal, serial)
            column = Account.email_index if recipient.channel == "email" else Account.phone_index
            me = await session.get(Account, principal.account_id)
            if me is not None and invitee_index in (me.email_index, me.phone_index):
                raise Conflict("you cannot share a device with yourself")
            existing = (
                await session.execute(
                    select(Share).where(
                        Share.serial == serial,
                        Share.invitee_index == invitee_index,
                        Share.state.in_([ShareState.PENDING, ShareState.ACCEPTED]),
                    )
                )
            ).scalar_one_or_none()
            if existing is not None:
                raise Conflict("this person is already invited")
            invitee = (
                await session.execute(select(Account.id).where(column == invitee_index))
            ).scalar()
            share = Share(
                id=uuid.uuid4(),
                serial=serial,
                owner_id=principal.account_id,
                invitee_index=invitee_index,
                invitee_id=None,
                permission=permission.value,
                state=ShareState.PENDING.value,
                created_at=now,
                expires_at=now + dt.timedelta(days=self.settings.invitation_ttl_days),
            )
            session.add(share)
            oplog.record(
                session,
                account_id=principal.account_id,
                action="share.invite",
                outcome="ok",
                subject=serial,
                now=now,
                permission=permission.value,
                invitee_known=invitee is not None,
            )
            await session.commit()
        return share

    async def invitations(self, principal: Principal) -> list[Share]:
        """Return pending, unexpired invitations addressed to the caller."""
        now = self.clock.now()
        async with self.db.session() as session:
            indexes = await self._my_indexes(session, principal)
            rows = (
                (
                    await session.execute(
                        select(Share)
                        .where(
                            Share.invitee_index.in_(indexes),
                            Share.state == ShareState.PENDING,
                            Share.expires_at > now,
                        )
                        .order_by(Share.created_at)
                    )
                )
                .scalars()
                .all()
            )
            return list(rows)

    @staticmethod
    async def _my_indexes(session: AsyncSession, principal: Principal) -> list[str]:
        me = await session.get(Account, principal.account_id)
        if me is None:
            return []
        return [i for i in (me.email_index, me.phone_index) if i is not None]

    async def respond(self, principal: Principal, share_id: uuid.UUID, *, accept: bool) -> Share:
        """Accept or decline an invitation addressed to the caller."""
        now = self.clock.now()
        async with self.db.session() as session:
            share = await session.get(Share, share_id)
            indexes = await self._my_indexes(session, principal)
            if (
                share is None
                or share.invitee_index not in indexes
                or share.state != ShareState.PENDING
            ):
                raise NotFound("no such invitation")
            if share.expires_at <= now:
                share.state = ShareState.EXPIRED.value
                await session.commit()
                raise TokenExpired("the invitation has expired")
            share.state = (ShareState.ACCEPTED if accept else ShareState.DECLINED).value
            share.invitee_id = principal.account_id if accept else None
            share.responded_at = now
            oplog.record(
                session,
                account_id=principal.account_id,
                action="share.accept" if accept else "share.decline",
                outcome="ok",
                subject=share.serial,
                now=now,
            )
            await session.commit()
            return share

    async def revoke_share(self, principal: Principal, serial: str, share_id: uuid.UUID) -> None:
        """End a share or withdraw an invitation (owner only)."""
        now = self.clock.now()
        async with self.db.session() as session:
            await self.require_owner(session, principal, serial)
            share = await session.get(Share, share_id)
            if (
                share is None
                or share.serial != serial
                or share.state
                not in (
                    ShareState.PENDING,
                    ShareState.ACCEPTED,
                )
            ):
                raise NotFound("no such share")
            share.state = ShareState.REVOKED.value
            share.responded_at = now
            oplog.record(
                session,
                account_id=principal.account_id,
                action="share.revoke",
                outcome="ok",
                subject=serial,
                now=now,
            )
            await session.commit()

    async def leave_share(self, principal: Principal, serial: str) -> None:
        """Let a shared user drop a device from their own list."""
        now = self.clock.now()
        async with self.db.session() as session:
            result = await session.execute(
                update(Share)
                .where(
                    Share.serial == serial,
                    Share.invitee_id == principal.account_id,
                    Share.state == ShareState.ACCEPTED,
                )
                .values(state=ShareState.REVOKED.value, responded_at=now)
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise NotFound("no such share")
            await session.commit()
