"""Devices in accounts: pre-check, binding, pairing tokens, settings, unbind, sharing."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

from aiohttp import web
from pydantic import StringConstraints

from provisioning.api.auth import ContactFields
from provisioning.api.keys import SERVICES_KEY
from provisioning.api.models import RequestModel, ResponseModel, ShortText
from provisioning.api.routing import Routes
from provisioning.api.session import path_serial, principal, source_address
from provisioning.domain.binding import Relation
from provisioning.domain.devices import DeviceView, Permission
from provisioning.errors import (
    CodeNotSupported,
    Conflict,
    DeviceAlreadyYours,
    DeviceBoundToOther,
    DeviceNotFound,
    DeviceRevoked,
    NotFound,
    NotOwner,
    TokenExpired,
    TooManyAttempts,
    VerificationCodeInvalid,
)
from provisioning.security.codes import SERIAL_PATTERN
from provisioning.storage.devices import Binding, Event, Share

routes = Routes(tag="devices")

Serial = Annotated[str, StringConstraints(pattern=f"^{SERIAL_PATTERN.pattern}$")]
LabelCode = Annotated[str, StringConstraints(min_length=1, max_length=16)]


def _uuid(request: web.Request, name: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError:
        raise NotFound(f"no such {what}") from None


# -- models --------------------------------------------------------------------


class BindStateOut(ResponseModel):
    serial: str
    exists: bool
    online: bool
    relation: Relation | None
    bindable: bool
    method: Literal["code", "pairing_token"] | None


class BindRequest(RequestModel):
    serial: Serial
    verification_code: LabelCode


class BindingIssued(ResponseModel):
    binding_id: uuid.UUID
    bind_token: str
    expires_at: dt.datetime


class BindingOut(ResponseModel):
    binding_id: uuid.UUID
    serial: str
    method: Literal["code", "pairing"]
    state: Literal["pending", "bound", "expired", "rejected"]
    reason: str | None
    created_at: dt.datetime
    expires_at: dt.datetime
    completed_at: dt.datetime | None

    @classmethod
    def of(cls, row: Binding) -> BindingOut:
        """Build from the stored binding."""
        return cls(
            binding_id=row.id,
            serial=row.serial,
            method=row.method,
            state=row.state,
            reason=row.reason,
            created_at=row.created_at,
            expires_at=row.expires_at,
            completed_at=row.completed_at,
        )


class PairingTokenIssued(ResponseModel):
    token_id: uuid.UUID
    pairing_token: str
    expires_at: dt.datetime


class Activation(ResponseModel):
    serial: str
    state: str
    completed_at: dt.datetime | None


class PairingTokenOut(ResponseModel):
    token_id: uuid.UUID
    expires_at: dt.datetime
    used: bool
    devices: list[Activation]


class ShareOut(ResponseModel):
    share_id: uuid.UUID
    serial: str
    permission: Permission
    state: str
    created_at: dt.datetime
    expires_at: dt.datetime

    @classmethod
    def of(cls, row: Share) -> ShareOut:
        """Build from the stored share."""
        return cls(
            share_id=row.id,
            serial=row.serial,
            permission=Permission(row.permission),
            state=row.state,
            created_at=row.created_at,
            expires_at=row.expires_at,
        )


class ShareList(ResponseModel):
    shares: list[ShareOut]


class DeviceSettings(ResponseModel):
    auto_upgrade: bool
    notifications: bool


class DeviceOut(ResponseModel):
    serial: str
    model: str
    type: str
    name: str | None
    firmware: str
    network_type: str | None
    online: bool
    parent_hub: str | None
    relation: Relation
    permission: Literal["owner", "view", "control"]
    settings: DeviceSettings | None
    shares: list[ShareOut] | None

    @classmethod
    def of(cls, view: DeviceView) -> DeviceOut:
        """Build from the domain view."""
        device, ownership = view.device, view.ownership
        return cls(
            serial=device.serial,
            model=device.model,
            type=device.device_type,
            name=view.name,
            firmware=device.reported_firmware or device.firmware_version,
            network_type=device.network_type,
            online=device.online,
            parent_hub=device.parent_serial,
            relation=view.relation,
            permission="owner" if ownership else view.permission,
            settings=DeviceSettings(
                auto_upgrade=ownership.auto_upgrade, notifications=ownership.notifications
            )
            if ownership
            else None,
            shares=[ShareOut.of(s) for s in view.shares] if ownership else None,
        )


class DeviceList(ResponseModel):
    devices: list[DeviceOut]


class DevicePatch(RequestModel):
    name: ShortText | None = None
    auto_upgrade: bool | None = None
    notifications: bool | None = None


class ShareRequest(ContactFields):
    permission: Permission


class EventOut(ResponseModel):
    serial: str
    event_id: str
    type: str
    occurred_at: dt.datetime
    result: str | None
    via_hub: str | None
    has_screenshot: bool

    @classmethod
    def of(cls, row: Event) -> EventOut:
        """Build from the stored event."""
        return cls(
            serial=row.serial,
            event_id=row.event_id,
            type=row.event_type,
            occurred_at=row.occurred_at,
            result=row.result,
            via_hub=row.via_serial,
            has_screenshot=row.screenshot_enc is not None,
        )


class EventList(ResponseModel):
    events: list[EventOut]


# -- bind-state and binding ---------------------------------------------------------


@routes.route(
    "GET",
    "/v1/devices/{serial}/bind-state",
    summary="Pre-check a serial: exists, online, and whose it is (never who)",
    response=BindStateOut,
)
async def bind_state(request: web.Request) -> BindStateOut:
    """Answer the app's pre-check before binding."""
    state = await request.app[SERVICES_KEY].binding.bind_state(
        principal(request), path_serial(request)
    )
    return BindStateOut(
        serial=state.serial,
        exists=state.exists,
        online=state.online,
        relation=state.relation,
        bindable=state.bindable,
        method=state.method,
    )


