"""Accounts: verification codes, registration, sign-in, sessions, profile."""

from __future__ import annotations

import datetime as dt
import enum
import logging
import uuid
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from provisioning.clock import Clock
from provisioning.config import AuthSettings
from provisioning.domain import oplog
from provisioning.domain.consent import ConsentService, Purpose
from provisioning.domain.limits import Policy, RateLimiter
from provisioning.domain.vault import Vault
from provisioning.errors import (
    AccountExists,
    BadRequest,
    CodeExpired,
    CodeUsed,
    InvalidCredentials,
    NotFound,
    TooManyAttempts,
    Unauthenticated,
    VerificationCodeInvalid,
)
from provisioning.metrics import Metrics
from provisioning.notify.delivery import Channel, CodeMessage, Notifier
from provisioning.security.keys import BlindIndex
from provisioning.security.passwords import Passwords
from provisioning.security.tokens import hash_code, hash_token, new_numeric_code, new_token
from provisioning.storage.engine import Database
from provisioning.storage.models import Account, OperationLog, Session, VerificationCode

_LOGGER = logging.getLogger(__name__)

SESSION_TOKEN_PREFIX = "zs"


class CodePurpose(enum.StrEnum):
    """What a verification code may be used for."""

    REGISTER = "register"
    LOGIN = "login"
    RESET_PASSWORD = "reset_password"
    DELETE_ACCOUNT = "delete_account"


@dataclass(frozen=True, slots=True)
class Recipient:
    """A normalized email address or E.164 phone number."""

    channel: Channel
    value: str

    @classmethod
    def of(cls, email: str | None, phone: str | None) -> Recipient:
        """Build from exactly one of email or phone."""
        if (email is None) == (phone is None):
            raise BadRequest("give exactly one of email or phone")
        if email is not None:
            return cls("email", email.strip().lower())
        assert phone is not None
        return cls("sms", phone.strip())


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """What the app says about itself when it signs in."""

    client_type: str
    client_version: str
    device_model: str
    os_version: str


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of one request."""

    account_id: uuid.UUID
    session_id: uuid.UUID
    basic_mode: bool = False


@dataclass(frozen=True, slots=True)
class IssuedSession:
    """A new session and its bearer token (returned once, stored hashed)."""

    account_id: uuid.UUID
    session_id: uuid.UUID
    token: str
    expires_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Profile:
    """An account's profile as its owner sees it."""

    account_id: uuid.UUID
    email: str | None
    phone: str | None
    nickname: str | None
    avatar_url: str | None
    region: str | None
    created_at: dt.datetime


