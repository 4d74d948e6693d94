"""The privacy policy, the append-only consent ledger, basic mode and purpose gating.

Optional purposes start off. Withdrawing the policy itself puts the account in
basic mode (browse only); withdrawing a purpose stops it and deletes the data
it allowed. A policy version with a material change asks every account that
accepted an older version to consent again.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from provisioning.clock import Clock
from provisioning.domain import oplog
from provisioning.errors import NotFound
from provisioning.storage.devices import DeviceLocation, Event
from provisioning.storage.engine import Database
from provisioning.storage.models import Account, Consent


class Purpose(enum.StrEnum):
    """What personal data may be used for. POLICY is the policy itself."""

    POLICY = "policy"
    DEVICE_LOCATION = "device_location"
    EVENT_SCREENSHOTS = "event_screenshots"
    PUSH_NOTIFICATIONS = "push_notifications"
    BIOMETRIC_FEATURES = "biometric_features"
    VIDEO_ANALYSIS = "video_analysis"


OPTIONAL_PURPOSES = tuple(p for p in Purpose if p is not Purpose.POLICY)


@dataclass(frozen=True, slots=True)
class PurposeText:
    """What a purpose collects and why, as the policy states it."""

    purpose: Purpose
    collects: str
    optional: bool


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    """One published version of the privacy policy."""

    version: str
    published: dt.date
    material: bool


# Published versions, oldest first. A material version asks for consent again.
POLICY_VERSIONS: tuple[PolicyVersion, ...] = (
    PolicyVersion("2026-11-01", dt.date(2026, 11, 1), material=True),
)

PURPOSES: tuple[PurposeText, ...] = (
    PurposeText(
        Purpose.POLICY,
        "account and device data needed to bind, provision and run your devices",
        optional=False,
    ),
    PurposeText(
        Purpose.DEVICE_LOCATION,
        "where you place a device, for local weather; deleted when withdrawn",
        optional=True,
    ),
    PurposeText(
        Purpose.EVENT_SCREENSHOTS,
        "a screenshot with motion and doorbell events, deleted the next day",
        optional=True,
    ),
    PurposeText(
        Purpose.PUSH_NOTIFICATIONS, "device events in your message feed and as push", optional=True
    ),
    PurposeText(
        Purpose.BIOMETRIC_FEATURES,
        "the result (match / no match) of a fingerprint or face check done on the device; "
        "templates never leave the device",
        optional=True,
    ),
    PurposeText(
        Purpose.VIDEO_ANALYSIS, "analysis of event clips to tell people from motion", optional=True
    ),
)


def current_policy(version: str) -> PolicyVersion:
    """Return the configured policy version (it must be a published one)."""
    for policy in POLICY_VERSIONS:
        if policy.version == version:
            return policy
    raise NotFound(f"policy version {version} is not published")


def last_material_version(current: str) -> str:
    """Return the newest material version at or before ``current``."""
    material = [p.version for p in POLICY_VERSIONS if p.material and p.version <= current]
    return material[-1] if material else current


@dataclass(frozen=True, slots=True)
class ConsentStatus:
    """An account's standing consents."""

    policy_version: str | None
    basic_mode: bool
    needs_reconsent: bool
    purposes: dict[Purpose, bool]