@routes.route(
    "POST",
    "/v1/bindings",
    summary="Bind a device with its serial and label verification code",
    body=BindRequest,
    response=BindingIssued,
    status=201,
    errors=(
        DeviceNotFound,
        VerificationCodeInvalid,
        TooManyAttempts,
        DeviceRevoked,
        DeviceBoundToOther,
        DeviceAlreadyYours,
        CodeNotSupported,
    ),
)
async def create_binding(request: web.Request, body: BindRequest) -> BindingIssued:
    """Check the code; return a pending binding and its one-time bind token."""
    issued = await request.app[SERVICES_KEY].binding.bind_with_code(
        principal(request), body.serial, body.verification_code, source_address(request)
    )
    return BindingIssued(
        binding_id=issued.binding_id, bind_token=issued.bind_token, expires_at=issued.expires_at
    )


@routes.route(
    "GET",
    "/v1/bindings/{binding_id}",
    summary="Poll a binding: pending, bound, expired or rejected (with a reason)",
    response=BindingOut,
    errors=(NotFound,),
)
async def get_binding(request: web.Request) -> BindingOut:
    """Return the binding's state."""
    binding_id = _uuid(request, "binding_id", "binding")
    return BindingOut.of(
        await request.app[SERVICES_KEY].binding.binding(principal(request), binding_id)
    )


@routes.route(
    "POST",
    "/v1/pairing-tokens",
    summary="Issue a one-time pairing token for a device without a label code",
    response=PairingTokenIssued,
    status=201,
)
async def create_pairing_token(request: web.Request) -> PairingTokenIssued:
    """Return a 10-minute, single-use pairing token."""
    issued = await request.app[SERVICES_KEY].binding.create_pairing_token(principal(request))
    return PairingTokenIssued(
        token_id=issued.token_id, pairing_token=issued.token, expires_at=issued.expires_at
    )


@routes.route(
    "GET",
    "/v1/pairing-tokens/{token_id}",
    summary="Which devices activated with a pairing token",
    response=PairingTokenOut,
    errors=(NotFound,),
)
async def get_pairing_token(request: web.Request) -> PairingTokenOut:
    """Return the token's state and the devices bound with it."""
    token_id = _uuid(request, "token_id", "pairing token")
    row, bindings = await request.app[SERVICES_KEY].binding.pairing_token(
        principal(request), token_id
    )
    return PairingTokenOut(
        token_id=row.id,
        expires_at=row.expires_at,
        used=row.used_at is not None,
        devices=[
            Activation(serial=b.serial, state=b.state, completed_at=b.completed_at)
            for b in bindings
        ],
    )


# -- devices -------------------------------------------------------------------------


@routes.route("GET", "/v1/devices", summary="Your devices, owned and shared", response=DeviceList)
async def list_devices(request: web.Request) -> DeviceList:
    """List the caller's devices."""
    views = await request.app[SERVICES_KEY].devices.list_devices(principal(request))
    return DeviceList(devices=[DeviceOut.of(v) for v in views])


@routes.route(
    "GET",
    "/v1/devices/{serial}",
    summary="One of your devices",
    response=DeviceOut,
    errors=(DeviceNotFound,),
)
async def get_device(request: web.Request) -> DeviceOut:
    """Return one device the caller owns or shares."""
    return DeviceOut.of(
        await request.app[SERVICES_KEY].devices.view(principal(request), path_serial(request))
    )


