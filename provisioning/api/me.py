"""The signed-in account: profile, sessions ("login terminals"), operation log."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from aiohttp import web
from pydantic import AnyHttpUrl, Field

from provisioning.api.keys import SERVICES_KEY
from provisioning.api.models import Region, RequestModel, ResponseModel, ShortText
from provisioning.api.routing import Routes
from provisioning.api.session import principal
from provisioning.domain.accounts import Profile
from provisioning.errors import NotFound

routes = Routes(tag="me")


class ProfileOut(ResponseModel):
    account_id: uuid.UUID
    email: str | None
    phone: str | None
    nickname: str | None
    avatar_url: str | None
    region: str | None
    created_at: dt.datetime

    @classmethod
    def of(cls, profile: Profile) -> ProfileOut:
        """Build from the domain value."""
        return cls(
            account_id=profile.account_id,
            email=profile.email,
            phone=profile.phone,
            nickname=profile.nickname,
            avatar_url=profile.avatar_url,
            region=profile.region,
            created_at=profile.created_at,
        )


class ProfilePatch(RequestModel):
    nickname: ShortText | None = None
    avatar_url: AnyHttpUrl | None = Field(default=None, max_length=512)
    region: Region | None = None


class SessionOut(ResponseModel):
    session_id: uuid.UUID
    current: bool
    client_type: str
    client_version: str
    device_model: str
    os_version: str
    created_at: dt.datetime
    last_used_at: dt.datetime


class SessionList(ResponseModel):
    sessions: list[SessionOut]


class OperationOut(ResponseModel):
    action: str
    outcome: str
    subject: str | None
    detail: dict[str, Any]
    created_at: dt.datetime


class OperationList(ResponseModel):
    operations: list[OperationOut]


@routes.route("GET", "/v1/me", summary="Read your profile", response=ProfileOut, basic_mode_ok=True)
async def get_me(request: web.Request) -> ProfileOut:
    """Return the caller's profile."""
    return ProfileOut.of(await request.app[SERVICES_KEY].accounts.profile(principal(request)))


@routes.route(
    "PATCH",
    "/v1/me",
    summary="Change nickname, avatar or region",
    body=ProfilePatch,
    response=ProfileOut,
    basic_mode_ok=True,
)
async def patch_me(request: web.Request, body: ProfilePatch) -> ProfileOut:
    """Update the fields present in the body."""
    changes = {
        key: (str(value) if value is not None else None)
        for key, value in body.model_dump(exclude_unset=True).items()
    }
    return ProfileOut.of(
        await request.app[SERVICES_KEY].accounts.update_profile(principal(request), changes)
    )


@routes.route(
    "GET",
    "/v1/me/sessions",
    summary="List your signed-in terminals",
    response=SessionList,
    basic_mode_ok=True,
)
async def list_sessions(request: web.Request) -> SessionList:
    """Return live sessions with the client info each sent."""
    me = principal(request)
    rows = await request.app[SERVICES_KEY].accounts.list_sessions(me)
    return SessionList(
        sessions=[
            SessionOut(
                session_id=row.id,
                current=row.id == me.session_id,
                client_type=row.client_type,
                client_version=row.client_version,
                device_model=row.device_model,
                os_version=row.os_version,
                created_at=row.created_at,
                last_used_at=row.last_used_at,
            )
            for row in rows
        ]
    )


@routes.route(
    "DELETE",
    "/v1/me/sessions/{session_id}",
    summary="Sign a terminal out",
    status=204,
    errors=(NotFound,),
    basic_mode_ok=True,
)
async def revoke_session(request: web.Request) -> None:
    """Revoke one session; its token stops working at once."""
    try:
        session_id = uuid.UUID(request.match_info["session_id"])
    except ValueError:
        raise NotFound("no such session") from None
    await request.app[SERVICES_KEY].accounts.revoke_session(principal(request), session_id)


@routes.route(
    "GET",
    "/v1/me/operations",
    summary="Your operation log",
    response=OperationList,
    basic_mode_ok=True,
)
async def list_operations(request: web.Request) -> OperationList:
    """Return security-relevant actions on the account, newest first."""
    rows = await request.app[SERVICES_KEY].accounts.operations(principal(request))
    return OperationList(
        operations=[
            OperationOut(
                action=row.action,
                outcome=row.outcome,
                subject=row.subject,
                detail=row.detail,
                created_at=row.created_at,
            )
            for row in rows
        ]
    )