class ConsentService:
    """Records consents and answers whether a purpose is allowed."""

    def __init__(self, *, db: Database, clock: Clock, policy_version: str) -> None:
        self.db = db
        self.clock = clock
        self.policy = current_policy(policy_version)

    def needs_reconsent(self, accepted: str | None) -> bool:
        """Tell whether an accepted version predates the last material change."""
        return accepted is None or accepted < last_material_version(self.policy.version)

    async def latest(self, session: AsyncSession, account_id: uuid.UUID) -> dict[Purpose, bool]:
        """Return the latest grant or withdrawal per purpose (absent = never granted)."""
        rows = (
            await session.execute(
                select(Consent.purpose, Consent.granted)
                .where(Consent.account_id == account_id)
                .order_by(Consent.id)
            )
        ).all()
        state: dict[Purpose, bool] = dict.fromkeys(Purpose, False)
        for purpose, granted in rows:
            state[Purpose(purpose)] = bool(granted)
        return state

    async def allows(
        self, session: AsyncSession, account_id: uuid.UUID, purpose: Purpose | str
    ) -> bool:
        """Tell whether the account currently allows ``purpose`` (never in basic mode)."""
        account = await session.get(Account, account_id)
        if account is None or account.basic_mode:
            return False
        return (await self.latest(session, account_id))[Purpose(purpose)]

    async def status(self, account_id: uuid.UUID) -> ConsentStatus:
        """Return the account's consents and whether it must consent again."""
        async with self.db.session() as session:
            account = await session.get(Account, account_id)
            if account is None:
                raise NotFound("no such account")
            purposes = await self.latest(session, account_id)
        return ConsentStatus(
            account.policy_version,
            account.basic_mode,
            self.needs_reconsent(account.policy_version),
            {p: purposes[p] for p in OPTIONAL_PURPOSES},
        )

    def record(
        self,
        session: AsyncSession,
        account: Account,
        purpose: Purpose,
        granted: bool,
        method: str,
        now: dt.datetime,
    ) -> None:
        """Append one ledger entry and keep the account's derived flags in step."""
        session.add(
            Consent(
                account_id=account.id,
                purpose=purpose.value,
                granted=granted,
                policy_version=self.policy.version,
                method=method,
                created_at=now,
            )
        )
        if purpose is Purpose.POLICY:
            account.basic_mode = not granted
            if granted:
                account.policy_version = self.policy.version

    async def change(
        self, account_id: uuid.UUID, purpose: Purpose, granted: bool, method: str
    ) -> ConsentStatus:
        """Grant or withdraw one purpose; a withdrawal deletes the data it allowed."""
        now = self.clock.now()
        async with self.db.session() as session:
            account = await session.get(Account, account_id)
            if account is None:
                raise NotFound("no such account")
            self.record(session, account, purpose, granted, method, now)
            if not granted:
                await self._delete_purpose_data(session, account_id, purpose)
            oplog.record(
                session,
                account_id=account_id,
                action="consent.grant" if granted else "consent.withdraw",
                outcome="ok",
                subject=purpose.value,
                now=now,
                policy_version=self.policy.version,
            )
            await session.commit()
        return await self.status(account_id)

    @staticmethod
    async def _delete_purpose_data(
        session: AsyncSession, account_id: uuid.UUID, purpose: Purpose
    ) -> None:
        if purpose is Purpose.DEVICE_LOCATION:
            await session.execute(
                delete(DeviceLocation).where(DeviceLocation.account_id == account_id)
            )
        elif purpose is Purpose.EVENT_SCREENSHOTS:
            await session.execute(
                update(Event)
                .where(Event.account_id == account_id, Event.screenshot_enc.is_not(None))
                .values(screenshot_enc=None, screenshot_delete_at=None)
            )
        elif purpose is Purpose.BIOMETRIC_FEATURES:
            await session.execute(
                update(Event)
                .where(Event.account_id == account_id, Event.event_type.in_(BIOMETRIC_EVENT_TYPES))
                .values(result=None)
            )
        elif purpose is Purpose.PUSH_NOTIFICATIONS:
            await session.execute(
                update(Event).where(Event.account_id == account_id).values(in_feed=False)
            )
        elif purpose is Purpose.POLICY:
            # Basic mode: optional purposes stop with the policy.
            for optional in OPTIONAL_PURPOSES:
                await ConsentService._delete_purpose_data(session, account_id, optional)


# Events whose result is the outcome of a fingerprint or face check on the device.
BIOMETRIC_EVENT_TYPES = ("unlock",)
