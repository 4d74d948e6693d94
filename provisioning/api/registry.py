"""Ops-only HTTP read of the device registry (``/v1/ops/devices``), no secrets in any answer."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from aiohttp import web
from pydantic import Field, StringConstraints

from provisioning.api.keys import SERVICES_KEY
from provisioning.api.models import RequestModel, ResponseModel
from provisioning.api.routing import Routes
from provisioning.domain.registry import MAX_PAGE, get_device, is_bindable, list_devices
from provisioning.errors import DeviceNotFound
from provisioning.storage.devices import Device

routes = Routes(tag="ops")

Serial = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9-]{3,31}$")]


class RegisteredDevice(ResponseModel):
    """A registry entry as ops see it: identity, certificate facts, status; never a code or key."""

    serial: str
    model: str
    type: str
    capabilities: list[str]
    has_label_code: bool = Field(description="binds with its label code; else a pairing token")
    ble_mac: str | None
    firmware_version: str
    certificate_fingerprint: str = Field(description="SHA-256 of the DER certificate, hex")
    certificate_serial: str = Field(description="X.509 serial number, hex")
    status: Literal["active", "revoked"]
    revoked_at: dt.datetime | None
    revoked_reason: str | None
    imported_at: dt.datetime
    online: bool
    last_seen_at: dt.datetime | None

    @classmethod
    def of(cls, device: Device) -> RegisteredDevice:
        """Build from the stored device."""
        return cls(
            serial=device.serial,
            model=device.model,
            type=device.device_type,
            capabilities=list(device.capabilities),
            has_label_code=device.label_code_digest is not None,
            ble_mac=device.ble_mac,
            firmware_version=device.firmware_version,
            certificate_fingerprint=device.certificate_fingerprint,
            certificate_serial=device.certificate_serial,
            status="active" if is_bindable(device) else "revoked",
            revoked_at=device.revoked_at,
            revoked_reason=device.revoked_reason,
            imported_at=device.imported_at,
            online=bool(device.online),
            last_seen_at=device.last_seen_at,
        )


class RegistryPage(ResponseModel):
    """One page of the registry, ordered by serial."""

    devices: list[RegisteredDevice]
    next_after: str | None = Field(description="pass as `after` for the next page; null at the end")


class PageQuery(RequestModel):
    """Keyset pagination by serial."""

    limit: int = Field(default=100, ge=1, le=MAX_PAGE)
    after: Serial | None = None


@routes.route(
    "GET",
    "/v1/ops/devices/{serial}",
    summary="Read one registered device (ops token)",
    response=RegisteredDevice,
    auth="ops",
    errors=(DeviceNotFound,),
)
async def get_registered_device(request: web.Request) -> RegisteredDevice:
    """Return one registry entry."""
    db = request.app[SERVICES_KEY].db
    return RegisteredDevice.of(await get_device(db, request.match_info["serial"]))


@routes.route(
    "GET",
    "/v1/ops/devices",
    summary="List registered devices by serial (ops token)",
    response=RegistryPage,
    auth="ops",
    query=PageQuery,
)
async def list_registered_devices(request: web.Request, query: PageQuery) -> RegistryPage:
    """Return one page of registry entries after ``after``."""
    db = request.app[SERVICES_KEY].db
    devices = await list_devices(db, limit=query.limit, after=query.after)
    next_after = devices[-1].serial if len(devices) == query.limit else None
    return RegistryPage(devices=[RegisteredDevice.of(d) for d in devices], next_after=next_after)
