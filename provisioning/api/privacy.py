"""Privacy: the policy, consents, device location with consent, rights."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import Field, StringConstraints

from provisioning.api.keys import SERVICES_KEY
from provisioning.api.models import RequestModel, ResponseModel, SixDigits
from provisioning.api.routing import Routes
from provisioning.api.session import path_serial, principal
from provisioning.domain.consent import PURPOSES, ConsentStatus, Purpose
from provisioning.errors import (
    CodeExpired,
    CodeUsed,
    ConsentRequired,
    DeviceNotFound,
    NotFound,
    NotOwner,
    VerificationCodeInvalid,
)

routes = Routes(tag="privacy")


class PurposeOut(ResponseModel):
    purpose: Purpose
    collects: str
    optional: bool


class PolicyOut(ResponseModel):
    version: str
    published: dt.date
    material_change: bool
    purposes: list[PurposeOut]


class ConsentsOut(ResponseModel):
    current_policy_version: str
    accepted_policy_version: str | None
    basic_mode: bool
    needs_reconsent: bool
    purposes: dict[str, bool]


class ConsentChange(RequestModel):
    purpose: Purpose
    granted: bool
    method: Literal["app_settings", "onboarding", "reconsent_prompt"] = "app_settings"


class LocationIn(RequestModel):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


class LocationOut(ResponseModel):
    serial: str
    latitude: float
    longitude: float
    updated_at: dt.datetime


class CancelRequest(RequestModel):
    code: SixDigits


class CancelOut(ResponseModel):
    account_id: uuid.UUID
    cancelled_at: dt.datetime
    devices_reset: list[str]
    message: str


class PrivacyRequestIn(RequestModel):
    kind: Literal[
        "access", "rectification", "erasure", "restriction", "objection", "portability", "other"
    ]
    message: Annotated[str, StringConstraints(max_length=2000)] | None = None


class PrivacyRequestOut(ResponseModel):
    request_id: uuid.UUID
    kind: str
    state: str
    created_at: dt.datetime
    due_at: dt.datetime


def _consents_out(status: ConsentStatus, current: str) -> ConsentsOut:
    return ConsentsOut(
        current_policy_version=current,
        accepted_policy_version=status.policy_version,
        basic_mode=status.basic_mode,
        needs_reconsent=status.needs_reconsent,
        purposes={p.value: granted for p, granted in status.purposes.items()},
    )


@routes.route(
    "GET",
    "/v1/privacy/policy",
    summary="The privacy policy in force",
    response=PolicyOut,
    auth="none",
)
async def get_policy(request: web.Request) -> PolicyOut:
    """Return the current policy version and what each purpose collects."""
    policy = request.app[SERVICES_KEY].consents.policy
    return PolicyOut(
        version=policy.version,
        published=policy.published,
        material_change=policy.material,
        purposes=[
            PurposeOut(purpose=p.purpose, collects=p.collects, optional=p.optional)
            for p in PURPOSES
        ],
    )


@routes.route(
    "GET", "/v1/me/consents", summary="Your consents", response=ConsentsOut, basic_mode_ok=True
)
async def get_consents(request: web.Request) -> ConsentsOut:
    """Return the account's consents and whether it must consent again."""
    consents = request.app[SERVICES_KEY].consents
    return _consents_out(
        await consents.status(principal(request).account_id), consents.policy.version
    )


@routes.route(
    "POST",
    "/v1/me/consents",
    summary="Grant or withdraw the policy or an optional purpose",
    body=ConsentChange,
    response=ConsentsOut,
    basic_mode_ok=True,
)
async def change_consent(request: web.Request, body: ConsentChange) -> ConsentsOut:
    """Append to the consent ledger; a withdrawal deletes that purpose's data."""
    consents = request.app[SERVICES_KEY].consents
    status = await consents.change(
        principal(request).account_id, body.purpose, body.granted, body.method
    )
    return _consents_out(status, consents.policy.version)


@routes.route(
    "PUT",
    "/v1/devices/{serial}/location",
    summary="Place a device for local weather (needs device_location consent)",
    body=LocationIn,
    response=LocationOut,
    errors=(ConsentRequired, NotOwner, DeviceNotFound),
    location_ok=True,
)
async def put_location(request: web.Request, body: LocationIn) -> LocationOut:
    """Store the device's location sealed under the owner's key."""
    serial = path_serial(request)
    stored = await request.app[SERVICES_KEY].locations.put(
        principal(request), serial, body.latitude, body.longitude
    )
    return LocationOut(
        serial=serial, latitude=body.latitude, longitude=body.longitude, updated_at=stored
    )


@routes.route(
    "GET",
    "/v1/devices/{serial}/location",
    summary="Where you placed a device",
    response=LocationOut,
    errors=(ConsentRequired, NotOwner, DeviceNotFound, NotFound),
)
async def get_location(request: web.Request) -> LocationOut:
    """Return the stored location."""
    serial = path_serial(request)
    lat, lon, updated = await request.app[SERVICES_KEY].locations.get(principal(request), serial)
    return LocationOut(serial=serial, latitude=lat, longitude=lon, updated_at=updated)


@routes.route(
    "GET", "/v1/me/export", summary="A copy of all your personal data (JSON)", basic_mode_ok=True
)
async def export_me(request: web.Request) -> web.Response:
    """Return the catalog-driven export as a JSON attachment."""
    document: dict[str, Any] = await request.app[SERVICES_KEY].rights.export(principal(request))
    return web.Response(
        text=json.dumps(document, indent=1),
        content_type="application/json",
        headers={
            "Content-Disposition": 'attachment; filename="zanuo-export.json"',
            "Cache-Control": "no-store",
        },
    )


@routes.route(
    "DELETE",
    "/v1/me",
    summary="Cancel the account now (needs a fresh delete_account code); irreversible",
    body=CancelRequest,
    response=CancelOut,
    errors=(VerificationCodeInvalid, CodeExpired, CodeUsed),
    basic_mode_ok=True,
)
async def cancel_me(request: web.Request, body: CancelRequest) -> CancelOut:
    """Unbind and reset every device, delete personal data, destroy the account key."""
    done = await request.app[SERVICES_KEY].rights.cancel(principal(request), body.code)
    return CancelOut(
        account_id=done.account_id,
        cancelled_at=done.cancelled_at,
        devices_reset=done.devices_reset,
        message="Your account and its personal data are deleted; your devices were reset.",
    )


@routes.route(
    "POST",
    "/v1/me/privacy-requests",
    summary="Ask a person for a privacy request; answered within 15 working days",
    body=PrivacyRequestIn,
    response=PrivacyRequestOut,
    status=201,
    basic_mode_ok=True,
)
async def file_privacy_request(request: web.Request, body: PrivacyRequestIn) -> PrivacyRequestOut:
    """Record the request with its due date."""
    row = await request.app[SERVICES_KEY].rights.file_request(
        principal(request), body.kind, body.message
    )
    return PrivacyRequestOut(
        request_id=row.id,
        kind=row.kind,
        state=row.state,
        created_at=row.created_at,
        due_at=row.due_at,
    )