@routes.route(
    "PATCH",
    "/v1/devices/{serial}",
    summary="Rename a device or change its settings (owner)",
    body=DevicePatch,
    response=DeviceOut,
    errors=(DeviceNotFound, NotOwner),
)
async def patch_device(request: web.Request, body: DevicePatch) -> DeviceOut:
    """Apply the fields present in the body."""
    changes = body.model_dump(exclude_unset=True)
    view = await request.app[SERVICES_KEY].devices.update_settings(
        principal(request), path_serial(request), changes
    )
    return DeviceOut.of(view)


@routes.route(
    "DELETE",
    "/v1/devices/{serial}",
    summary="Unbind a device (owner): shares and events deleted, the device reset",
    status=204,
    errors=(DeviceNotFound, NotOwner),
)
async def unbind_device(request: web.Request) -> None:
    """Unbind and queue a reset command."""
    await request.app[SERVICES_KEY].devices.unbind(principal(request), path_serial(request))


# -- sharing ---------------------------------------------------------------------------


@routes.route(
    "POST",
    "/v1/devices/{serial}/shares",
    summary="Invite an account by email or phone (owner)",
    body=ShareRequest,
    response=ShareOut,
    status=201,
    errors=(DeviceNotFound, NotOwner, Conflict),
)
async def create_share(request: web.Request, body: ShareRequest) -> ShareOut:
    """Create a 7-day invitation."""
    share = await request.app[SERVICES_KEY].devices.invite(
        principal(request), path_serial(request), body.recipient(), body.permission
    )
    return ShareOut.of(share)


@routes.route(
    "GET",
    "/v1/devices/{serial}/shares",
    summary="Shares and pending invitations of a device (owner)",
    response=ShareList,
    errors=(DeviceNotFound, NotOwner),
)
async def list_shares(request: web.Request) -> ShareList:
    """List the device's live shares."""
    view = await request.app[SERVICES_KEY].devices.view(principal(request), path_serial(request))
    if view.ownership is None:
        raise NotOwner()
    return ShareList(shares=[ShareOut.of(s) for s in view.shares])


@routes.route(
    "DELETE",
    "/v1/devices/{serial}/shares/{share_id}",
    summary="Revoke a share or withdraw an invitation (owner)",
    status=204,
    errors=(DeviceNotFound, NotOwner, NotFound),
)
async def revoke_share(request: web.Request) -> None:
    """End the share."""
    share_id = _uuid(request, "share_id", "share")
    await request.app[SERVICES_KEY].devices.revoke_share(
        principal(request), path_serial(request), share_id
    )


@routes.route("GET", "/v1/invitations", summary="Invitations addressed to you", response=ShareList)
async def list_invitations(request: web.Request) -> ShareList:
    """List pending invitations for the caller's email or phone."""
    rows = await request.app[SERVICES_KEY].devices.invitations(principal(request))
    return ShareList(shares=[ShareOut.of(s) for s in rows])


@routes.route(
    "POST",
    "/v1/invitations/{share_id}/accept",
    summary="Accept an invitation",
    response=ShareOut,
    errors=(NotFound, TokenExpired),
)
async def accept_invitation(request: web.Request) -> ShareOut:
    """Accept: the device appears in the caller's list."""
    return await _respond(request, accept=True)


@routes.route(
    "POST",
    "/v1/invitations/{share_id}/decline",
    summary="Decline an invitation",
    response=ShareOut,
    errors=(NotFound, TokenExpired),
)
async def decline_invitation(request: web.Request) -> ShareOut:
    """Decline the invitation."""
    return await _respond(request, accept=False)


async def _respond(request: web.Request, *, accept: bool) -> ShareOut:
    share_id = _uuid(request, "share_id", "invitation")
    devices = request.app[SERVICES_KEY].devices
    return ShareOut.of(await devices.respond(principal(request), share_id, accept=accept))


# -- events and the message feed ---------------------------------------------------------


@routes.route(
    "GET",
    "/v1/devices/{serial}/events",
    summary="Recent events of a device you own or share",
    response=EventList,
    errors=(DeviceNotFound,),
)
async def list_events(request: web.Request) -> EventList:
    """Return the device's newest events."""
    rows = await request.app[SERVICES_KEY].devices.events(principal(request), path_serial(request))
    return EventList(events=[EventOut.of(r) for r in rows])


@routes.route(
    "GET",
    "/v1/messages",
    summary="Your message feed: events of your devices with notifications on",
    response=EventList,
)
async def list_messages(request: web.Request) -> EventList:
    """Return the owner's feed, newest first."""
    rows = await request.app[SERVICES_KEY].devices.feed(principal(request))
    return EventList(events=[EventOut.of(r) for r in rows])
