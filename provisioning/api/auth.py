"""Sign-up and sign-in: verification codes, registration, login, logout, password reset."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal, Self

from aiohttp import web
from pydantic import Field, StringConstraints, model_validator

from provisioning.api.keys import SERVICES_KEY
from provisioning.api.models import (
    Email,
    Password,
    Phone,
    Region,
    RequestModel,
    ResponseModel,
    ShortText,
    SixDigits,
)
from provisioning.api.routing import Routes
from provisioning.api.session import principal, source_address
from provisioning.domain.accounts import ClientInfo, CodePurpose, IssuedSession, Recipient
from provisioning.errors import (
    AccountExists,
    BadRequest,
    CodeExpired,
    CodeUsed,
    InvalidCredentials,
    ServiceUnavailable,
    TooManyAttempts,
    VerificationCodeInvalid,
)

routes = Routes(tag="auth")

Version = Annotated[
    str, StringConstraints(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9._+-]+$")
]


class ContactFields(RequestModel):
    """Exactly one of email or phone."""

    email: Email | None = None
    phone: Phone | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.email is None) == (self.phone is None):
            raise ValueError("give exactly one of email or phone")
        return self

    def recipient(self) -> Recipient:
        """Return the normalized recipient."""
        return Recipient.of(self.email, self.phone)


class ClientInfoModel(RequestModel):
    """What the app tells about itself; shown later in the session list."""

    client_type: Literal["ios", "android", "web", "other"]
    client_version: Version
    device_model: ShortText
    os_version: Version

    def domain(self) -> ClientInfo:
        """Return the domain value."""
        return ClientInfo(self.client_type, self.client_version, self.device_model, self.os_version)


class CodeRequest(ContactFields):
    purpose: CodePurpose


class CodeSent(ResponseModel):
    channel: Literal["email", "sms"]
    expires_at: dt.datetime


class RegisterRequest(ContactFields):
    password: Password
    code: SixDigits
    nickname: ShortText | None = None
    region: Region | None = None
    client: ClientInfoModel


class LoginRequest(ContactFields):
    password: Password | None = None
    code: SixDigits | None = None
    client: ClientInfoModel

    @model_validator(mode="after")
    def _one_secret(self) -> Self:
        if (self.password is None) == (self.code is None):
            raise ValueError("give exactly one of password or code")
        return self


class PasswordResetRequest(ContactFields):
    code: SixDigits
    new_password: Password


class SessionIssued(ResponseModel):
    account_id: uuid.UUID
    session_id: uuid.UUID
    token: str = Field(description="bearer token; shown once, stored only as a hash")
    expires_at: dt.datetime

    @classmethod
    def of(cls, issued: IssuedSession) -> SessionIssued:
        """Build from the domain value."""
        return cls(
            account_id=issued.account_id,
            session_id=issued.session_id,
            token=issued.token,
            expires_at=issued.expires_at,
        )


@routes.route(
    "POST",
    "/v1/auth/codes",
    summary="Send a verification code by email or SMS",
    body=CodeRequest,
    response=CodeSent,
    status=202,
    auth="none",
    errors=(TooManyAttempts, ServiceUnavailable),
)
async def request_code(request: web.Request, body: CodeRequest) -> CodeSent:
    """Send a 6-digit code, valid 5 minutes, single use."""
    recipient = body.recipient()
    expires_at = await request.app[SERVICES_KEY].accounts.request_code(
        recipient, body.purpose, source_address(request)
    )
    return CodeSent(channel=recipient.channel, expires_at=expires_at)


@routes.route(
    "POST",
    "/v1/auth/register",
    summary="Create an account with a verified email or phone",
    body=RegisterRequest,
    response=SessionIssued,
    status=201,
    auth="none",
    errors=(AccountExists, VerificationCodeInvalid, CodeExpired, CodeUsed),
)
async def register(request: web.Request, body: RegisterRequest) -> SessionIssued:
    """Register and sign in."""
    issued = await request.app[SERVICES_KEY].accounts.register(
        body.recipient(),
        body.password,
        body.code,
        body.client.domain(),
        nickname=body.nickname,
        region=body.region,
    )
    return SessionIssued.of(issued)


@routes.route(
    "POST",
    "/v1/auth/login",
    summary="Sign in with a password or a login code",
    body=LoginRequest,
    response=SessionIssued,
    auth="none",
    errors=(
        InvalidCredentials,
        TooManyAttempts,
        VerificationCodeInvalid,
        CodeExpired,
        CodeUsed,
        BadRequest,
    ),
)
async def login(request: web.Request, body: LoginRequest) -> SessionIssued:
    """Open a session for this client."""
    issued = await request.app[SERVICES_KEY].accounts.login(
        body.recipient(),
        body.client.domain(),
        source_address(request),
        password=body.password,
        code=body.code,
    )
    return SessionIssued.of(issued)


@routes.route("POST", "/v1/auth/logout", summary="End this session", status=204, basic_mode_ok=True)
async def logout(request: web.Request) -> None:
    """Revoke the caller's session."""
    await request.app[SERVICES_KEY].accounts.logout(principal(request))


@routes.route(
    "POST",
    "/v1/auth/password-reset",
    summary="Set a new password with a reset code; all sessions end",
    body=PasswordResetRequest,
    status=204,
    auth="none",
    errors=(VerificationCodeInvalid, CodeExpired, CodeUsed),
)
async def reset_password(request: web.Request, body: PasswordResetRequest) -> None:
    """Reset the password."""
    await request.app[SERVICES_KEY].accounts.reset_password(
        body.recipient(), body.code, body.new_password
    )
