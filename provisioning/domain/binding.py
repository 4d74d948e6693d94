"""Binding: put a device into exactly one account and confirm it from the device.

The app's half (``bind_with_code`` or ``create_pairing_token``) hands out a
single-use token stored only as a hash; the device's half (``confirm``, called
by the MQTT bridge) presents it. The two meet on the token hash. Ownership is a
row keyed by the device serial, so concurrent confirmations for one device
cannot both commit: the database, not Python, decides the single owner.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import uuid
from dataclasses import dataclass

from cryptography import x509
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from provisioning.clock import Clock
from provisioning.config import BindingSettings
from provisioning.domain import oplog
from provisioning.domain.accounts import Principal
from provisioning.domain.limits import Policy, RateLimiter
from provisioning.errors import (
    CodeNotSupported,
    DeviceAlreadyYours,
    DeviceBoundToOther,
    DeviceNotFound,
    DeviceRevoked,
    NotFound,
    TokenExpired,
    TokenInvalid,
    TokenUsed,
    TooManyAttempts,
    VerificationCodeInvalid,
    ZanuoError,
)
from provisioning.metrics import Metrics
from provisioning.protocomm.bind import verify_bind_proof
from provisioning.protocomm.errors import BindProofInvalid
from provisioning.security.codes import verify_label_code
from provisioning.security.tokens import hash_token, new_token
from provisioning.storage.devices import Binding, Device, Ownership, PairingToken, Share
from provisioning.storage.engine import Database

_LOGGER = logging.getLogger(__name__)

BIND_TOKEN_PREFIX = "zb"
PAIRING_TOKEN_PREFIX = "zp"


class BindingState(enum.StrEnum):
    """Where a binding stands."""

    PENDING = "pending"
    BOUND = "bound"
    EXPIRED = "expired"
    REJECTED = "rejected"


class Relation(enum.StrEnum):
    """How a device relates to the caller."""

    UNBOUND = "unbound"
    MINE = "mine"
    SHARED = "shared"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class BindState:
    """The pre-check answer: never says who owns a device."""

    serial: str
    exists: bool
    online: bool
    relation: Relation | None
    bindable: bool
    method: str | None


@dataclass(frozen=True, slots=True)
class IssuedBinding:
    """A pending binding and its one-time bind token (returned once)."""

    binding_id: uuid.UUID
    bind_token: str
    expires_at: dt.datetime


@dataclass(frozen=True, slots=True)
class IssuedPairingToken:
    """A pairing token for code-less devices (returned once)."""

    token_id: uuid.UUID
    token: str
    expires_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Confirmation:
    """The device-side outcome the bridge sends back on ``bind/result``."""

    bound: bool
    reason: str | None
    binding_id: uuid.UUID | None = None
    account_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class BindProof:
    """What a code-less device signed over the pairing token."""

    device_nonce: bytes
    signature: bytes


class BindingService:
    """The app's and the device's halves of binding."""

    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        settings: BindingSettings,
        limiter: RateLimiter,
        label_key: bytes,
        metrics: Metrics,
    ) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        self.limiter = limiter
        self._label_key = label_key
        self.metrics = metrics
        base = dt.timedelta(seconds=settings.lockout_base_seconds)
        cap = dt.timedelta(seconds=settings.lockout_max_seconds)
        window = dt.timedelta(hours=1)
        n = settings.code_failures_before_lockout
        # Per device+account and per device+source: the lockout the user sees.
        # Per account, per source and per device overall: wider nets against
        # one attacker spreading guesses, or many attackers on one device.
        self._policies = {
            "bind-dev-acct": Policy(n, window, base, cap),
            "bind-dev-src": Policy(n, window, base, cap),
            "bind-acct": Policy(n * 4, window, base, cap),
            "bind-src": Policy(n * 10, window, base, cap),
            "bind-dev": Policy(n * 10, window, base, cap),
        }

    def _limit_keys(self, serial: str, account_id: uuid.UUID, source: str) -> dict[str, str]:
        values = {
            "bind-dev-acct": f"{serial}|{account_id}",
            "bind-dev-src": f"{serial}|{source}",
            "bind-acct": str(account_id),
            "bind-src": source,
            "bind-dev": serial,
        }
        return {kind: self.limiter.key(kind, value) for kind, value in values.items()}

    # -- lookups ----------------------------------------------------------------

    @staticmethod
    async def device(session: AsyncSession, serial: str) -> Device:
        """Return a registered device or raise DeviceNotFound."""
        device = await session.get(Device, serial)
        if device is None:
            raise DeviceNotFound(serial=serial)
        return device

    @staticmethod
    async def relation(session: AsyncSession, serial: str, account_id: uuid.UUID) -> Relation:
        """Return how a device relates to an account."""
        owner = await session.get(Ownership, serial)
        if owner is None:
            return Relation.UNBOUND
        if owner.account_id == account_id:
            return Relation.MINE
        shared = await session.execute(
            select(Share.id).where(
                Share.serial == serial, Share.invitee_id == account_id, Share.state == "accepted"
            )
        )
        return Relation.SHARED if shared.first() is not None else Relation.OTHER

    async def bind_state(self, principal: Principal, serial: str) -> BindState:
        """Tell the app whether a serial exists, is online and whose it is."""
        async with self.db.session() as session:
            device = await session.get(Device, serial)
            if device is None:
                return BindState(serial, False, False, None, False, None)
            relation = await self.relation(session, serial, principal.account_id)
        method = "code" if device.label_code_digest is not None else "pairing_token"
        bindable = relation is Relation.UNBOUND and not device.revoked
        return BindState(serial, True, device.online, relation, bindable, method)

    # -- the app's half -----------------------------------------------------------

    async def bind_with_code(
        self, principal: Principal, serial: str, code: str, source: str
    ) -> IssuedBinding:
        """Check the label code and open a pending binding with a one-time token."""
        now = self.clock.now()
        keys = self._limit_keys(serial, principal.account_id, source)
        async with self.db.session() as session:
            try:
                await self.limiter.check(session, list(keys.values()), now)
            except TooManyAttempts:
                self.metrics.bindings.labels("locked_out").inc()
                raise
            device = await self.device(session, serial)
            self._check_bindable(device)
            await self._check_unowned(session, serial, principal.account_id)
            if device.label_code_digest is None:
                raise CodeNotSupported(serial=serial)
            if not verify_label_code(self._label_key, serial, code, device.label_code_digest):
                await self._code_failed(session, principal, serial, keys, now)
                raise VerificationCodeInvalid()
            await self.limiter.clear(session, keys["bind-dev-acct"])
            token = new_token(BIND_TOKEN_PREFIX)
            binding = Binding(
                id=uuid.uuid4(),
                serial=serial,
                account_id=principal.account_id,
                method="code",
                state=BindingState.PENDING.value,
                token_hash=hash_token(token),
                created_at=now,
                expires_at=now + dt.timedelta(seconds=self.settings.bind_token_ttl_seconds),
            )
            session.add(binding)
            oplog.record(
                session,
                account_id=principal.account_id,
                action="binding.request",
                outcome="pending",
                subject=serial,
                now=now,
            )
            await session.commit()
        self.metrics.bindings.labels("requested").inc()
        return IssuedBinding(binding.id, token, binding.expires_at)

    @staticmethod
    def _check_bindable(device: Device) -> None:
        if device.revoked:
            raise DeviceRevoked(serial=device.serial)

    async def _check_unowned(
        self, session: AsyncSession, serial: str, account_id: uuid.UUID
    ) -> None:
        owner = await session.get(Ownership, serial)
        if owner is None:
            return
        if owner.account_id == account_id:
            raise DeviceAlreadyYours(serial=serial)
        raise DeviceBoundToOther(serial=serial)

    async def _code_failed(
        self,
        session: AsyncSession,
        principal: Principal,
        serial: str,
        keys: dict[str, str],
        now: dt.datetime,
    ) -> None:
        locked = False
        for kind, key in keys.items():
            locked |= await self.limiter.record_failure(session, key, self._policies[kind], now)
        oplog.record(
            session,
            account_id=principal.account_id,
            action="binding.code_check",
            outcome="locked" if locked else "wrong_code",
            subject=serial,
            now=now,
        )
        await session.commit()
        self.metrics.bindings.labels("wrong_code").inc()
        if locked:
            self.metrics.lockouts.labels("binding").inc()

    async def create_pairing_token(self, principal: Principal) -> IssuedPairingToken:
        """Issue a pairing token for a device without a label code."""
        now = self.clock.now()
        token = new_token(PAIRING_TOKEN_PREFIX)
        row = PairingToken(
            id=uuid.uuid4(),
            account_id=principal.account_id,
            token_hash=hash_token(token),
            created_at=now,
            expires_at=now + dt.timedelta(seconds=self.settings.pairing_token_ttl_seconds),
        )
        async with self.db.session() as session:
            session.add(row)
            oplog.record(
                session,
                account_id=principal.account_id,
                action="pairing_token.create",
                outcome="ok",
                subject=str(row.id),
                now=now,
            )
            await session.commit()
        return IssuedPairingToken(row.id, token, row.expires_at)

    async def pairing_token(
        self, principal: Principal, token_id: uuid.UUID
    ) -> tuple[PairingToken, list[Binding]]:
        """Return one of the caller's pairing tokens and the bindings it activated."""
        async with self.db.session() as session:
            row = await session.get(PairingToken, token_id)
            if row is None or row.account_id != principal.account_id:
                raise NotFound("no such pairing token")
            bindings = (
                (
                    await session.execute(
                        select(Binding)
                        .where(Binding.pairing_token_id == token_id)
                        .order_by(Binding.created_at)
                    )
                )
                .scalars()
                .all()
            )
            return row, list(bindings)

    async def binding(self, principal: Principal, binding_id: uuid.UUID) -> Binding:
        """Return one of the caller's bindings, expiring it when its token ran out."""
        now = self.clock.now()
        async with self.db.session() as session:
            row = await session.get(Binding, binding_id)
            if row is None or row.account_id != principal.account_id:
                raise NotFound("no such binding")
            if row.state == BindingState.PENDING and row.expires_at <= now:
                row.state, row.reason, row.completed_at = (
                    BindingState.EXPIRED.value,
                    "token_expired",
                    now,
                )
                await session.commit()
            return row

    # -- the device's half --------------------------------------------------------

    async def confirm(
        self,
        serial: str,
        token: str,
        *,
        proof: BindProof | None = None,
        parent_serial: str | None = None,
    ) -> Confirmation:
        """Confirm a binding from the device that presents ``token``.

        A bind token must have been issued for this serial; a pairing token
        must come with a proof signed by the device's registered key. Returns
        the outcome instead of raising: the bridge reports it to the device.
        """
        try:
            return await self._confirm(serial, token, proof, parent_serial)
        except ZanuoError as err:
            self.metrics.bindings.labels(err.code).inc()
            return Confirmation(False, err.code)

    async def _confirm(
        self, serial: str, token: str, proof: BindProof | None, parent_serial: str | None
    ) -> Confirmation:
        now = self.clock.now()
        token_hash = hash_token(token)
        async with self.db.session() as session:
            device = await self.device(session, serial)
            self._check_bindable(device)
            binding = (
                await session.execute(select(Binding).where(Binding.token_hash == token_hash))
            ).scalar_one_or_none()
            if binding is None:
                pairing = (
                    await session.execute(
                        select(PairingToken).where(PairingToken.token_hash == token_hash)
                    )
                ).scalar_one_or_none()
                if pairing is None:
                    raise TokenInvalid()
                repeat = await self._already_bound(session, serial, pairing_token_id=pairing.id)
                if repeat is not None:
                    return repeat
                binding = self._pairing_binding(device, pairing, token, proof, parent_serial, now)
                # Single use, decided by the database: only one UPDATE can
                # see used_at still empty, however many devices race.
                claimed = await session.execute(
                    update(PairingToken)
                    .where(PairingToken.id == pairing.id, PairingToken.used_at.is_(None))
                    .values(used_at=now)
                )
                if claimed.rowcount != 1:  # type: ignore[attr-defined]
                    raise TokenUsed()
                session.add(binding)
            else:
                if binding.state == BindingState.BOUND and binding.serial == serial:
                    repeat = await self._already_bound(session, serial, binding_id=binding.id)
                    if repeat is not None:
                        return repeat
                self._check_bind_token(binding, serial, now)
            owner_id = binding.account_id
            binding.state, binding.device_confirmed_at, binding.completed_at = (
                BindingState.BOUND.value,
                now,
                now,
            )
            session.add(
                Ownership(serial=serial, account_id=owner_id, binding_id=binding.id, bound_at=now)
            )
            device.parent_serial = parent_serial
            if parent_serial is not None:
                device.network_type = "ble"
            oplog.record(
                session,
                account_id=owner_id,
                action="binding.confirm",
                outcome="bound",
                subject=serial,
                now=now,
            )
            binding_id = binding.id
            try:
                await session.commit()
            except IntegrityError:
                await session.rollback()
                return await self._lost_race(serial, binding_id, owner_id, now)
        self.metrics.bindings.labels("bound").inc()
        return Confirmation(True, None, binding_id, owner_id)

    @staticmethod
    async def _already_bound(
        session: AsyncSession,
        serial: str,
        *,
        binding_id: uuid.UUID | None = None,
        pairing_token_id: uuid.UUID | None = None,
    ) -> Confirmation | None:
        # A QoS 1 redelivery of the same confirmation: answer "bound" again
        # instead of "token_used", so the device is not told it failed.
        owner = await session.get(Ownership, serial)
        if owner is None:
            return None
        binding = await session.get(Binding, owner.binding_id)
        if binding is None:
            return None
        if binding_id is not None and binding.id != binding_id:
            return None
        if pairing_token_id is not None and binding.pairing_token_id != pairing_token_id:
            return None
        return Confirmation(True, None, binding.id, owner.account_id)

    @staticmethod
    def _check_bind_token(binding: Binding, serial: str, now: dt.datetime) -> None:
        if binding.serial != serial:
            raise TokenInvalid("the token was issued for another device")
        if binding.state == BindingState.BOUND:
            raise TokenUsed()
        if binding.state != BindingState.PENDING or binding.expires_at <= now:
            raise TokenExpired()

    def _pairing_binding(
        self,
        device: Device,
        pairing: PairingToken,
        token: str,
        proof: BindProof | None,
        parent_serial: str | None,
        now: dt.datetime,
    ) -> Binding:
        if pairing.used_at is not None:
            raise TokenUsed()
        if pairing.expires_at <= now:
            raise TokenExpired()
        if proof is None:
            raise BindProofRequired()
        try:
            certificate = x509.load_pem_x509_certificate(device.certificate_pem.encode())
            verify_bind_proof(
                certificate, token.encode(), device.serial, proof.device_nonce, proof.signature
            )
        except (BindProofInvalid, ValueError):
            raise BindProofRejected() from None
        return Binding(
            id=uuid.uuid4(),
            serial=device.serial,
            account_id=pairing.account_id,
            method="pairing",
            state=BindingState.PENDING.value,
            pairing_token_id=pairing.id,
            parent_serial=parent_serial,
            created_at=now,
            expires_at=pairing.expires_at,
        )

    async def _lost_race(
        self, serial: str, binding_id: uuid.UUID, account_id: uuid.UUID, now: dt.datetime
    ) -> Confirmation:
        # Another confirmation committed ownership first. Record the loss on the
        # losing binding (it exists only for bind tokens; a pairing binding was
        # rolled back with its token, which stays usable for another device).
        async with self.db.session() as session:
            owner = await session.get(Ownership, serial)
            if owner is not None and owner.binding_id == binding_id:
                return Confirmation(True, None, binding_id, account_id)  # a concurrent duplicate
            reason = (
                DeviceAlreadyYours.code
                if owner is not None and owner.account_id == account_id
                else DeviceBoundToOther.code
            )
            binding = await session.get(Binding, binding_id)
            if binding is not None and binding.state == BindingState.PENDING:
                binding.state, binding.reason, binding.completed_at = (
                    BindingState.REJECTED.value,
                    reason,
                    now,
                )
            oplog.record(
                session,
                account_id=account_id,
                action="binding.confirm",
                outcome=reason,
                subject=serial,
                now=now,
            )
            await session.commit()
        self.metrics.bindings.labels(reason).inc()
        return Confirmation(False, reason, binding_id, account_id)


class BindProofRequired(ZanuoError):
    status = 422
    code = "proof_required"
    default_message = "a pairing token must come with the device's signed proof"


class BindProofRejected(ZanuoError):
    status = 403
    code = "proof_invalid"
    default_message = "the device's proof does not verify against its certificate"