class AccountService:
    """Registration, sign-in and sessions."""

    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        settings: AuthSettings,
        vault: Vault,
        index: BlindIndex,
        code_key: bytes,
        limiter: RateLimiter,
        passwords: Passwords,
        notifier: Notifier,
        metrics: Metrics,
        consents: ConsentService,
    ) -> None:
        self.db = db
        self.consents = consents
        self.clock = clock
        self.settings = settings
        self.vault = vault
        self.index = index
        self._code_key = code_key
        self.limiter = limiter
        self.passwords = passwords
        self.notifier = notifier
        self.metrics = metrics
        hour = dt.timedelta(hours=1)
        self._per_recipient = Policy(settings.code_requests_per_recipient_per_hour, hour, hour)
        self._per_ip = Policy(settings.code_requests_per_ip_per_hour, hour, hour)
        self._login_policy = Policy(
            settings.login_failures_allowed,
            dt.timedelta(seconds=settings.login_failure_window_seconds),
            dt.timedelta(seconds=settings.login_lockout_seconds),
        )

    def recipient_index(self, recipient: Recipient) -> str:
        """Return the blind index of a recipient."""
        return self.index(recipient.channel, recipient.value)

    # -- verification codes -------------------------------------------------

    async def request_code(
        self, recipient: Recipient, purpose: CodePurpose, source: str
    ) -> dt.datetime:
        """Create and send a one-time code; return when it expires."""
        now = self.clock.now()
        rindex = self.recipient_index(recipient)
        code = new_numeric_code()
        expires_at = now + dt.timedelta(seconds=self.settings.code_ttl_seconds)
        async with self.db.session() as session:
            try:
                await self.limiter.consume(
                    session, self.limiter.key("code-recipient", rindex), self._per_recipient, now
                )
                await self.limiter.consume(
                    session, self.limiter.key("code-ip", source), self._per_ip, now
                )
            except TooManyAttempts:
                await session.rollback()
                raise
            # A new code replaces older unused ones for the same purpose.
            await session.execute(
                update(VerificationCode)
                .where(
                    VerificationCode.recipient_index == rindex,
                    VerificationCode.purpose == purpose.value,
                    VerificationCode.used_at.is_(None),
                )
                .values(expires_at=now)
            )
            session.add(
                VerificationCode(
                    recipient_index=rindex,
                    purpose=purpose.value,
                    code_hash=self._code_hash(rindex, purpose, code),
                    attempts=0,
                    created_at=now,
                    expires_at=expires_at,
                )
            )
            await session.commit()
        await self.notifier.send(
            CodeMessage(recipient.channel, recipient.value, purpose.value, code, expires_at)
        )
        self.metrics.auth_codes_sent.labels(recipient.channel).inc()
        return expires_at

    def _code_hash(self, rindex: str, purpose: CodePurpose, code: str) -> str:
        return hash_code(self._code_key, f"{rindex}:{purpose.value}", code)

    async def consume_code(
        self, session: AsyncSession, recipient: Recipient, purpose: CodePurpose, code: str
    ) -> None:
        """Use up a code inside the caller's transaction, or raise why it cannot be used."""
        now = self.clock.now()
        rindex = self.recipient_index(recipient)
        row = (
            await session.execute(
                select(VerificationCode).where(
                    VerificationCode.recipient_index == rindex,
                    VerificationCode.purpose == purpose.value,
                    VerificationCode.code_hash == self._code_hash(rindex, purpose, code),
                )
            )
        ).scalar_one_or_none()
        if row is not None and row.used_at is not None:
            raise CodeUsed()
        if row is not None and row.attempts < self.settings.code_max_attempts:
            if row.expires_at <= now:
                raise CodeExpired()
            row.used_at = now
            return
        # Wrong code: count it against the live code so guessing burns it.
        live = (
            (
                await session.execute(
                    select(VerificationCode).where(
                        VerificationCode.recipient_index == rindex,
                        VerificationCode.purpose == purpose.value,
                        VerificationCode.used_at.is_(None),
                        VerificationCode.expires_at > now,
                    )
                )
            )
            .scalars()
            .all()
        )
        for candidate in live:
            candidate.attempts += 1
        await session.commit()
        raise VerificationCodeInvalid()

    # -- registration and sign-in -------------------------------------------

    async def register(
        self,
        recipient: Recipient,
        password: str,
        code: str,
        client: ClientInfo,
        *,
        nickname: str | None,
        region: str | None,
    ) -> IssuedSession:
        """Create an account from a verified email or phone and sign it in."""
        now = self.clock.now()
        rindex = self.recipient_index(recipient)
        password_hash = await self.passwords.hash(password)
        async with self.db.session() as session:
            await self.consume_code(session, recipient, CodePurpose.REGISTER, code)
            account = Account(
                id=uuid.uuid4(),
                password_hash=password_hash,
                region=region,
                created_at=now,
                updated_at=now,
            )
            if recipient.channel == "email":
                account.email_index = rindex
            else:
                account.phone_index = rindex
            session.add(account)
            try:
                await session.flush()
            except IntegrityError:
                await session.rollback()
                raise AccountExists() from None
            dek = await self.vault.create_key(session, account.id, now)
            if recipient.channel == "email":
                account.email_enc = self.vault.seal(dek, recipient.value, "accounts.email")
            else:
                account.phone_enc = self.vault.seal(dek, recipient.value, "accounts.phone")
            account.nickname_enc = self.vault.seal(dek, nickname, "accounts.nickname")
            # Registering is accepting the policy the app showed; the ledger says so.
            self.consents.record(session, account, Purpose.POLICY, True, "registration", now)
            issued = self._new_session(session, account.id, client, now)
            oplog.record(
                session, account_id=account.id, action="account.register", outcome="ok", now=now
            )
            try:
                await session.commit()
            except IntegrityError:
                raise AccountExists() from None
        return issued

    def _new_session(
        self, session: AsyncSession, account_id: uuid.UUID, client: ClientInfo, now: dt.datetime
    ) -> IssuedSession:
        token = new_token(SESSION_TOKEN_PREFIX)
        expires_at = now + dt.timedelta(days=self.settings.session_ttl_days)
        row = Session(
            id=uuid.uuid4(),
            account_id=account_id,
            token_hash=hash_token(token),
            client_type=client.client_type,
            client_version=client.client_version,
            device_model=client.device_model,
            os_version=client.os_version,
            created_at=now,
            last_used_at=now,
            expires_at=expires_at,
        )
        session.add(row)
        return IssuedSession(account_id, row.id, token, expires_at)

    async def _find_account(self, session: AsyncSession, recipient: Recipient) -> Account | None:
        rindex = self.recipient_index(recipient)
        column = Account.email_index if recipient.channel == "email" else Account.phone_index
        return (await session.execute(select(Account).where(column == rindex))).scalar_one_or_none()

    async def login(
        self,
        recipient: Recipient,
        client: ClientInfo,
        source: str,
        *,
        password: str | None = None,
        code: str | None = None,
    ) -> IssuedSession:
        """Sign in with a password or a login code; wrong passwords lock out."""
        if (password is None) == (code is None):
            raise BadRequest("give exactly one of password or code")
        now = self.clock.now()
        rindex = self.recipient_index(recipient)
        keys = [self.limiter.key("login-account", rindex), self.limiter.key("login-ip", source)]
        async with self.db.session() as session:
            await self.limiter.check(session, keys, now)
            account = await self._find_account(session, recipient)
            if code is not None:
                await self.consume_code(session, recipient, CodePurpose.LOGIN, code)
                if account is None:
                    raise InvalidCredentials()
            else:
                assert password is not None
                ok = account is not None and await self.passwords.verify(
                    account.password_hash, password
                )
                if not ok:
                    await self._login_failed(session, keys, account, now)
                    raise InvalidCredentials()
            assert account is not None
            for key in keys[:1]:
                await self.limiter.clear(session, key)
            issued = self._new_session(session, account.id, client, now)
            oplog.record(
                session,
                account_id=account.id,
                action="account.login",
                outcome="ok",
                now=now,
                method="code" if code is not None else "password",
                client_type=client.client_type,
            )
            await session.commit()
        self.metrics.logins.labels("ok").inc()
        return issued

    async def _login_failed(
        self, session: AsyncSession, keys: list[str], account: Account | None, now: dt.datetime
    ) -> None:
        locked = False
        for key in keys:
            locked |= await self.limiter.record_failure(session, key, self._login_policy, now)
        oplog.record(
            session,
            account_id=account.id if account else None,
            action="account.login",
            outcome="locked" if locked else "wrong_password",
            now=now,
        )
        await session.commit()
        self.metrics.logins.labels("wrong_password").inc()
        if locked:
            self.metrics.lockouts.labels("login").inc()

    async def authenticate(self, token: str) -> Principal:
        """Resolve a bearer token to its account and session."""
        now = self.clock.now()
        async with self.db.session() as session:
            found = (
                await session.execute(
                    select(Session, Account.basic_mode)
                    .join(Account, Account.id == Session.account_id)
                    .where(Session.token_hash == hash_token(token))
                )
            ).one_or_none()
            if found is None:
                raise Unauthenticated()
            row, basic_mode = found
            if row.revoked_at is not None or row.expires_at <= now:
                raise Unauthenticated()
            # Touch last_used_at at most once a minute to keep reads cheap.
            if now - row.last_used_at > dt.timedelta(minutes=1):
                row.last_used_at = now
                await session.commit()
            return Principal(row.account_id, row.id, bool(basic_mode))

    async def logout(self, principal: Principal) -> None:
        """End the caller's own session."""
        await self.revoke_session(principal, principal.session_id, action="account.logout")

    async def revoke_session(
        self, principal: Principal, session_id: uuid.UUID, *, action: str = "session.revoke"
    ) -> None:
        """Revoke one of the caller's sessions (a "login terminal")."""
        now = self.clock.now()
        async with self.db.session() as session:
            row = await session.get(Session, session_id)
            if row is None or row.account_id != principal.account_id or row.revoked_at is not None:
                raise NotFound("no such session")
            row.revoked_at = now
            oplog.record(
                session,
                account_id=principal.account_id,
                action=action,
                outcome="ok",
                now=now,
                subject=str(session_id),
            )
            await session.commit()

    async def list_sessions(self, principal: Principal) -> list[Session]:
        """Return the caller's live sessions, newest first."""
        now = self.clock.now()
        async with self.db.session() as session:
            rows = await session.execute(
                select(Session)
                .where(
                    Session.account_id == principal.account_id,
                    Session.revoked_at.is_(None),
                    Session.expires_at > now,
                )
                .order_by(Session.created_at.desc())
            )
            return list(rows.scalars().all())

    async def reset_password(self, recipient: Recipient, code: str, new_password: str) -> None:
        """Set a new password with a reset code; every session ends."""
        now = self.clock.now()
        password_hash = await self.passwords.hash(new_password)
        async with self.db.session() as session:
            await self.consume_code(session, recipient, CodePurpose.RESET_PASSWORD, code)
            account = await self._find_account(session, recipient)
            if account is None:
                await session.commit()
                raise VerificationCodeInvalid()
            account.password_hash = password_hash
            account.updated_at = now
            await session.execute(
                update(Session)
                .where(Session.account_id == account.id, Session.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            await self.limiter.clear(
                session, self.limiter.key("login-account", self.recipient_index(recipient))
            )
            oplog.record(
                session,
                account_id=account.id,
                action="account.password_reset",
                outcome="ok",
                now=now,
            )
            await session.commit()

    # -- profile --------------------------------------------------------------

    async def profile(self, principal: Principal) -> Profile:
        """Return the caller's decrypted profile."""
        async with self.db.session() as session:
            account = await session.get(Account, principal.account_id)
            if account is None:
                raise Unauthenticated()
            dek = await self.vault.data_key(session, account.id)
            return Profile(
                account_id=account.id,
                email=self.vault.open(dek, account.email_enc, "accounts.email"),
                phone=self.vault.open(dek, account.phone_enc, "accounts.phone"),
                nickname=self.vault.open(dek, account.nickname_enc, "accounts.nickname"),
                avatar_url=self.vault.open(dek, account.avatar_url_enc, "accounts.avatar_url"),
                region=account.region,
                created_at=account.created_at,
            )

    async def update_profile(self, principal: Principal, changes: dict[str, str | None]) -> Profile:
        """Change nickname, avatar URL or region."""
        now = self.clock.now()
        async with self.db.session() as session:
            account = await session.get(Account, principal.account_id)
            if account is None:
                raise Unauthenticated()
            dek = await self.vault.data_key(session, account.id)
            if "nickname" in changes:
                account.nickname_enc = self.vault.seal(
                    dek, changes["nickname"], "accounts.nickname"
                )
            if "avatar_url" in changes:
                account.avatar_url_enc = self.vault.seal(
                    dek, changes["avatar_url"], "accounts.avatar_url"
                )
            if "region" in changes:
                account.region = changes["region"]
            account.updated_at = now
            oplog.record(
                session,
                account_id=account.id,
                action="profile.update",
                outcome="ok",
                now=now,
                fields=sorted(changes),
            )
            await session.commit()
        return await self.profile(principal)

    async def operations(self, principal: Principal, limit: int = 100) -> list[OperationLog]:
        """Return the caller's operation log, newest first."""
        async with self.db.session() as session:
            rows = await session.execute(
                select(OperationLog)
                .where(OperationLog.account_id == principal.account_id)
                .order_by(OperationLog.created_at.desc())
                .limit(limit)
            )
            return list(rows.scalars().all())
